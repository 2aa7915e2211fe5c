"""The README opens with two commands, and the first one works exactly as written."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pyotp
import requests

ROOT = Path(__file__).resolve().parent.parent
URL = re.compile(r"^\s+(http://127\.0\.0\.1:(\d+)/hub/login)\s*$")
LOGIN = re.compile(r"^Log in with user name (\S+), password (\S+),$")
SECRET = re.compile(r"otpauth://totp/\S*[?&]secret=([A-Z2-7]+)")
READY = "Ctrl-C stops the demo"


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


def test_first_command_runs_the_demo_as_written():
    """Run the README's first line in a shell, log in at the URL it prints with the password
    and code it prints, see Cori's kernels, then Ctrl-C it."""
    demo = subprocess.Popen(
        ["bash", "-c", readme_commands()[0]], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True, env={k: v for k, v in os.environ.items() if k != "DISPLAY"},
    )
    output = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not (output and output[-1].startswith(READY)):
            line = demo.stdout.readline()
            if not line:
                break
            output.append(line)
        text = "".join(output)
        url = next(filter(None, map(URL.match, output)), None)
        login = next(filter(None, map(LOGIN.match, output)), None)
        secret = SECRET.search(text)
        assert url and login and secret, text
        session, server = log_in(url.group(1), *login.groups(), secret.group(1))
        deadline = time.monotonic() + 60
        names: set[str] = set()
        while not {"Cori: Python 3 (login)", "Cori: myenv (login)"} <= names and time.monotonic() < deadline:
            specs = session.get(f"{server}/api/kernelspecs", timeout=30).json()
            names = {spec["spec"]["display_name"] for spec in specs["kernelspecs"].values()}
            time.sleep(0.5)
        assert {"Cori: Python 3 (login)", "Cori: myenv (login)"} <= names, names
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        status = demo.wait(60)
    assert status == 0, "".join(output) + demo.stdout.read()
