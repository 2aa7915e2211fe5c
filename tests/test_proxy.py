"""The web-UI proxy, ``/jupyter-hpc/proxy/<site>/<host>:<port>/<path>``, against real services:
a JupyterLab server with the site "cori" on the test sshd, a cluster kernel that starts
``python -m http.server`` and a tornado app on the login node's 127.0.0.1, and requests from
outside as a browser or a script makes them.

One lab and one kernel for the module; each test checks one property of the route.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import subprocess
import threading
import time
import uuid

import pytest
import requests
import websocket

from lab_browser import Lab, lab_config, write_remote_kernel
from proxy_helpers import KernelSocket, start_apps_code

pytestmark = pytest.mark.timeout(300)

HELLO = "a file served on the login node " + uuid.uuid4().hex
BIG_MB = 50
IDLE_TIMEOUT = 4.0  # seconds (c.HPCProxy.idle_timeout): long enough for every other request here


@pytest.fixture(scope="module")
def lab(tmp_path_factory, sshd, kernel_user, remote_python):
    write_remote_kernel(kernel_user, "proxytest", "Proxy test", remote_python)
    site = {"display_name": "Cori", **sshd.provisioner_config(kernel_user.pw_name, remote_python=remote_python),
            "proxy_hosts": ["*.allowed.example"]}
    config = lab_config({"cori": site}, HPCProxy={"idle_timeout": IDLE_TIMEOUT})
    with Lab.running(tmp_path_factory.mktemp("lab-proxy"), config) as lab:
        yield lab


@pytest.fixture(scope="module")
def kernel(lab):
    kernel_id = lab.api("POST", "kernels", json={"name": wait_for_spec(lab, "cori-login-proxytest")}).json()["id"]
    socket = KernelSocket(f"ws://127.0.0.1:{lab.port}", lab.token, kernel_id)
    yield socket
    socket.close()
    lab.api("DELETE", f"kernels/{kernel_id}")
    deadline = time.monotonic() + 30
    while kernel_id in lab.kernel_ids() and time.monotonic() < deadline:
        time.sleep(0.2)


@pytest.fixture(scope="module")
def apps(kernel, kernel_user):
    root = f"/tmp/jupyter-hpc-proxy-{uuid.uuid4().hex}"
    out = kernel.run(start_apps_code(root, HELLO, BIG_MB), timeout=180)
    ports = json.loads(out.strip().splitlines()[-1])
    yield ports
    kernel.run(f"import os, signal, shutil\nfor pid in {ports['pids']!r}:\n    os.kill(pid, signal.SIGTERM)\n"
               f"shutil.rmtree({root!r}, ignore_errors=True)")


def wait_for_spec(lab: Lab, name: str, timeout: float = 60) -> str:
    """Discovery lists the remote specs in the background: wait until ``name`` is offered."""
    deadline = time.monotonic() + timeout
    while name not in lab.api("GET", "kernelspecs").json()["kernelspecs"]:
        assert time.monotonic() < deadline, f"no kernelspec {name}"
        time.sleep(0.5)
    return name


def route(lab: Lab, host: str, port: int, path: str = "/") -> str:
    return f"{lab.base}/jupyter-hpc/proxy/cori/{host}:{port}{path}"


def auth(lab: Lab) -> dict:
    return {"Authorization": f"token {lab.token}"}


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(re.search(r"VmRSS:\s+(\d+)", status.read())[1])


def established_to(port: int) -> int:
    """TCP connections established to the login node's 127.0.0.1:``port`` (the proxied app's side)."""
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True).stdout
    return len([line for line in out.splitlines() if line.strip()])


def test_kernel_gets_the_route_and_dask_link(lab, kernel):
    """Every cluster kernel has JUPYTER_HPC_PROXY and Dask's dashboard link, and
    jupyter_hpc.proxy_url (stdlib, shipped by the launcher) builds the route's URLs."""
    out = kernel.run("import os\nfrom jupyter_hpc import proxy_url\n"
                     "print(os.environ['JUPYTER_HPC_PROXY']); print(os.environ['DASK_DISTRIBUTED__DASHBOARD__LINK'])\n"
                     "print(proxy_url(6006)); print(proxy_url(8787, host='nid00042'))")
    prefix, dask_link, url, url_host = out.split()
    assert prefix == "/jupyter-hpc/proxy/cori"
    assert dask_link == "{JUPYTER_HPC_PROXY}/{host}:{port}/status"
    assert url == "/jupyter-hpc/proxy/cori/127.0.0.1:6006/"
    assert url_host == "/jupyter-hpc/proxy/cori/nid00042:8787/"


