"""Issue 26: a hub a centre can put on the internet. Each test performs an attack on a real
JupyterHub (as its non-root user, HPCSpawner, the key service, an sshd trusting only its CA)
and asserts it fails: from a kernel on the cluster, with a user's own API token, with the
server's own endpoints, as another unix user of the hub host. SECURITY.md lists each with the
defence it proves.

One bed for the module, hour-long certificates, two hub users.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from demo_helpers import ensure_demo_venv
from hub_helpers import Browser, HubBed, Kernel, server_pid
from testbed import spy
from testbed.sshd import free_port
from testbed.users import NEIGHBOUR_USER, ensure_user

pytestmark = pytest.mark.timeout(300)

MALLORY, VICTOR, SQUATTED = "hpcmallory", "hpcvictor", "hpcsquatted"
SQUAT_PORT = free_port()  # the port SQUATTED's server is given, which a neighbour binds first

# The hub gives SQUATTED's server a known port, standing in for a neighbour who guessed it.
FIXED_PORT = f"""
def _fixed_port(spawner):
    if spawner.user.name == {SQUATTED!r}:
        spawner.port = {SQUAT_PORT}
c.Spawner.pre_spawn_hook = _fixed_port
c.Spawner.mem_limit = "2G"  # which bubblewrap cannot enforce: the log must say so
"""


@pytest.fixture(scope="module")
def bed(remote_python):
    hub = HubBed(ensure_demo_venv(), remote_python, [MALLORY, VICTOR, SQUATTED], lifetime=3600, margin=60,
                 extra_config=FIXED_PORT)  # internal_ssl, as the bed's default
    yield hub
    hub.stop()
    hub.cleanup()


def logged_in(bed, user: str) -> Browser:
    browser = Browser(bed, user)
    assert browser.login().status_code == 200
    browser.wait_server()
    assert browser.open_lab().status_code == 200
    return browser


@pytest.fixture(scope="module")
def mallory(bed):
    """The attacker: a hub user with a server and a notebook's kernel on the cluster."""
    return logged_in(bed, MALLORY)


@pytest.fixture(scope="module")
def victor(bed):
    """Another hub user, logged in, server running: what Mallory must not reach."""
    return logged_in(bed, VICTOR)


def notebook_kernel(browser: Browser, path: str = "attack.ipynb") -> Kernel:
    """A kernel started as JupyterLab starts a notebook's (``POST /api/sessions``)."""
    reply = browser.server_api("POST", "sessions", json={
        "path": path, "name": path, "type": "notebook", "kernel": {"name": "cori-login-python3"}})
    assert reply.status_code == 201, (reply.status_code, reply.text)
    return Kernel(browser, reply.json()["kernel"]["id"])


# Run inside the kernel on the cluster: every variable that names a token or the hub, and
# what the hub API answers about the user with every value of the environment as a token.
KERNEL_PROBE = r"""
import json, os, urllib.request, urllib.error
hub, user = {hub!r}, {user!r}
names = sorted(os.environ)
tried, leaked = 0, []
for value in set(os.environ.values()) | {{""}}:
    request = urllib.request.Request(hub + "/hub/api/users/" + user)
    if value:
        request.add_header("Authorization", "token " + value)
    tried += 1
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            body = reply.read().decode()
        if "auth_state" in body or "ssh_private_key" in body:
            leaked.append(value[:6])
    except urllib.error.HTTPError:
        pass
print(json.dumps({{"names": names, "tried": tried, "leaked": leaked,
                  "session": os.environ.get("JPY_SESSION_NAME")}}))
"""


def test_a_notebook_kernel_holds_no_token_and_reaches_no_key(bed, mallory):
    """JupyterLab's way of starting a kernel: the kernel on the cluster has no token in its
    environment, and from inside it the hub API gives no auth_state with any value it has."""
    kernel = notebook_kernel(mallory)
    try:
        out = kernel.execute(KERNEL_PROBE.format(hub=bed.url, user=MALLORY))
    finally:
        kernel.close()
    assert out["error"] is None, out
    seen = json.loads(out["stdout"])
    assert seen["session"] and seen["session"].endswith("attack.ipynb"), seen  # the allow list's one entry
    forbidden = [name for name in seen["names"]
                 if name in ("JPY_API_TOKEN", "JUPYTER_TOKEN") or name.startswith("JUPYTERHUB_") or "TOKEN" in name]
    assert forbidden == [], forbidden
    assert seen["tried"] > 5 and seen["leaked"] == [], seen


