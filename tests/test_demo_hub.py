"""`jupyter hpc demo` (the hub flavour) as non-root users, driven as a browser drives it.

Two users run it at once on one machine: each logs in to their own hub with the password and
code their demo printed, gets Cori's kernels as themselves and their own cluster home, and
can reach nothing of the other's (state directory, hub, login node). A refused login stays on
the login form. Ctrl-C, also while the hub is still starting, leaves nothing behind.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from pathlib import Path

import pyotp
import pytest

from demo_helpers import (DEMO_USER, MYENV_KERNEL, Demo, HubLogin, ensure_demo_venv, home_files,
                          path_without, tmp_entries)
from testbed.users import ensure_user, run_as

SECOND_USER = "hpcdemo2"


@pytest.fixture(scope="module")
def demo_bin():
    ensure_user(DEMO_USER)
    ensure_user(SECOND_USER)
    return ensure_demo_venv()


@pytest.fixture
def demos(demo_bin):
    started: list[Demo] = []

    def start(*args: str, **kwargs) -> Demo:
        started.append(Demo(demo_bin, *args, **kwargs))
        return started[-1]

    yield start
    for demo in started:
        demo.kill()


def login_error(page) -> str:
    match = re.search(r'<p class="login_error">(.*?)</p>', page.text, re.S)
    return match.group(1).strip() if match else ""


def proxy_of(demo: Demo) -> str:
    """The command line of the demo's configurable-http-proxy."""
    found = demo.processes_named("configurable-http-proxy")
    assert len(found) == 1, (found, demo.output, demo.processes())
    return next(iter(found.values()))


@pytest.fixture
def world_readable_dir():
    """A directory other users can read (pytest's are root's, 0700)."""
    path = Path(tempfile.mkdtemp(prefix="jupyter-hpc-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_two_users_at_once_each_see_only_their_own(demos, world_readable_dir):
    users = {name: ensure_user(name) for name in (DEMO_USER, SECOND_USER)}
    before = {name: (home_files(name), tmp_entries(name)) for name in users}
    # The second user's machine has no npm proxy: the demo uses PyPI's pure-Python one.
    no_npm = path_without("configurable-http-proxy", world_readable_dir)
    first, second = demos(user=DEMO_USER), demos(user=SECOND_USER, path=no_npm)
    runs = {DEMO_USER: first.wait_ready(), SECOND_USER: second.wait_ready()}
    assert first.port != second.port and first.login_port() != second.login_port()
    assert proxy_of(first).startswith("node ")  # npm's, installed by tests/run
    assert proxy_of(second).split()[0].endswith("/python"), proxy_of(second)

    sessions = {}
    for name, demo in runs.items():
        assert demo.hub and next(iter(demo.users)) == name
        session = sessions[name] = HubLogin(demo).log_in()
        names = session.kernelspec_names({"Cori: Python 3 (login)", "Cori: myenv (login)"})
        assert {"Cori: Python 3 (login)", "Cori: myenv (login)"} <= names, names
        kernel = session.start_kernel(MYENV_KERNEL)
        out = kernel.execute("import os; print(os.getuid(), os.environ['MYENV'], os.environ['SSH_CONNECTION'])")
        uid, myenv, *_, port = out["stdout"].split()
        assert (int(uid), myenv, int(port)) == (users[name].pw_uid, "1", demo.login_port()), out
        # A file of this user's in their cluster home, through their kernel.
        kernel.execute(f"open('mine.txt', 'w').write('{name}')")
        kernel.close()

    for name, demo in runs.items():
        other = SECOND_USER if name == DEMO_USER else DEMO_USER
        session = sessions[name]
        # Their file browser shows their cluster home, holding their file alone.
        listing = session.api("GET", "contents/home").json()
        assert "mine.txt" in {item["name"] for item in listing["content"]}
        assert session.api("GET", "contents/home/mine.txt").json()["content"] == name
        assert len(session.api("GET", "kernels").json()) == 1
        # The other user cannot enter this demo's state directory (keys, cluster, hub db).
        assert oct(demo.state_dir().stat().st_mode & 0o777) == "0o700"
        peek = run_as(other, ["ls", str(demo.state_dir())], capture_output=True, text=True)
        assert peek.returncode != 0 and "Permission denied" in peek.stderr
        # Nor log in to this hub with their own demo's password and code.
        intruder = HubLogin(runs[other])
        intruder.bed = demo
        intruder.hub = f"{demo.base_url}/hub"
        page = intruder.submit()
        assert page.status_code == 403 and "/hub/login" in page.url, (page.status_code, page.url)
        assert login_error(page), page.text[-2000:]

    for demo in runs.values():
        demo.interrupt()
    for demo in runs.values():
        assert demo.wait(90) == 0, demo.output
    for name, demo in runs.items():
        assert demo.processes() == {}
        assert tmp_entries(name) - before[name][1] == set()
        assert home_files(name) - before[name][0] == set()


def test_a_wrong_code_stays_on_the_login_form_and_otp_prints_each_new_code(demos):
    demo = demos("--otp").wait_ready()
    login = HubLogin(demo)
    current = int(pyotp.TOTP(login.secret).now())
    page = login.submit(code=f"{(current + 1) % 1_000_000:06d}")  # never the current code
    assert page.status_code == 403, page.status_code
    assert login_error(page).startswith("Wrong password or code"), login_error(page)
    assert 'id="otp_input"' in page.text
    # --otp: the next code appears on the terminal when it starts, and logs in.
    deadline = time.monotonic() + 40
    while not (printed := [line for line in demo.lines if line.startswith("one-time code: ")]):
        assert time.monotonic() < deadline, demo.output
        time.sleep(0.2)
    code = printed[0].split()[-1]
    page = login.submit(code=code)
    logged_in = re.search(rf"/hub/spawn-pending/{login.user}$|/user/{login.user}/lab$", page.url)
    assert page.status_code == 200 and logged_in, (page.status_code, page.url)
    demo.interrupt()
    assert demo.wait(90) == 0


def test_ctrl_c_while_the_hub_starts_leaves_nothing(demos):
    before = home_files(), tmp_entries()
    demo = demos()
    deadline = time.monotonic() + 60
    while not demo.processes_named("jupyterhub") and time.monotonic() < deadline:
        time.sleep(0.05)  # the key service and login node run, the hub is starting
    assert demo.processes_named("jupyterhub"), demo.output
    demo.interrupt()
    assert demo.wait(60) == 0, demo.output
    assert demo.url is None
    deadline = time.monotonic() + 5
    while demo.processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert demo.processes() == {}
    assert tmp_entries() - before[1] == set()
    assert home_files() - before[0] == set()
