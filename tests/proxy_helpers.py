"""For the web-UI proxy's tests: a kernel driven over a lab's websocket, and the web apps a
kernel starts on the cluster (a plain ``http.server``, and a tornado app with a websocket echo,
a streaming upload counter, a redirect and a cookie; tornado is in the cluster-side venv as
Bokeh's dependency)."""

from __future__ import annotations

import uuid

import websocket

from hub_helpers import Kernel

# Run in the kernel: start both apps in ``root`` on free loopback ports, wait until they answer,
# and print their ports as JSON. The files: hello.txt and big.bin (``big_mb`` MB of pseudo-random bytes).
START_APPS = r"""
import hashlib, json, os, random, socket, subprocess, sys, time
root = {root!r}
os.makedirs(root, exist_ok=True)
with open(os.path.join(root, "hello.txt"), "w") as f:
    f.write({hello!r})
rng = random.Random(28)
digest = hashlib.sha256()
with open(os.path.join(root, "big.bin"), "wb") as f:
    block = rng.randbytes(1 << 20)
    for i in range({big_mb}):
        chunk = bytes([i % 251]) + block[1:]
        digest.update(chunk)
        f.write(chunk)
with open(os.path.join(root, "app.py"), "w") as f:
    f.write({app!r})
def free():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port
http_port, app_port = free(), free()
procs = [subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", root, str(http_port)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
         subprocess.Popen([sys.executable, os.path.join(root, "app.py"), str(app_port)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
for port in (http_port, app_port):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close(); break
        except OSError:
            time.sleep(0.05)
print(json.dumps({{"http": http_port, "app": app_port, "sha256": digest.hexdigest(), "pids": [p.pid for p in procs]}}))
"""

APP = r"""
import asyncio, hashlib, sys
from tornado import ioloop, web, websocket

class Echo(websocket.WebSocketHandler):
    def check_origin(self, origin):
        return origin == "http://%s" % self.request.host  # the proxy makes the app see its own origin
    def on_message(self, message):
        self.write_message(message, binary=isinstance(message, bytes))

@web.stream_request_body
class Upload(web.RequestHandler):
    def prepare(self):
        self.size, self.digest = 0, hashlib.sha256()
    def data_received(self, chunk):
        self.size += len(chunk); self.digest.update(chunk)
    def post(self):
        self.write({"size": self.size, "sha256": self.digest.hexdigest(), "cookie": self.request.headers.get("Cookie", ""),
                    "authorization": self.request.headers.get("Authorization", ""), "host": self.request.host,
                    "prefix": self.request.headers.get("X-Forwarded-Prefix", "")})
    put = post

class Redirect(web.RequestHandler):
    def get(self):
        self.redirect("/hello")

class Slow(web.RequestHandler):
    async def get(self):
        await asyncio.sleep(float(self.get_argument("seconds", "10")))
        self.write("late")

class Hello(web.RequestHandler):
    def get(self):
        self.set_cookie("app_session", "s1", path="/")
        self.write("hello from the app at %s" % self.request.path)

ioloop.IOLoop.current().run_sync(lambda: None)
web.Application([(r"/ws", Echo), (r"/upload", Upload), (r"/redirect", Redirect), (r"/hello", Hello),
                 (r"/slow", Slow)]).listen(
    int(sys.argv[1]), address="127.0.0.1")
ioloop.IOLoop.current().start()
"""


def start_apps_code(root: str, hello: str, big_mb: int) -> str:
    return START_APPS.format(root=root, hello=hello, big_mb=big_mb, app=APP)


class KernelSocket(Kernel):
    """A kernel through a server's websocket, the token in the header (hub_helpers' Kernel
    logs in by a browser's cookies): ``execute`` as there, ``run`` asserting no error."""

    def __init__(self, base_ws: str, token: str, kernel_id: str) -> None:
        self.id = kernel_id
        self.session = uuid.uuid4().hex
        self.ws = websocket.create_connection(
            f"{base_ws}/api/kernels/{kernel_id}/channels?session_id={self.session}",
            header=[f"Authorization: token {token}"], timeout=120,
        )

    def run(self, code: str, timeout: float = 120) -> str:
        reply = self.execute(code, timeout)
        assert reply["error"] is None, reply
        return reply["stdout"]