def test_a_personal_api_token_reads_no_credential(bed, mallory):
    """A token Mallory makes for herself (what /hub/token does) reads her model, but no key:
    the user role no longer holds admin:auth_state."""
    xsrf = mallory.session.cookies.get("_xsrf", path="/hub/") or ""
    made = mallory.session.post(f"{bed.url}/hub/api/users/{MALLORY}/tokens", json={"note": "mine"},
                                headers={"X-XSRFToken": xsrf}, timeout=30)
    assert made.status_code == 201, (made.status_code, made.text)
    token = made.json()["token"]
    mine = requests.get(f"{bed.url}/hub/api/users/{MALLORY}", headers={"Authorization": f"token {token}"}, timeout=30)
    assert mine.status_code == 200 and mine.json()["name"] == MALLORY
    assert "auth_state" not in mine.json() and "ssh_private_key" not in mine.text
    # The hub does hold it, and pushed it to her server (the admin's view, for contrast).
    assert bed.auth_state(MALLORY)["ssh_private_key"]
    held = requests.get(f"{bed.url}/user/{MALLORY}/jupyter-hpc/api/credential",
                        headers={"Authorization": f"token {bed.admin_token}"}, timeout=30)
    assert held.json()["fingerprint"] == bed.auth_state(MALLORY)["ssh_fingerprint"], held.text


def test_only_the_hub_hands_a_server_a_credential(bed, mallory, victor):
    """Mallory, logged in to her own server, cannot push a credential into it (only the hub,
    with the server's own token, can), nor into Victor's; his keeps the hub's."""
    fake = {"auth_state": {"ssh_private_key": "x", "ssh_certificate": "y"}}
    xsrf = mallory.session.cookies.get("_xsrf", path=f"/user/{MALLORY}/") or ""
    for owner in (MALLORY, VICTOR):
        pushed = mallory.session.post(f"{bed.url}/user/{owner}/jupyter-hpc/api/credential", json=fake,
                                      headers={"X-XSRFToken": xsrf}, allow_redirects=False, timeout=30)
        assert pushed.status_code in (302, 403), (owner, pushed.status_code, pushed.text[:300])
    held = requests.get(f"{bed.url}/user/{VICTOR}/jupyter-hpc/api/credential",
                        headers={"Authorization": f"token {bed.admin_token}"}, timeout=30)
    assert held.json()["fingerprint"] == bed.auth_state(VICTOR)["ssh_fingerprint"], held.text


def test_the_hub_warns_of_a_user_role_that_reads_auth_state(caplog):
    """A config that still grants admin:auth_state to the user role gets a warning at start."""
    from jupyter_hpc.hub.authenticator import SSHCertAuthenticator

    class Hub:  # what get_handlers reads of JupyterHub's app
        load_roles = [{"name": "user", "scopes": ["self", "admin:auth_state!user"]}]

    authenticator = SSHCertAuthenticator()
    with caplog.at_level("WARNING"):
        authenticator.get_handlers(Hub())
    assert re.search(r"'user' role is granted admin:auth_state!user .*remove it", caplog.text), caplog.text
    caplog.clear()
    Hub.load_roles = [{"name": "user", "scopes": ["self"]}]
    authenticator.get_handlers(Hub())
    assert "admin:auth_state" not in caplog.text


NOTEBOOK = {
    "nbformat": 4, "nbformat_minor": 5, "metadata": {},
    "cells": [
        {"cell_type": "markdown", "id": "m", "metadata": {}, "source": "hello <script>window.pwned = 1</script>"},
        {"cell_type": "code", "id": "c", "metadata": {}, "execution_count": 1, "source": "1",
         "outputs": [{"output_type": "display_data", "metadata": {},
                      "data": {"text/html": "<img src=x onerror=\"window.pwned=2\"><script>window.pwned=3</script>"}}]},
    ],
}


