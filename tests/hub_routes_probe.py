"""Every route a hub's user server serves, as JSON: ``[[pattern, handler class], ...]`` in match order.

Run in a fresh interpreter (tests/test_hub_lockdown.py does): it writes the server config
HPCSpawner writes, sets the environment JupyterHub gives a server, answers the one hub API call
the singleuser extension makes at load (its version) from a thread, and initialises the server
exactly as ``python -m jupyterhub.singleuser`` does, without starting it.
"""
import json, os, shutil, tempfile, types
from traitlets.config import Config
from jupyter_hpc.hub.spawner import HPCSpawner
work = tempfile.mkdtemp()
cfg = Config({"HPCSites": {"sites": {"cori": {"host": "127.0.0.1", "known_hosts": "/dev/null"}}}})
spawner = HPCSpawner(user=types.SimpleNamespace(name="probe", url="/user/probe/"), config=cfg)
os.makedirs(work + "/config")
json.dump(spawner.server_config(), open(work + "/config/jupyter_server_config.json", "w"))
import http.server, threading, jupyterhub
class Hub(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # the hub API's version answer, all the singleuser extension asks at load
        body = json.dumps({"version": jupyterhub.__version__}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json"); self.end_headers(); self.wfile.write(body)
    def log_message(self, *args): pass
hub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
threading.Thread(target=hub.serve_forever, daemon=True).start()
HUB = f"http://127.0.0.1:{hub.server_address[1]}"
os.environ.update(JUPYTER_CONFIG_DIR=work + "/config", JUPYTER_RUNTIME_DIR=work, JUPYTER_DATA_DIR=work, HOME=work,
    JUPYTERHUB_SERVICE_URL="http://127.0.0.1:1/user/probe/", JUPYTERHUB_API_TOKEN="x"*32, JUPYTERHUB_USER="probe",
    JUPYTERHUB_API_URL=HUB + "/hub/api", JUPYTERHUB_SERVICE_PREFIX="/user/probe/", JUPYTERHUB_BASE_URL="/",
    JUPYTERHUB_CLIENT_ID="jupyterhub-user-probe", JUPYTERHUB_OAUTH_CALLBACK_URL="/user/probe/oauth_callback",
    JUPYTERHUB_HOST="", JUPYTERHUB_OAUTH_SCOPES='["access:servers!user=probe"]', JUPYTERHUB_OAUTH_ACCESS_SCOPES='["access:servers!user=probe"]')
from jupyterhub.singleuser.extension import JupyterHubSingleUser
server = JupyterHubSingleUser.initialize_server(argv=[f"--ServerApp.root_dir={work}"])
rows = []
def walk(router):
    for rule in router.rules:
        target = rule.target
        if hasattr(target, "rules"):
            walk(target)
        else:
            regex = getattr(rule.matcher, "regex", None)
            rows.append([regex.pattern if regex else repr(rule.matcher), f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', target)}"])
walk(server.web_app.default_router)
print(json.dumps(rows))
shutil.rmtree(work, ignore_errors=True)
