"""A real hub bed for tests/test_hub*.py: key service, an sshd trusting only its CA, JupyterHub.

JupyterHub runs as its own non-root unix user (``hpchub``) from the demo venv (world-readable,
made from Debian's python3), with npm's configurable-http-proxy, its own sqlite db, cookie
secret and crypt key, all in a 0600 config file in its 0700 directory: no secret in its
environment or argv. The key service and sshd run as root, as a site's services would run
as their own accounts. Cluster users have no authorized_keys: only certificates from the key
service's CA log them in.

A :class:`Browser` is a ``requests`` session that does what a browser does: the login form
with its XSRF cookie, the OAuth redirects to the user's server, JupyterLab's XSRF header, and
kernels over the server's websocket with the session's cookies.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pyotp
import requests
import websocket

from testbed.sshd import SSHDaemon, free_port, write_private
from testbed.users import ensure_user

HUB_USER = "hpchub"
CHP = "/usr/lib/node_modules/configurable-http-proxy/bin/configurable-http-proxy"
LIFETIME = 60  # seconds a certificate lasts in this bed
MARGIN = 10  # the authenticator's expiry_margin


class LoggedProcess:
    """A child process whose output goes to a root-only log file, read by the secrets scan."""

    def __init__(self, argv: list[str], log: Path, ready: re.Pattern, **popen) -> None:
        self.log = log
        self.handle = open(log, "w")
        os.chmod(log, 0o600)
        self.process = subprocess.Popen(argv, stdout=self.handle, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, **popen)
        self.ready = ready

    def wait_for(self, pattern: re.Pattern, timeout: float = 90) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = pattern.search(self.text())
            if match:
                return match
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{self.log.name}: no {pattern.pattern!r} within {timeout} s:\n{self.text()[-4000:]}")

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.handle.close()


class HubBed:
    """Key service + sshd + JupyterHub; ``users`` maps cluster user -> (password, TOTP secret)."""

    def __init__(self, bin_dir: Path, remote_python: str, users: list[str],
                 lifetime: int = LIFETIME, margin: int = MARGIN, extra_config: str = "",
                 internal_ssl: bool = True, keyservice_tls: bool = True) -> None:
        self.bin_dir = bin_dir
        # The key service over HTTPS, its certificate from a CA of the bed's that the hub pins
        # (keyservice_ca_certs), as a site's should be: not plain HTTP on a loopback port.
        self.keyservice_tls = keyservice_tls
        # JupyterHub's internal_ssl: TLS with the hub's own CAs between hub, proxy and servers.
        self.internal_ssl = internal_ssl
        self.extra_config = extra_config  # jupyterhub_config.py lines after the bed's own
        self.lifetime, self.margin = lifetime, margin
        self.remote_python = remote_python
        self.root = Path(tempfile.mkdtemp(prefix="jupyter-hpc-hubbed-"))
        os.chmod(self.root, 0o755)  # sshd's files below are read by the hub user
        self.logs = self.root / "logs"
        self.logs.mkdir(mode=0o700)
        self.users: dict[str, tuple[str, str]] = {}
        self.hub_entry = ensure_user(HUB_USER)
        for name in users:
            ensure_user(name)
        try:
            self._start_keyservice(users)
            self._start_sshd(users)
            for name in users:
                self._write_remote_kernelspec(name)
            self._start_hub()
        except BaseException:
            # A bed that fails to start leaves no service running and no directory behind.
            for service in ("hub", "sshd", "keyservice"):
                if hasattr(self, service):
                    getattr(self, service).stop()
            self.cleanup()
            raise

    # -- the site's services ------------------------------------------------------------

    def _start_keyservice(self, users: list[str]) -> None:
        from jupyter_hpc.keyservice import UserStore

        self.ks_dir = self.root / "keyservice"
        self.ks_dir.mkdir(mode=0o700)
        store = UserStore(self.ks_dir)
        for name in users:
            password = f"pw-{secrets.token_hex(6)} spaced"
            self.users[name] = (password, store.add_user(name, password))
        self.keyservice_ca = self._make_keyservice_tls() if self.keyservice_tls else None
        self.keyservice_url = self.restart_keyservice(0)
        self.ca_public_key = requests.get(self.keyservice_url + "get_ca_pubkey/default/", timeout=10,
                                          verify=self.keyservice_ca or True).text.strip()

    def _make_keyservice_tls(self) -> str:
        """A CA (its PEM readable by the hub's user) and the key service's certificate for 127.0.0.1."""
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        tls = self.root / "tls"
        tls.mkdir(mode=0o755)
        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jupyter-hpc test key service CA")])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
              .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
              .not_valid_after(now + datetime.timedelta(days=2))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(ca_key, hashes.SHA256()))
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
                .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                               critical=False).sign(ca_key, hashes.SHA256()))
        write_private(tls / "ca.pem", ca.public_bytes(serialization.Encoding.PEM).decode(), 0o644)
        write_private(tls / "keyservice.pem", cert.public_bytes(serialization.Encoding.PEM).decode())
        write_private(tls / "keyservice.key", key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode())
        return str(tls / "ca.pem")

    def restart_keyservice(self, port: int) -> str:
        """(Re)start the key service on ``port`` (0: any); its URL. Its state survives."""
        log = self.logs / "keyservice.log"
        if hasattr(self, "keyservice"):
            self.keyservice.stop()
            log = self.logs / f"keyservice-{time.monotonic_ns()}.log"
        self.keyservice = LoggedProcess(
            [shutil.which("jupyter-hpc"), "keyservice", "--port", str(port), "--state-dir", str(self.ks_dir),
             "--scope", "default", "--trusted-proxy", "127.0.0.1",  # the hub: it names each browser's address
             "--lifetime", str(self.lifetime), "--debug",
             *(["--certfile", str(self.root / "tls/keyservice.pem"), "--keyfile", str(self.root / "tls/keyservice.key")]
               if self.keyservice_tls else [])],
            log, re.compile(""),
        )
        match = self.keyservice.wait_for(re.compile(r"listening on (https?://127\.0\.0\.1:\d+/)"), 30)
        return match.group(1)

    def _start_sshd(self, users: list[str]) -> None:
        ca_file = self.root / "user_ca.pub"
        write_private(ca_file, self.ca_public_key + "\n", 0o644)
        self.sshd = SSHDaemon(self.root / "sshd", users=users, options={
            "TrustedUserCAKeys": str(ca_file),
            "AuthorizedKeysFile": "none",  # only the key service's certificates log in
        }).start()
        os.chmod(self.sshd.known_hosts, 0o644)

    def _write_remote_kernelspec(self, user: str) -> None:
        entry = pwd.getpwnam(user)
        directory = Path(entry.pw_dir) / ".local/share/jupyter/kernels/python3"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "kernel.json").write_text(json.dumps({
            "argv": [self.remote_python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3", "language": "python",
        }))
        subprocess.run(["chown", "-R", f"{user}:", str(Path(entry.pw_dir) / ".local")], check=True)

    # -- the hub ------------------------------------------------------------------------

    def _start_hub(self) -> None:
        self.hub_dir = self.root / "hub"
        self.hub_dir.mkdir(mode=0o700)
        self.port, hub_port, api_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_token = secrets.token_hex(32)
        internal = "https" if self.internal_ssl else "http"
        config = f"""
c = get_config()  # noqa
c.JupyterHub.bind_url = "{self.url}"
c.JupyterHub.hub_bind_url = "{internal}://127.0.0.1:{hub_port}"
c.ConfigurableHTTPProxy.api_url = "{internal}://127.0.0.1:{api_port}"
c.JupyterHub.internal_ssl = {self.internal_ssl}
c.ConfigurableHTTPProxy.command = [{CHP!r}]
c.JupyterHub.db_url = "sqlite:///{self.hub_dir}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret = bytes.fromhex("{secrets.token_hex(32)}")
c.CryptKeeper.keys = [bytes.fromhex("{secrets.token_hex(32)}")]
c.JupyterHub.pid_file = "{self.hub_dir}/jupyterhub.pid"
c.JupyterHub.log_level = "DEBUG"
c.JupyterHub.authenticator_class = "jupyter_hpc.hub.SSHCertAuthenticator"
c.SSHCertAuthenticator.keyservice_url = "{self.keyservice_url}create_pair/default/"
c.SSHCertAuthenticator.keyservice_ca_certs = "{self.keyservice_ca or ''}"
c.SSHCertAuthenticator.expiry_margin = {self.margin}
c.JupyterHub.spawner_class = "jupyter_hpc.hub.HPCSpawner"
c.HPCSpawner.user_dir_root = "{self.hub_dir}/users"
c.Spawner.start_timeout = 90
c.Spawner.http_timeout = 90
c.Spawner.debug = True
c.HPCSites.sites = {{"cori": {{
    "display_name": "Cori", "host": "127.0.0.1", "port": {self.sshd.port},
    "known_hosts": "{self.sshd.known_hosts}", "remote_python": "{self.remote_python}",
}}}}
c.JupyterHub.services = [{{"name": "hubtest", "api_token": "{self.admin_token}"}}]
c.JupyterHub.load_roles = [
    {{"name": "hubtest", "scopes": ["admin:users", "admin:servers", "admin:auth_state", "access:servers", "read:tokens"],
     "services": ["hubtest"]}},
]
""" + self.extra_config
        config_file = self.hub_dir / "jupyterhub_config.py"
        write_private(config_file, config)
        subprocess.run(["chown", "-R", f"{HUB_USER}:", str(self.hub_dir)], check=True)
        self._launch_hub(self.logs / "hub.log")

    def _launch_hub(self, log: Path) -> None:
        env = {
            "HOME": self.hub_entry.pw_dir,
            "PATH": f"{self.bin_dir}:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
        }
        self.hub = LoggedProcess(
            [shutil.which("runuser") or "/usr/sbin/runuser", "-u", HUB_USER, "--",
             str(self.bin_dir / "jupyterhub"), "-f", str(self.hub_dir / "jupyterhub_config.py")],
            log, re.compile(""), env=env, cwd=str(self.hub_dir),
        )
        self.hub.wait_for(re.compile(r"JupyterHub is now running"), 90)

    def restart_hub(self) -> None:
        """Stop the hub (SIGTERM) and start it again on the same config, db and ports."""
        self.hub.stop()
        self._launch_hub(self.logs / f"hub-{time.monotonic_ns()}.log")

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, f"{self.url}/hub/api/{path}",
                                headers={"Authorization": f"token {self.admin_token}"}, timeout=30, **kwargs)

    def progress_events(self, user: str, spawning: threading.Thread | None = None) -> list[dict]:
        """The hub's progress stream of ``user``'s spawn, from its first event until ready or
        failed; [] when the spawn (the request running in ``spawning``) ended before the stream
        could be opened."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ended = spawning is not None and not spawning.is_alive()
            with self.api("GET", f"users/{user}/server/progress", stream=True) as reply:
                if reply.status_code in (400, 404):  # not begun yet (no spawner yet: 404), or over
                    if ended:
                        return []
                    time.sleep(0.05)
                    continue
                assert reply.status_code == 200, reply.text
                events = []
                for line in reply.iter_lines(decode_unicode=True):
                    if line.startswith("data:"):
                        events.append(json.loads(line[5:]))
                        if events[-1].get("ready") or events[-1].get("failed"):
                            return events
                return events
        raise AssertionError(f"{user}'s spawn never began")

    def user_model(self, name: str) -> dict | None:
        reply = self.api("GET", f"users/{name}")
        return reply.json() if reply.status_code == 200 else None

    def auth_state(self, name: str) -> dict:
        return (self.user_model(name) or {}).get("auth_state") or {}

    def code(self, name: str) -> str:
        return pyotp.TOTP(self.users[name][1]).now()

    def fresh_code(self, name: str, used: set[str]) -> str:
        """A code not yet used: the key service accepts each code once."""
        totp = pyotp.TOTP(self.users[name][1])
        while (code := totp.now()) in used:
            time.sleep(0.5)
        used.add(code)
        return code

    def hub_pid(self) -> int:
        """The jupyterhub process (a child of runuser)."""
        children = Path(f"/proc/{self.hub.process.pid}/task/{self.hub.process.pid}/children").read_text().split()
        return int(children[0]) if children else self.hub.process.pid

    def stop(self) -> None:
        for name in self.users:
            self.api("DELETE", f"users/{name}/server")
        self.hub.stop()
        self.sshd.stop()
        self.keyservice.stop()

    def cleanup(self) -> None:
        if hasattr(self, "hub_dir"):
            subprocess.run(["pkill", "-u", HUB_USER, "-f", str(self.hub_dir)], check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def server_pid(user: str) -> int:
    """The pid (as the host sees it) of ``user``'s single-user server process: inside its
    sandbox, not bwrap's (the hub's unix user runs them all; root reads every environment)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        server = b"jupyterhub.singleuser" in argv or any(arg.endswith(b"jupyterhub-singleuser") for arg in argv[:2])
        if server and not argv[0].endswith(b"bwrap") and f"JUPYTERHUB_USER={user}".encode() in env:
            return int(pid)
    raise AssertionError(f"no server process of {user}")


class Browser:
    """What a browser does against the hub, with requests."""

    def __init__(self, bed: HubBed, user: str) -> None:
        self.bed = bed
        self.user = user
        self.session = requests.Session()

    def login_page(self) -> requests.Response:
        return self.session.get(f"{self.bed.url}/hub/login", timeout=30)

    def login(self, password: str | None = None, code: str | None = None) -> requests.Response:
        """Submit the login form; the answer after redirects (the spawn page on success)."""
        page = self.login_page()
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
        form = {
            "_xsrf": xsrf, "username": self.user,
            "password": self.bed.users[self.user][0] if password is None else password,
            "otp": self.bed.code(self.user) if code is None else code,
        }
        return self.session.post(f"{self.bed.url}/hub/login?next=", data=form, timeout=60)

    def wait_server(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.bed.user_model(self.user) or {}
            server = (model.get("servers") or {}).get("")
            if server and server.get("ready"):
                return
            time.sleep(0.5)
        raise AssertionError(f"{self.user}'s server not ready in {timeout} s:\n{self.bed.hub.text()[-5000:]}")

    def open_lab(self) -> requests.Response:
        """The OAuth dance to the user's server, as opening /user/<name>/lab does."""
        return self.session.get(f"{self.bed.url}/user/{self.user}/lab", timeout=60)

    def server_api(self, method: str, path: str, user: str | None = None, **kwargs) -> requests.Response:
        user = user or self.user
        xsrf = self.session.cookies.get("_xsrf", path=f"/user/{user}/") or ""
        return self.session.request(method, f"{self.bed.url}/user/{user}/api/{path}",
                                    headers={"X-XSRFToken": xsrf}, timeout=90, allow_redirects=False, **kwargs)

    def start_kernel(self, name: str = "cori-login-python3") -> "Kernel":
        reply = self.server_api("POST", "kernels", json={"name": name})
        assert reply.status_code == 201, (reply.status_code, reply.text, self.bed.hub.text()[-5000:])
        return Kernel(self, reply.json()["id"])


class Kernel:
    """A kernel through the server's websocket, authenticated by the browser's cookies."""

    def __init__(self, browser: Browser, kernel_id: str) -> None:
        self.id = kernel_id
        self.session = uuid.uuid4().hex
        cookies = "; ".join(f"{c.name}={c.value}" for c in browser.session.cookies
                            if c.path in ("/", f"/user/{browser.user}/"))
        port = browser.bed.port
        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{port}/user/{browser.user}/api/kernels/{kernel_id}/channels?session_id={self.session}",
            cookie=cookies, origin=f"http://127.0.0.1:{port}", timeout=60,
        )
        self.lock = threading.Lock()

    def execute(self, code: str, timeout: float = 60) -> dict:
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "session": self.session,
                       "username": "test", "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "content": {"code": code, "silent": False},
            "channel": "shell", "buffers": [],
        }))
        stdout, error = [], None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no idle after {code!r}"
            self.ws.settimeout(left)
            msg = json.loads(self.ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                stdout.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                error = msg["content"]["ename"]
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return {"stdout": "".join(stdout), "error": error}

    def close(self) -> None:
        self.ws.close()