def test_nothing_runs_on_the_hub_host_on_a_users_word(bed, mallory):
    """Each entry of jupyter_hpc.hub.lockdown.TURNED_OFF, tried on Mallory's server."""
    server = f"{bed.url}/user/{MALLORY}"
    xsrf = mallory.session.cookies.get("_xsrf", path=f"/user/{MALLORY}/") or ""
    headers = {"X-XSRFToken": xsrf}

    def call(method: str, path: str, **kwargs) -> requests.Response:
        return mallory.session.request(method, f"{server}/{path}", headers=headers, timeout=60,
                                       allow_redirects=False, **kwargs)

    # JupyterLab's extension manager: read-only, installs and uninstalls nothing.
    install = call("POST", "lab/api/extensions", json={"cmd": "install", "extension_name": "jupyter-hpc-canary"})
    assert install.status_code == 422 and "blocked" in install.text, (install.status_code, install.text[:300])
    uninstall = call("POST", "lab/api/extensions", json={"cmd": "uninstall", "extension_name": "jupyterlab"})
    assert uninstall.status_code != 200 or json.loads(uninstall.text).get("status") != "ok", uninstall.text[:300]
    # JupyterLab's build (node on the hub host) is refused before it starts.
    assert call("POST", "lab/api/build").status_code == 403
    # jupyter_lsp is not loaded: no language server starts.
    assert call("GET", "lsp/status").status_code == 404
    # Local kernels: only the cluster's are offered, and a local one does not start.
    specs = call("GET", "api/kernelspecs").json()["kernelspecs"]
    assert specs and all(name.startswith("cori-") for name in specs), list(specs)
    local = call("POST", "api/kernels", json={"name": "python3"})
    if local.status_code == 201:  # the server answers at once and starts in the background
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            model = call("GET", f"api/kernels/{local.json()['id']}")
            if model.status_code == 404 or model.json().get("execution_state") == "dead":
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"a local kernel started: {model.text}")
    else:
        assert local.status_code >= 400, local.text
    # Local terminals: none on the hub host (jupyter_hpc's terminals, where offered, are on the cluster).
    terminals = call("GET", "api/terminals")
    assert terminals.status_code == 404 or all(t.get("site") for t in terminals.json()), terminals.text[:300]

    # nbconvert: a notebook on the cluster, exported.
    put = call("PUT", "api/contents/lockdown.ipynb", json={"type": "notebook", "format": "json", "content": NOTEBOOK})
    assert put.status_code in (200, 201), (put.status_code, put.text[:300])
    for tool_format in ("pdf", "latex", "webpdf", "qtpdf", "qtpng"):
        reply = call("GET", f"nbconvert/{tool_format}/lockdown.ipynb")
        assert reply.status_code == 403, (tool_format, reply.status_code, reply.text[:200])
        posted = call("POST", f"nbconvert/{tool_format}", json=NOTEBOOK)
        assert posted.status_code == 403, (tool_format, posted.status_code)
    assert call("GET", "nbconvert/html/lockdown.ipynb?sanitize_html=false").status_code == 403
    html = call("GET", "nbconvert/html/lockdown.ipynb")
    assert html.status_code == 200, html.text[:300]
    # The notebook's script and handler are gone or inert text, not markup.
    assert not re.search(r"<script>window\.pwned|<img[^>]*onerror", html.text), "unsanitised HTML export"
    assert "hello" in html.text  # the export itself works
    assert call("GET", "nbconvert/markdown/lockdown.ipynb").status_code == 200
    call("DELETE", "api/contents/lockdown.ipynb")



# Run as the hub's uid, standing in for a hole in a server: what of the hub can it read?
INSIDE_PROBE = r"""
import json, os, sys
targets = json.loads(sys.argv[1])
seen = {}
for name, path in targets.items():
    try:
        with open(path, "rb") as handle:
            handle.read(1)
        seen[name] = "read"
    except IsADirectoryError:
        seen[name] = "listed" if os.listdir(path) is not None else "empty"
    except FileNotFoundError:
        seen[name] = "absent"
    except PermissionError:
        seen[name] = "denied"
status = open("/proc/self/status").read()
seen["no_new_privs"] = "NoNewPrivs:\t1" in status
seen["pids"] = len([p for p in os.listdir("/proc") if p.isdigit()])
print(json.dumps(seen))
"""