def test_http_server_file_through_the_route(lab, apps):
    reply = requests.get(route(lab, "127.0.0.1", apps["http"], "/hello.txt"), headers=auth(lab), timeout=60)
    assert reply.status_code == 200, reply.text
    assert reply.text == HELLO
    # no trailing slash: redirected under the route, so the app's relative links resolve
    bare = requests.get(route(lab, "127.0.0.1", apps["http"], ""), headers=auth(lab), allow_redirects=False, timeout=60)
    assert bare.status_code == 302 and bare.headers["Location"].endswith(f"127.0.0.1:{apps['http']}/")


def test_50_mb_streams_both_ways_without_the_server_holding_them(lab, apps):
    """Download and upload of 50 MB: the bytes arrive intact and the server's RSS grows by
    less than 20 MB (sampled throughout), so neither body is held whole."""
    pid = lab.process.pid
    before = rss_kb(pid)
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_kb(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        digest, size = hashlib.sha256(), 0
        with requests.get(route(lab, "127.0.0.1", apps["http"], "/big.bin"), headers=auth(lab), stream=True,
                          timeout=120) as reply:
            assert reply.status_code == 200
            assert reply.headers["Content-Length"] == str(BIG_MB << 20)
            for chunk in reply.iter_content(1 << 16):
                digest.update(chunk)
                size += len(chunk)
        assert size == BIG_MB << 20 and digest.hexdigest() == apps["sha256"]
        print(f"after download: +{(peak[0] - before) / 1024:.1f} MB")

        def body():  # sent chunked: no Content-Length, never in memory whole on either side
            block = bytes(range(256)) * 4096
            for _ in range(BIG_MB):
                yield block
        sent = hashlib.sha256()
        for _ in range(BIG_MB):
            sent.update(bytes(range(256)) * 4096)
        reply = requests.post(route(lab, "127.0.0.1", apps["app"], "/upload"), data=body(), headers=auth(lab),
                              timeout=120)
        assert reply.status_code == 200, reply.text
        assert reply.json()["size"] == BIG_MB << 20 and reply.json()["sha256"] == sent.hexdigest()
    finally:
        done.set()
        sampler.join()
    growth_mb = (peak[0] - before) / 1024
    print(f"server RSS {before / 1024:.0f} MB, peak during 2 x {BIG_MB} MB: +{growth_mb:.1f} MB")
    assert growth_mb < 20, f"the server's RSS grew by {growth_mb:.1f} MB while streaming"


def test_websocket_echo_and_no_channel_left_open(lab, apps):
    ws = websocket.create_connection(route(lab, "127.0.0.1", apps["app"], "/ws").replace("http://", "ws://"),
                                     header=[f"Authorization: token {lab.token}"], timeout=60)
    try:
        for message in ("hello", "x" * 200_000):
            ws.send(message)
            assert ws.recv() == message
        ws.send_binary(b"\x00\x01binary")
        assert ws.recv() == b"\x00\x01binary"
    finally:
        ws.close()
    for _ in range(3):
        requests.get(route(lab, "127.0.0.1", apps["app"], "/hello"), headers=auth(lab), timeout=60)
    deadline = time.monotonic() + 10
    while established_to(apps["app"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert established_to(apps["app"]) == 0, "a channel to the app stayed open after its request"


def test_redirects_and_cookies_stay_under_the_route_and_server_credentials_stay_here(lab, apps):
    prefix = f"/jupyter-hpc/proxy/cori/127.0.0.1:{apps['app']}"
    reply = requests.get(route(lab, "127.0.0.1", apps["app"], "/redirect"), headers=auth(lab),
                         allow_redirects=False, timeout=60)
    assert reply.status_code == 302 and reply.headers["Location"] == f"{prefix}/hello"
    reply = requests.get(route(lab, "127.0.0.1", apps["app"], "/hello"), headers=auth(lab), timeout=60)
    assert "Path=" + prefix + "/" in reply.headers["Set-Cookie"]
    session = logged_in(lab)
    session.cookies.set("app_session", "s1")
    reply = session.post(route(lab, "127.0.0.1", apps["app"], "/upload"), data=b"x", timeout=60,
                         headers={"Origin": lab.base})
    assert reply.status_code == 200, reply.text
    seen = reply.json()
    assert "app_session=s1" in seen["cookie"]
    assert "username-" not in seen["cookie"] and "_xsrf" not in seen["cookie"], seen["cookie"]
    assert seen["authorization"] == "" and seen["prefix"] == prefix and seen["host"] == f"127.0.0.1:{apps['app']}"


def logged_in(lab: Lab) -> requests.Session:
    """A browser-like session: logged in by the token once, then by cookie only."""
    session = requests.Session()
    session.get(f"{lab.base}/lab?token={lab.token}", timeout=60).raise_for_status()
    assert any(c.name.startswith("username-") for c in session.cookies)
    return session


def test_authentication_and_cross_origin_refusals(lab, apps):
    """Unauthenticated: redirected to login (HTTP) or refused (websocket). Cookie-authenticated
    writes and websockets from another origin, or with no Origin/Referer: refused; from the
    server's own pages: through, with no _xsrf."""
    url = route(lab, "127.0.0.1", apps["app"], "/upload")
    anonymous = requests.get(route(lab, "127.0.0.1", apps["http"], "/hello.txt"), allow_redirects=False, timeout=60)
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    assert requests.post(url, data=b"x", timeout=60).status_code == 403
    ws_url = url.replace("http://", "ws://").replace("/upload", "/ws")
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    anonymous_ws = requests.get(url.replace("/upload", "/ws"), headers=upgrade, allow_redirects=False, timeout=30)
    assert anonymous_ws.status_code == 302 and "/login" in anonymous_ws.headers["Location"]

    session = logged_in(lab)
    evil = session.post(url, data=b"x", headers={"Origin": "http://evil.example"}, timeout=60)
    assert evil.status_code == 403 and "cross-origin" in evil.text
    assert session.post(url, data=b"x", headers={"Referer": "http://evil.example/page"}, timeout=60).status_code == 403
    assert session.post(url, data=b"x", timeout=60).status_code == 403  # neither Origin nor Referer
    assert session.post(url, data=b"x", headers={"Origin": lab.base}, timeout=60).status_code == 200
    assert session.post(url, data=b"x", headers={"Referer": f"{lab.base}/lab"}, timeout=60).status_code == 200
    cookies = "; ".join(f"{c.name}={c.value}" for c in session.cookies)
    with pytest.raises(websocket.WebSocketBadStatusException):
        websocket.create_connection(ws_url, cookie=cookies, origin="http://evil.example", timeout=30)
    ws = websocket.create_connection(ws_url, cookie=cookies, origin=lab.base, timeout=30)
    ws.send("same origin")
    assert ws.recv() == "same origin"
    ws.close()


def test_a_keep_alive_client_is_told_when_a_refusal_closes_its_connection(lab, apps):
    """A request answered before its body is read (sent to log in, refused) ends its connection
    (tornado's way of not reading the body); the answer must say ``Connection: close``, or a
    keep-alive client such as JupyterHub's proxy sends its next request into the closed
    connection and answers it with its own 503 (seen in test_proxy_hub under load)."""
    path = f"/jupyter-hpc/proxy/cori/127.0.0.1:{apps['http']}/hello.txt"
    token = {"Authorization": f"token {lab.token}"}
    connection = http.client.HTTPConnection("127.0.0.1", lab.port, timeout=60)
    try:
        # Sent to log in, then refused a host, each on the connection the one before left:
        # every answer says it closes, so the client opens a new connection each time.
        for url, headers, status in ((path, {}, 302), (path, {}, 302),
                                     ("/jupyter-hpc/proxy/cori/example.org:80/", token, 403)):
            connection.request("GET", url, headers=headers)
            reply = connection.getresponse()
            reply.read()
            assert reply.status == status, (reply.status, url)
            assert reply.getheader("Connection") == "close", reply.getheaders()
            time.sleep(0.2)  # the server's close arrives before the next request goes out
        # Proxied requests keep their connection: the second goes over the same socket.
        connection.request("GET", path, headers=token)
        reply = connection.getresponse()
        assert reply.status == 200 and reply.read().decode() == HELLO
        assert reply.getheader("Connection") != "close"
        sock = connection.sock
        connection.request("GET", path, headers=token)
        reply = connection.getresponse()
        assert reply.status == 200 and reply.read().decode() == HELLO and connection.sock is sock
    finally:
        connection.close()


def test_hosts_outside_the_allowed_set_are_refused_naming_proxy_hosts(lab, apps):
    for host in ("10.255.255.1", "example.org", "192.0.2.200"):
        reply = requests.get(route(lab, host, 80, "/"), headers=auth(lab), timeout=60)
        assert reply.status_code == 403, (host, reply.status_code)
        assert "proxy_hosts" in reply.text
    # a proxy_hosts pattern lets a host through the check (here it then does not resolve)
    reply = requests.get(route(lab, "no-such-node.allowed.example", 80, "/"), headers=auth(lab), timeout=60)
    assert reply.status_code in (502, 504) and "proxy_hosts" not in reply.text
    assert "cannot reach no-such-node.allowed.example:80" in reply.text or "did not answer" in reply.text, reply.text


def test_errors_say_which_and_what_to_try(lab, apps):
    closed = free_closed_port()
    reply = requests.get(route(lab, "127.0.0.1", closed, "/"), headers=auth(lab), timeout=60)
    assert reply.status_code == 502 and "Nothing is listening" in reply.text, reply.text
    assert "Traceback" not in reply.text
    reply = requests.get(f"{lab.base}/jupyter-hpc/proxy/nosuchsite/127.0.0.1:80/", headers=auth(lab), timeout=60)
    assert reply.status_code == 404 and "No site named" in reply.text


def test_an_app_that_stops_answering_times_out_with_a_page(lab, apps):
    started = time.monotonic()
    reply = requests.get(route(lab, "127.0.0.1", apps["app"], "/slow?seconds=30"), headers=auth(lab), timeout=60)
    waited = time.monotonic() - started
    assert reply.status_code == 504 and "idle_timeout" in reply.text, (reply.status_code, reply.text)
    assert IDLE_TIMEOUT <= waited < IDLE_TIMEOUT + 5, waited


def free_closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_kernels_web_uis_are_listed_with_links_that_open(lab, apps):
    """The Cluster sidebar's source: the kernel's listening ports (its process tree: the two apps
    it started), each with the route's URL, which opens."""
    listing = lab.hpc("GET", "proxy/kernels")
    assert listing.status_code == 200, listing.text
    [kernel] = listing.json()["kernels"]
    assert kernel["site"] == "cori" and kernel["job_id"] is None
    uis = {ui["port"]: ui for ui in kernel["web_uis"]}
    assert {apps["http"], apps["app"]} <= set(uis), uis
    assert "http.server" in uis[apps["http"]]["command"]
    url = uis[apps["http"]]["url"]
    assert url == f"/jupyter-hpc/proxy/cori/127.0.0.1:{apps['http']}/"
    reply = requests.get(f"{lab.base}{url}hello.txt", headers=auth(lab), timeout=60)
    assert reply.status_code == 200 and reply.text == HELLO
    assert requests.get(f"{lab.base}/jupyter-hpc/api/proxy/kernels", timeout=60).status_code == 403
