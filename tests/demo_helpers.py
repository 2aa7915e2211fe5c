"""Running `jupyter hpc demo` as a non-root user, and talking to it, for tests/test_demo*.py.

CI runs as root, but the demo must work for an ordinary user, so the tests start it with
``runuser -u hpcdemo --``: a user of its own, so that other tests' kernels, SLURM jobs and
files of the shared test user never blur what the demo leaves behind. That user cannot run root's Python, hence a world-readable venv
made from Debian's python3 holding a non-editable install of this checkout (found from this
file, since CI runs from its own clone) and JupyterLab. It is built once and reused; when
the package's sources change, only the package is reinstalled.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pyotp
import requests
import websocket

from jupyter_rest import rest
from testbed.users import ensure_user

REPO = Path(__file__).resolve().parent.parent
DEMO_USER = "hpcdemo"
DEMO_VENV = Path(os.environ.get("JUPYTER_HPC_DEMO_VENV", "/opt/jupyter-hpc-test/demo-venv"))
URL_LINE = re.compile(r"^\s+(http://127\.0\.0\.1:(\d+)/(?:lab\?token=([0-9a-f]+)|hub/login))\s*$")
LOGIN_LINE = re.compile(r"^Log in with user name (\S+) and the password$")
SECRET = re.compile(r"otpauth://totp/\S*[?&]secret=([A-Z2-7]+)")
STATE_LINE = re.compile(r"^Everything the demo makes is in (\S+) ")
NODE_LINE = re.compile(r"embedded SSH login node \((\S+)@127\.0\.0\.1 port (\d+)\)")
#: The demo home's two kernelspecs, as the server names them (site cori, target login).
PLAIN_KERNEL = "cori-login-python"
MYENV_KERNEL = "cori-login-myenv"


# -- the venv the demo user runs ------------------------------------------------------------

def login_of(lines: list[str]) -> tuple[str, str] | None:
    """(user name, password) as the banner prints them: the password alone on its line, so
    that a double-click copies exactly it."""
    for index, line in enumerate(lines):
        match = LOGIN_LINE.match(line.rstrip("\n"))
        if match:
            rest = [each for each in lines[index + 1:] if each.strip()]
            if rest and re.fullmatch(r"    \S+\n?", rest[0]):
                return match.group(1), rest[0].strip()
    return None


def _source_digest() -> str:
    digest = hashlib.sha256()
    files = [REPO / "pyproject.toml", *sorted((REPO / "jupyter_hpc").rglob("*")),
             *sorted((REPO / "jupyter-config").rglob("*"))]
    for path in files:
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def ensure_demo_venv() -> Path:
    """The venv's bin directory, with this checkout installed (built or refreshed as needed)."""
    python = DEMO_VENV / "bin" / "python"
    stamp = DEMO_VENV / "jupyter-hpc-source.sha256"
    DEMO_VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(DEMO_VENV.parent / ".demo-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        digest = _source_digest()
        probe = [str(python), "-c", "import jupyterlab, ipykernel, asyncssh, jupyterhub, pyotp"]
        fresh = not (python.exists() and subprocess.run(probe, capture_output=True).returncode == 0)
        if fresh:
            shutil.rmtree(DEMO_VENV, ignore_errors=True)
            subprocess.run(["/usr/bin/python3", "-m", "venv", str(DEMO_VENV)], check=True)
        if fresh or not stamp.exists() or stamp.read_text() != digest:
            with tempfile.TemporaryDirectory(prefix="jupyter-hpc-src-") as copy:
                # A copy, so that the build's egg-info and build/ never land in the checkout.
                shutil.copytree(REPO / "jupyter_hpc", Path(copy) / "jupyter_hpc",
                                ignore=shutil.ignore_patterns("__pycache__"))
                for name in ("pyproject.toml", "README.md"):
                    shutil.copy(REPO / name, Path(copy) / name)
                shutil.copytree(REPO / "jupyter-config", Path(copy) / "jupyter-config")  # data files
                target = f"{copy}[lab]" if fresh else copy
                extra = [] if fresh else ["--no-deps", "--force-reinstall"]
                subprocess.run([str(python), "-m", "pip", "install", "-qq", *extra, target], check=True)
            stamp.write_text(digest)
            subprocess.run(["chmod", "-R", "a+rX", str(DEMO_VENV)], check=True)
    return DEMO_VENV / "bin"


# -- the demo user's processes --------------------------------------------------------------

def user_processes(user: str = DEMO_USER) -> dict[int, str]:
    """pid -> command line of every process of ``user`` (``ps -u``), zombies included."""
    out = subprocess.run(["ps", "-ww", "-u", user, "-o", "pid=,args="], capture_output=True, text=True).stdout
    procs = {}
    for line in out.splitlines():
        pid, _, args = line.strip().partition(" ")
        procs[int(pid)] = args
    return procs


def processes_marked(marks: list[str], user: str = DEMO_USER) -> dict[int, str]:
    """The user's processes whose environment holds one of ``marks``.

    Everything a demo starts inherits either the test's mark (the demo, JupyterLab and what
    it starts) or the demo's state directory (``XDG_RUNTIME_DIR`` of the login node's
    sessions: launchers and kernels). Other tests' processes of the same user carry neither.
    """
    found = {}
    for pid, args in user_processes(user).items():
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if any(mark.encode() in environ for mark in marks if mark):
            found[pid] = args
    return found


def home_files(user: str = DEMO_USER) -> set[str]:
    """Files in the user's home, except ~/.jupyter-hpc: other tests' remote launchers (run
    through OpenSSH as the same user) write there, and the demo's never do (the demo's login
    node points them into its state directory, which must vanish)."""
    home = Path(pwd.getpwnam(user).pw_dir)
    return {str(path) for path in home.rglob("*") if ".jupyter-hpc" not in path.relative_to(home).parts}


def tmp_entries(user: str = DEMO_USER) -> set[str]:
    """What the user owns at the top of /tmp, /var/tmp and /dev/shm (whatever a demo made
    there would show up here, its state directory included)."""
    uid = pwd.getpwnam(user).pw_uid
    found = set()
    for root in ("/tmp", "/var/tmp", "/dev/shm"):
        for path in Path(root).iterdir():
            with contextlib.suppress(OSError):
                if path.lstat().st_uid == uid:
                    found.add(str(path))
    return found


def demo_state_dirs(user: str = DEMO_USER) -> set[str]:
    uid = pwd.getpwnam(user).pw_uid
    return {str(p) for p in Path(tempfile.gettempdir()).glob("jupyter-hpc-demo-*") if p.stat().st_uid == uid}


# -- one running demo -----------------------------------------------------------------------

class Demo:
    """``jupyter hpc demo --no-browser`` started as the demo user, exactly as the README says."""

    def __init__(self, bin_dir: Path, *args: str, user: str = DEMO_USER, path: str = "/usr/local/bin:/usr/bin:/bin") -> None:
        entry = ensure_user(user)
        self.user = user
        env = {
            "HOME": entry.pw_dir,
            "PATH": f"{bin_dir}:{path}",
            "LANG": "C.UTF-8",
            "SHELL": entry.pw_shell,
            "JUPYTER_HPC_TEST_MARK": uuid.uuid4().hex,
        }
        self.marks = [env["JUPYTER_HPC_TEST_MARK"]]
        self.argv = ["jupyter", "hpc", "demo", "--no-browser", *args]
        self.runuser = subprocess.Popen(
            [shutil.which("runuser") or "/usr/sbin/runuser", "-u", user, "--", *self.argv],
            env=env, cwd=entry.pw_dir, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
        )
        self.lines: list[str] = []
        self.url: str | None = None
        self.port = 0
        self.token = ""
        self._ready = threading.Event()
        self._pid: int | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.runuser.stdout is not None
        for line in self.runuser.stdout:
            self.lines.append(line)
            match = URL_LINE.match(line)
            if match and self.url is None:
                self.url, self.port, self.token = match.group(1), int(match.group(2)), match.group(3) or ""
            if STATE_LINE.match(line):  # the banner's last line but one
                self._ready.set()
        self._ready.set()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_ready(self, timeout: float = 180) -> "Demo":
        if not self._ready.wait(timeout) or self.url is None:
            raise AssertionError(f"the demo printed no URL within {timeout} s:\n{self.output}")
        self.marks.append(str(self.state_dir()))
        return self

    def processes(self) -> dict[int, str]:
        """Live processes this demo started (itself included)."""
        return processes_marked(self.marks, self.user)

    def processes_named(self, text: str) -> dict[int, str]:
        return {pid: args for pid, args in self.processes().items() if text in args}

    @property
    def pid(self) -> int:
        """The demo's own pid (runuser's child): signals go there, as a terminal's would."""
        if self._pid is not None:
            return self._pid
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            path = Path(f"/proc/{self.runuser.pid}/task/{self.runuser.pid}/children")
            children = path.read_text().split() if path.exists() else []
            if children:
                self._pid = int(children[0])
                return self._pid
            time.sleep(0.05)
        raise AssertionError("runuser started no demo process")

    def interrupt(self) -> None:
        """Ctrl-C."""
        os.kill(self.pid, signal.SIGINT)

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.runuser.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the demo did not stop within {timeout} s:\n{self.output}") from None

    def kill(self) -> None:
        """Last resort for a failed test: SIGKILL every process this demo started, and remove
        its state directory (a killed demo cannot)."""
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.runuser.wait(10)
        for state_dir in self.marks[1:]:
            shutil.rmtree(state_dir, ignore_errors=True)

    # -- jupyter_server's REST API ----------------------------------------------------------

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        return rest(self.port, self.token, method, path, timeout=60, **kwargs)

    def _banner(self, pattern: re.Pattern) -> re.Match:
        match = next(filter(None, map(pattern.search, self.lines)), None)
        assert match, f"no {pattern.pattern!r} in the demo's output:\n{self.output}"
        return match

    def state_dir(self) -> Path:
        """Where the demo says everything it makes lives."""
        return Path(self._banner(STATE_LINE).group(1))

    def login_port(self) -> int:
        return int(self._banner(NODE_LINE).group(2))

    @property
    def hub(self) -> bool:
        return self.url is not None and self.url.endswith("/hub/login")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def users(self) -> dict[str, tuple[str, str]]:
        """The hub's one user: name -> (password, TOTP secret), as the banner prints them."""
        self._banner(LOGIN_LINE)
        found = login_of(self.lines)
        assert found, f"no password alone on a line after the login line:\n{self.output}"
        name, password = found
        return {name: (password, self._banner(SECRET).group(1))}

    def code(self, name: str) -> str:
        return pyotp.TOTP(self.users[name][1]).now()

    def start_kernel(self, name: str = PLAIN_KERNEL) -> "KernelSocket":
        kernel = self.api("POST", "kernels", json={"name": name}).json()
        return KernelSocket(self, kernel["id"])


class KernelSocket:
    """A kernel reached through the server's websocket, as JupyterLab reaches it."""

    def __init__(self, demo: Demo, kernel_id: str) -> None:
        self.demo = demo
        self.id = kernel_id
        self.session = uuid.uuid4().hex
        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{demo.port}/api/kernels/{kernel_id}/channels?session_id={self.session}",
            header=[f"Authorization: token {demo.token}"], timeout=60,
        )
        self.wait_idle_after(self.send("kernel_info_request", {}, channel="shell"), timeout=60)

    def send(self, msg_type: str, content: dict, channel: str = "shell") -> str:
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": msg_type, "session": self.session,
                       "username": "test", "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "content": content,
            "channel": channel, "buffers": [],
        }))
        return msg_id

    def messages_for(self, msg_id: str, timeout: float = 30):
        """Yield the messages answering ``msg_id`` until the kernel goes idle after it."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"kernel {self.id}: no idle status after {msg_id} in {timeout} s")
            self.ws.settimeout(left)
            msg = json.loads(self.ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            yield msg
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return

    def wait_ready(self, timeout: float = 60) -> None:
        """After a restart, as JupyterLab does: ask for kernel_info until its answer arrives on
        iopub too, so that no later output is lost to an iopub socket still rejoining."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.wait_idle_after(self.send("kernel_info_request", {}, channel="shell"), timeout=2)
                return
            except (AssertionError, websocket.WebSocketTimeoutException):
                if time.monotonic() > deadline:
                    raise

    def wait_idle_after(self, msg_id: str, timeout: float = 30) -> list[dict]:
        return list(self.messages_for(msg_id, timeout))

    def execute(self, code: str, timeout: float = 30) -> dict:
        """Run code; {'stdout': text, 'error': ename or None}."""
        return self.collect(self.send("execute_request", {"code": code, "silent": False}), timeout)

    def collect(self, msg_id: str, timeout: float = 30) -> dict:
        stdout, error = [], None
        for msg in self.messages_for(msg_id, timeout):
            if msg["msg_type"] == "stream":
                stdout.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                error = msg["content"]["ename"]
        return {"stdout": "".join(stdout), "error": error}

    def wait_busy(self, msg_id: str, timeout: float = 30) -> None:
        for msg in self.messages_for(msg_id, timeout):
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "busy":
                return

    def close(self) -> None:
        self.ws.close()