def test_a_server_sees_nothing_of_the_hub_or_another_user(bed, mallory, victor):
    """From inside Mallory's server (code run as the hub's uid in her server's namespaces): Victor's
    directory, the hub's database, config (with its cookie secret), the key service's state, and
    the hub's and Victor's server's /proc/<pid>/environ are absent. The same probe outside the
    sandbox, as the same uid, reads them (the control)."""
    hub_uid, hub_gid = bed.hub_entry.pw_uid, bed.hub_entry.pw_gid
    targets = {
        "victor_dir": str(bed.hub_dir / "users" / VICTOR / "config" / "jupyter_server_config.json"),
        "hub_db": str(bed.hub_dir / "jupyterhub.sqlite"),
        "hub_config": str(bed.hub_dir / "jupyterhub_config.py"),
        "keyservice_state": str(bed.ks_dir / "audit.log"),
        "hub_environ": f"/proc/{bed.hub_pid()}/environ",
        "victor_environ": f"/proc/{server_pid(VICTOR)}/environ",
        "own_dir": str(bed.hub_dir / "users" / MALLORY / "config" / "jupyter_server_config.json"),
    }
    inside = subprocess.run(
        ["nsenter", "-t", str(server_pid(MALLORY)), "-U", "-m", "-p", "-i", "-S", str(hub_uid), "-G", str(hub_gid),
         "--", "/usr/bin/python3", "-c", INSIDE_PROBE, json.dumps(targets)],
        capture_output=True, text=True, timeout=60)
    assert inside.returncode == 0, inside.stderr
    seen = json.loads(inside.stdout)
    assert seen.pop("own_dir") == "read"  # the probe runs where the server does
    seen.pop("no_new_privs")  # the probe's own (nsenter's child): the server's is read below
    assert seen.pop("pids") < 10  # its own pid namespace: the server and its children only
    assert seen == {name: "absent" for name in seen}, seen
    # The server itself: no new privileges, and user, mount, pid and IPC namespaces of its own.
    pid = server_pid(MALLORY)
    assert "NoNewPrivs:\t1" in Path(f"/proc/{pid}/status").read_text()
    for ns in ("user", "mnt", "pid", "ipc"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns
    # A memory limit asked for is not silently dropped: bubblewrap sets none, and the log says so.
    assert re.search(r"Spawner.mem_limit \(2147483648 bytes\) is not enforced", bed.hub.text())
    # Control: the hub's uid without the sandbox reads the hub's own files.
    outside = subprocess.run(["runuser", "-u", bed.hub_entry.pw_name, "--", "/usr/bin/python3", "-c", INSIDE_PROBE,
                              json.dumps(targets)], capture_output=True, text=True, timeout=60)
    control = json.loads(outside.stdout)
    assert control["hub_db"] == control["hub_config"] == control["victor_dir"] == "read", control


def listeners_of(pid: int) -> tuple[list[str], list[str]]:
    """The TCP addresses (``ip:port``) and Unix socket paths process ``pid`` listens on."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    tcp = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                address, port = fields[1].rsplit(":", 1)
                ip = "127.0.0.1" if table == "tcp" else "[::1]"
                tcp.append(f"{ip}:{int(port, 16)}")
    unix = []
    for line in Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[6] in inodes and fields[7].startswith("/"):
            unix.append(fields[7])
    return tcp, unix


def test_a_third_unix_user_of_the_hub_host_reads_nothing_of_a_running_kernel(bed, mallory, remote_python):
    """The hub host's kernel ends are Unix sockets in the server's 0700 directory: another unix
    user who subscribes to every socket and port the server listens on, while the kernel prints,
    receives nothing of it."""
    spy_user = ensure_user(NEIGHBOUR_USER)
    kernel = notebook_kernel(mallory, "spied.ipynb")
    spy_dir = None
    try:
        assert kernel.execute("print('warm')")["stdout"] == "warm\n"
        tcp, unix = listeners_of(server_pid(MALLORY))
        kernel_sockets = [path for path in unix if "/runtime/hpc-" in path]
        assert len(kernel_sockets) >= 5, unix  # shell, iopub, stdin, control, hb: Unix sockets
        spy_dir = Path(tempfile.mkdtemp(prefix="jupyter-hpc-spy26-"))  # pytest's tmp_path is root's alone
        shutil.copy(spy.__file__, spy_dir / "spy.py")
        for path in (spy_dir, spy_dir / "spy.py"):
            os.chmod(path, 0o755)
        spying = subprocess.Popen(
            ["runuser", "-u", spy_user.pw_name, "--", remote_python, str(spy_dir / "spy.py"),
             json.dumps(tcp), json.dumps(unix), "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)
        out = kernel.execute("import time\nfor i in range(25):\n    print('CANARY-' + 'hub-host', i, flush=True)\n    time.sleep(0.1)")
        stdout, stderr = spying.communicate(timeout=60)
    finally:
        kernel.close()
        if spy_dir:
            shutil.rmtree(spy_dir, ignore_errors=True)
    assert "CANARY-hub-host 24" in out["stdout"]  # the owner reads it
    seen = json.loads(stdout or "{}")
    assert seen, stderr
    assert "CANARY" not in seen["received"] and "execute" not in seen["received"], seen["received"][:500]
    denied = [error for error in seen["errors"] if any(path in error for path in kernel_sockets)]
    assert len(denied) == len(kernel_sockets) and all("Permission denied" in e for e in denied), seen["errors"]
    # The one TCP port is the server's own, TLS with the hub's internal CA (internal_ssl): without
    # the hub's or the proxy's client certificate, no request gets an answer.
    assert len(tcp) == 1, tcp
    for scheme in ("http", "https"):
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"{scheme}://{tcp[0]}/user/{MALLORY}/api/status", timeout=10, verify=False)



def test_the_hub_refuses_to_start_without_its_sandbox_unless_told(tmp_path, monkeypatch, caplog):
    """Where bwrap cannot run (here: not on PATH), the hub's start fails naming the fix; with
    sandbox = 'off' it starts and the log says what that gives up."""
    from traitlets.config import Config

    from jupyter_hpc.hub.authenticator import SSHCertAuthenticator
    from jupyter_hpc.hub.sandbox import SandboxUnavailable
    from jupyter_hpc.hub.spawner import HPCSpawner

    class Hub:  # what get_handlers reads of JupyterHub's app at its start
        spawner_class = HPCSpawner
        config = Config()
        load_roles: list = []

    authenticator = SSHCertAuthenticator()
    authenticator.get_handlers(Hub())  # bwrap works here: no refusal
    monkeypatch.setenv("PATH", str(tmp_path))
    with caplog.at_level("WARNING"), pytest.raises(SandboxUnavailable, match=r"apt-get install bubblewrap.*sandbox = 'off'"):
        authenticator.get_handlers(Hub())
    assert "The hub will not start" in caplog.text
    caplog.clear()
    Hub.config = Config({"HPCSpawner": {"sandbox": "off"}})
    with caplog.at_level("WARNING"):
        authenticator.get_handlers(Hub())
    assert "sandbox is 'off'" in caplog.text and "reads the hub's database" in caplog.text, caplog.text
    assert "internal_ssl is off" in caplog.text  # and the push's channel is named too


# A neighbour's listener on the port a server is about to use: it records every byte it is sent.
SQUATTER = r"""
import socket, sys, threading, time
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", int(sys.argv[1])))
listener.listen(16)
print("bound", flush=True)
listener.settimeout(0.5)
got, deadline = [], time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    try:
        conn, _ = listener.accept()
    except socket.timeout:
        continue
    conn.settimeout(1)
    try:
        got.append(conn.recv(65536))
    except OSError:
        pass
    conn.close()
sys.stdout.write(repr({"connections": len(got), "bytes": b"".join(got)}))
"""


def test_a_neighbour_who_binds_a_servers_port_first_gets_no_token_or_key(bed):
    """Another unix user binds the port a user's server is about to listen on. The hub's
    readiness checks and the credential push then reach the neighbour, but over TLS to the
    server's certificate (internal_ssl): the handshake fails and nothing is sent."""
    spy_user = ensure_user(NEIGHBOUR_USER)
    squatter = subprocess.Popen(["runuser", "-u", spy_user.pw_name, "--", "/usr/bin/python3", "-c", SQUATTER,
                                 str(SQUAT_PORT), "10"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert squatter.stdout.readline().strip() == "bound", squatter.stderr.read()
        browser = Browser(bed, SQUATTED)
        browser.login()  # the spawn starts; the server cannot bind its port
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not bed.auth_state(SQUATTED).get("ssh_private_key"):
            time.sleep(0.5)
        stolen = bed.auth_state(SQUATTED)
        out, err = squatter.communicate(timeout=60)
    finally:
        if squatter.poll() is None:
            squatter.kill()
    seen = eval(out)  # noqa: S307 - our own repr of a dict of an int and bytes
    assert seen["connections"] >= 1, (out, err)  # the hub did reach the neighbour's port
    received = seen["bytes"]
    for secret in ("Authorization", "token", stolen["ssh_private_key"].splitlines()[1][:20],
                   stolen["ssh_certificate"].split()[1][40:80]):
        assert secret.encode() not in received, secret
    assert received[:1] in (b"\x16", b""), received[:40]  # TLS handshakes, never HTTP
    bed.api("DELETE", f"users/{SQUATTED}/server")


def test_a_neighbour_who_binds_the_key_services_port_first_gets_no_password(bed):
    """The key service restarts; another unix user binds its port first. The hub speaks HTTPS to
    it with the key service's CA pinned (keyservice_ca_certs): the neighbour gets a TLS
    handshake, never a password or code, and the login page says the service is unreachable."""
    port = urlsplit(bed.keyservice_url).port
    bed.keyservice.stop()
    spy_user = ensure_user(NEIGHBOUR_USER)
    squatter = subprocess.Popen(["runuser", "-u", spy_user.pw_name, "--", "/usr/bin/python3", "-c", SQUATTER,
                                 str(port), "8"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    password = bed.users[SQUATTED][0]
    try:
        assert squatter.stdout.readline().strip() == "bound", squatter.stderr.read()
        page = Browser(bed, SQUATTED).login()
        out, err = squatter.communicate(timeout=60)
    finally:
        if squatter.poll() is None:
            squatter.kill()
        bed.restart_keyservice(port)
    assert page.status_code == 503 and "key service" in page.text, (page.status_code, page.text[-1500:])
    seen = eval(out)  # noqa: S307 - our own repr of a dict of an int and bytes
    assert seen["connections"] >= 1, (out, err)  # the hub did reach the neighbour's port
    assert password.encode() not in seen["bytes"] and b"Authorization" not in seen["bytes"]
    assert seen["bytes"][:1] == b"\x16", seen["bytes"][:40]  # a TLS handshake, never HTTP


def test_passwords_never_cross_the_network_in_clear():
    """The hub refuses a plain-HTTP key service on another host (the password and code would
    cross the network readable), and accepts HTTPS, or plain HTTP on loopback only."""
    from jupyter_hpc.hub.authenticator import SSHCertAuthenticator

    for url in ("http://192.0.2.10:8990/create_pair/default/", "http://keys.example.org/create_pair/default/"):
        with pytest.raises(ValueError, match="in clear"):
            SSHCertAuthenticator(keyservice_url=url)
    for url in ("https://keys.example.org/create_pair/default/", "http://127.0.0.1:8990/create_pair/default/"):
        assert SSHCertAuthenticator(keyservice_url=url).keyservice_url == url




def test_stopping_a_sandboxed_server_signals_the_server_itself(bed, victor):
    """The hub's SIGINT/SIGTERM reach the server inside its sandbox, not only bwrap, which would
    die of them and take the server with it by SIGKILL, before any handler of the server's ran."""
    mark = len(bed.hub.text())
    assert bed.api("DELETE", f"users/{VICTOR}/server").status_code in (202, 204)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (bed.user_model(VICTOR) or {}).get("servers"):
        time.sleep(0.2)
    stopped = bed.hub.text()[mark:]
    assert "Interrupting" in stopped and "ServerApp] Interrupted" in stopped, stopped[-3000:]
