"""The README opens with two commands, and the first one works exactly as written: run by a
fresh non-root user whose system Python is externally managed (Debian's), in a copy of the
checkout, it makes its venv, installs, and starts the demo, whose output is exact."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pyotp
import pytest
import requests

from demo_helpers import login_of
from testbed.users import ensure_user

ROOT = Path(__file__).resolve().parent.parent
URL = re.compile(r"^\s+(http://127\.0\.0\.1:(\d+)/hub/login)\s*$")
SECRET = re.compile(r"otpauth://totp/\S*[?&]secret=([A-Z2-7]+)")
READY = "Ctrl-C stops the demo"
STOPPED = "The demo has stopped: no process, port or file of it is left."
#: A user of its own: its pip cache stays between runs, nothing else of it matters.
README_USER = "hpcreadme"
#: Debian's python3, as a fresh machine has it (not the test runner's own Python).
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block and text.index(block.group(0)) < text.index("\n", text.index("# jupyter-hpc")) + 3
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_gives_exactly_two_commands():
    commands = readme_commands()
    assert len(commands) == 2
    assert commands[0].endswith("jupyter hpc demo")
    assert commands[1] == "bash tests/run"


def log_in(url: str, name: str, password: str, secret: str) -> tuple[requests.Session, str]:
    """The hub's login form, then the OAuth redirects to the user's JupyterLab."""
    session = requests.Session()
    page = session.get(url, timeout=30)
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
    form = {"_xsrf": xsrf, "username": name, "password": password, "otp": pyotp.TOTP(secret).now()}
    reply = session.post(url, data=form, timeout=180)
    server = url.replace("/hub/login", f"/user/{name}")
    deadline = time.monotonic() + 120
    while not (reply.status_code == 200 and reply.url == f"{server}/lab") and time.monotonic() < deadline:
        time.sleep(1)  # the spawn-pending page, until the server answers
        reply = session.get(f"{server}/lab", timeout=60)
    assert reply.status_code == 200 and reply.url == f"{server}/lab", (reply.status_code, reply.url)
    return session, server


def checkout_copy(owner: pwd.struct_passwd) -> Path:
    """What a clone gives the user: the package's sources in a directory of theirs."""
    parent = Path(tempfile.mkdtemp(prefix="jupyter-hpc-readme-", dir="/var/tmp"))
    parent.chmod(0o755)
    copy = parent / "jupyter-hpc"
    copy.mkdir()
    shutil.copytree(ROOT / "jupyter_hpc", copy / "jupyter_hpc", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "jupyter-config", copy / "jupyter-config")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, copy / name)
    subprocess.run(["chown", "-R", f"{owner.pw_uid}:{owner.pw_gid}", str(copy)], check=True)
    return copy


@pytest.mark.timeout(900)
def test_first_command_runs_the_demo_as_written():
    """As a non-root user, on Debian's externally managed python3: run the README's first line
    in bash, log in at the URL it prints with the password (alone on its line) and code it
    prints, see Cori's kernels, then Ctrl-C it: it ends with a line saying it stopped, and
    printed no warning (a refused login included)."""
    system_python = subprocess.run(["/usr/bin/python3", "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
                                   capture_output=True, text=True, check=True).stdout.strip()
    assert Path(system_python, "EXTERNALLY-MANAGED").exists()  # a plain `pip install` stops there
    user = ensure_user(README_USER)
    copy = checkout_copy(user)
    env = {"HOME": user.pw_dir, "PATH": SYSTEM_PATH, "LANG": "C.UTF-8", "USER": README_USER,
           **{k: v for k, v in os.environ.items() if k.startswith("PIP_")}}  # this machine's index
    demo = subprocess.Popen(
        [shutil.which("runuser") or "/usr/sbin/runuser", "-u", README_USER, "--", "bash", "-c", readme_commands()[0]], cwd=copy,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env,
    )
    output: list[str] = []
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not (output and output[-1].startswith(READY)):
            line = demo.stdout.readline()
            if not line:
                break
            output.append(line)
        text = "".join(output)
        url = next(filter(None, map(URL.match, output)), None)
        login = login_of(output)
        secret = SECRET.search(text)
        assert url and login and secret, text
        banner = output[next(i for i, line in enumerate(output) if line.startswith("jupyter-hpc demo:")):]
        # A wrong password reaches the key service, which refuses it (401 to the hub): the login
        # form says so, the terminal stays quiet.
        stranger = requests.Session()
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', stranger.get(url.group(1), timeout=30).text).group(1)
        refused = stranger.post(url.group(1), timeout=60, data={
            "_xsrf": xsrf, "username": login[0], "password": "wrong-" + login[1], "otp": "000000"})
        assert refused.status_code == 403, refused.status_code
        session, server = log_in(url.group(1), *login, secret.group(1))
        deadline = time.monotonic() + 60
        names: set[str] = set()
        while not {"Cori: Python 3 (login)", "Cori: myenv (login)"} <= names and time.monotonic() < deadline:
            specs = session.get(f"{server}/api/kernelspecs", timeout=30).json()
            names = {spec["spec"]["display_name"] for spec in specs["kernelspecs"].values()}
            time.sleep(0.5)
        assert {"Cori: Python 3 (login)", "Cori: myenv (login)"} <= names, names
        # The default kernel is one the launcher shows.
        assert specs["default"] in specs["kernelspecs"], (specs["default"], list(specs["kernelspecs"]))
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        try:
            status = demo.wait(90)
        finally:
            rest = demo.stdout.read()
            shutil.rmtree(copy.parent, ignore_errors=True)
    after = rest.splitlines(keepends=True)
    assert status == 0, "".join(output) + rest
    assert after and after[-1].strip() == STOPPED, rest
    said = [line for line in banner + after if re.search(r"warn|error|traceback|\[W ", line, re.I)]
    assert said == [], "".join(output) + rest