def path_without(command: str, root: Path) -> str:
    """A PATH like the usual one on a machine where ``command`` is not installed: links to
    everything else in /usr/local/bin, /usr/bin and /bin, made under ``root``."""
    directory = root / f"path-without-{command}"
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    for source in ("/usr/local/bin", "/usr/bin", "/bin"):
        for entry in Path(source).iterdir():
            link = directory / entry.name
            if entry.name != command and not link.exists() and not link.is_symlink():
                link.symlink_to(entry)
    return str(directory)


# -- the hub flavour, as a browser drives it --------------------------------------------------

class HubLogin:
    """A browser's session at a demo's hub, with requests: the login form (password + the
    current one-time code), the OAuth redirects to the user's JupyterLab, its API."""

    def __init__(self, demo: Demo) -> None:
        self.bed = demo  # what hub_helpers.Kernel reads: .port
        self.user, (self.password, self.secret) = next(iter(demo.users.items()))
        self.session = requests.Session()
        self.hub = f"{demo.base_url}/hub"

    def submit(self, user: str | None = None, password: str | None = None, code: str | None = None) -> requests.Response:
        page = self.session.get(f"{self.hub}/login", timeout=30)
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
        form = {"_xsrf": xsrf, "username": user or self.user, "password": password or self.password,
                "otp": code or pyotp.TOTP(self.secret).now()}
        return self.session.post(f"{self.hub}/login", data=form, timeout=180)

    def log_in(self, timeout: float = 180) -> "HubLogin":
        """Log in and wait until the user's JupyterLab answers (past the spawn-pending page)."""
        reply = self.submit()
        lab = f"{self.bed.base_url}/user/{self.user}/lab"
        deadline = time.monotonic() + timeout
        while not (reply.status_code == 200 and reply.url == lab):
            assert time.monotonic() < deadline, (reply.status_code, reply.url, reply.text[-2000:])
            time.sleep(1)
            reply = self.session.get(lab, timeout=60)
        return self

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        xsrf = self.session.cookies.get("_xsrf", path=f"/user/{self.user}/") or ""
        return self.session.request(method, f"{self.bed.base_url}/user/{self.user}/api/{path}",
                                    headers={"X-XSRFToken": xsrf}, timeout=90, allow_redirects=False, **kwargs)

    def kernelspec_names(self, expect: set[str], timeout: float = 60) -> set[str]:
        """The display names the launcher would show, once ``expect`` is among them (the
        first discovery waits for the credential the server fetches after login)."""
        deadline = time.monotonic() + timeout
        while True:
            specs = self.api("GET", "kernelspecs").json()["kernelspecs"]
            names = {spec["spec"]["display_name"] for spec in specs.values()}
            if expect <= names or time.monotonic() > deadline:
                return names
            time.sleep(0.5)

    def start_kernel(self, name: str = PLAIN_KERNEL):
        from hub_helpers import Kernel

        reply = self.api("POST", "kernels", json={"name": name})
        assert reply.status_code == 201, (reply.status_code, reply.text)
        return Kernel(self, reply.json()["id"])
