"""The cluster proxy never reaches the server's own host: "127.0.0.1" in a route is the login
node's loopback, because the connection is opened there (a direct-tcpip channel), never here.

The login node is an sshd in a network namespace of the test's own (a veth pair, addresses
only it holds), so its loopback is not this host's. A canary HTTP server on this host's
127.0.0.1 records every request it gets. Routes to 127.0.0.1, localhost and ::1 at the canary's
port, and to this host's own address on the pair, reach nothing of this host: the canary sees
no request. The control: the same route through a login node that does run on this host (the
test sshd on 127.0.0.1) reaches the canary, so a leak would have been seen.

The same namespaced login node serves the dropped-connection test: its sshd sessions are
killed while a request waits at an app there, and the page says so; the next request reconnects.
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests

from lab_browser import Lab, lab_config
from testbed.sshd import SSHD, SSHDaemon, wait_for_port

pytestmark = pytest.mark.timeout(180)

SUBNET = 10 + os.getpid() % 200  # 10.234.<n>.0/30: only this test's namespace holds these
HOST_ADDR, NS_ADDR = f"10.234.{SUBNET}.1", f"10.234.{SUBNET}.2"
NS_PORT = 2222


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


class NamespacedLoginNode(SSHDaemon):
    """The test bed's sshd, started inside ``namespace`` on its own address."""

    namespace = ""

    def start(self) -> "NamespacedLoginNode":
        os.makedirs("/run/sshd", exist_ok=True)
        config = self.root / "sshd_config"
        config.write_text(self.config_text())
        self.known_hosts.write_text(f"[{self.host}]:{self.port} {self.host_public_key}\n")
        subprocess.run([SSHD, "-t", "-f", str(config)], check=True)
        self.process = subprocess.Popen(["ip", "netns", "exec", self.namespace, SSHD, "-D", "-f",
                                         str(config.resolve()), "-E", str(self.log.resolve())])
        wait_for_port(self.host, self.port)
        return self


@pytest.fixture(scope="module")
def login_node(kernel_user):
    name, host_if, ns_if = f"jhpx{os.getpid()}", f"jhpx{os.getpid() % 100000}h", f"jhpx{os.getpid() % 100000}n"
    root = Path(tempfile.mkdtemp(prefix="jupyter-hpc-proxy-ns-"))
    ip("netns", "add", name)
    node = None
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        ip("link", "set", ns_if, "netns", name)
        ip("addr", "add", f"{HOST_ADDR}/30", "dev", host_if)
        ip("link", "set", host_if, "up")
        for args in (("addr", "add", f"{NS_ADDR}/30", "dev", ns_if), ("link", "set", ns_if, "up"),
                     ("link", "set", "lo", "up")):
            ip("netns", "exec", name, "ip", *args)
        node = NamespacedLoginNode(root, users=[kernel_user.pw_name], host=NS_ADDR, port=NS_PORT)
        node.namespace = name
        yield node.start()
    finally:
        if node is not None:
            node.stop()
        ip("link", "del", host_if, check=False)
        ip("netns", "del", name, check=False)
        shutil.rmtree(root, ignore_errors=True)


class Canary(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        Canary.seen.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"the server's own host answered")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def canary():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Canary)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture(scope="module")
def lab(tmp_path_factory, login_node, sshd, kernel_user, remote_python):
    sites = {
        "remote": login_node.provisioner_config(kernel_user.pw_name, remote_python=remote_python),
        "local": sshd.provisioner_config(kernel_user.pw_name, remote_python=remote_python),
    }
    with Lab.running(tmp_path_factory.mktemp("lab-proxy-canary"), lab_config(sites)) as lab:
        yield lab


def descendants(pid: int) -> list[int]:
    children = [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()]
    return [grand for child in children for grand in (child, *descendants(child))]


SLOW_APP = """
import http.server, sys, time
class Slow(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(30)
        self.send_response(200); self.end_headers(); self.wfile.write(b"late")
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Slow).serve_forever()
"""


def test_a_dropped_ssh_connection_is_a_page_saying_so(lab, login_node):
    """The SSH connection under a request in flight drops (the login node's sshd session is
    killed): the page says the connection dropped and to reload; the next request reconnects."""
    headers = {"Authorization": f"token {lab.token}"}
    app = subprocess.Popen(["ip", "netns", "exec", login_node.namespace, sys.executable, "-c", SLOW_APP, "8088"])
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["ip", "netns", "exec", login_node.namespace, "ss", "-Htln", "sport = :8088"],
                             capture_output=True, text=True).stdout.strip() == "":
            assert time.monotonic() < deadline, "the slow app did not start"
            time.sleep(0.1)
        requests.get(f"{lab.base}/jupyter-hpc/proxy/remote/127.0.0.1:1/", headers=headers, timeout=60)  # log in
        result = {}

        def slow() -> None:
            result["reply"] = requests.get(f"{lab.base}/jupyter-hpc/proxy/remote/127.0.0.1:8088/", headers=headers,
                                           timeout=60)

        waiting = threading.Thread(target=slow)
        waiting.start()
        time.sleep(1.5)  # the request is at the app, waiting for its answer
        sessions = descendants(login_node.process.pid)  # each session's monitor and its unprivileged child
        assert sessions, "no sshd session to drop"
        for pid in sessions:
            os.kill(pid, 9)
        waiting.join(30)
        reply = result["reply"]
        assert reply.status_code == 502 and "dropped" in reply.text and "reload" in reply.text, (reply.status_code, reply.text)
        again = requests.get(f"{lab.base}/jupyter-hpc/proxy/remote/127.0.0.1:1/", headers=headers, timeout=60)
        assert again.status_code == 502 and "Nothing is listening" in again.text, again.text  # reconnected
    finally:
        app.kill()
        app.wait()


def test_no_route_reaches_the_servers_own_loopback(lab, canary):
    headers = {"Authorization": f"token {lab.token}"}
    Canary.seen.clear()
    for host in ("127.0.0.1", "localhost", "[::1]", "127.0.0.2"):
        reply = requests.get(f"{lab.base}/jupyter-hpc/proxy/remote/{host}:{canary}/leak", headers=headers, timeout=60)
        assert reply.status_code == 502 and "Nothing is listening" in reply.text, (host, reply.status_code)
    # This host's own address on the pair is no loopback of the login node's, nor one of its jobs'.
    reply = requests.get(f"{lab.base}/jupyter-hpc/proxy/remote/{HOST_ADDR}:{canary}/leak", headers=headers, timeout=60)
    assert reply.status_code == 403 and "proxy_hosts" in reply.text
    assert Canary.seen == [], f"the canary on the server's own 127.0.0.1 was reached: {Canary.seen}"

    # Control: a login node that is this very host does reach it, so a leak would have shown.
    reply = requests.get(f"{lab.base}/jupyter-hpc/proxy/local/127.0.0.1:{canary}/control", headers=headers, timeout=60)
    assert reply.status_code == 200 and Canary.seen == ["/control"], (reply.status_code, Canary.seen)
