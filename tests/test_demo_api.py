"""`jupyter hpc demo --no-hub` (JupyterLab alone, a laptop's setup) as a non-root user,
driven through jupyter_server's REST and websocket API.

Each test starts the demo as the README does (``jupyter hpc demo``, here with ``--no-browser``
and ``--no-hub``), then checks what a user would: the kernel discovered in Cori's home runs
over SSH, interrupts, restarts and shuts down; and after Ctrl-C nothing the demo started is
left: no process of the demo user's, no state directory, no file in the user's home. The hub
flavour has tests/test_demo_hub.py.
"""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from demo_helpers import DEMO_USER, Demo, demo_state_dirs, ensure_demo_venv, home_files
from testbed.users import ensure_user, run_as


@pytest.fixture(scope="module")
def demo_bin():
    ensure_user(DEMO_USER)
    return ensure_demo_venv()


@pytest.fixture
def demos(demo_bin):
    """Start demos with ``demos()``; afterwards, kill whatever a failed test left running."""
    started: list[Demo] = []

    def start(*args: str) -> Demo:
        started.append(Demo(demo_bin, "--no-hub", *args))
        return started[-1]

    yield start
    for demo in started:
        demo.kill()


def snapshot() -> tuple[set[str], set[str]]:
    """The demo user's home files and demo state directories, before a test."""
    return home_files(), demo_state_dirs()


def assert_nothing_left(demos: list[Demo], before: tuple[set[str], set[str]], timeout: float = 5.0) -> None:
    """No process any of ``demos`` started, no new state directory, no new file in the home."""
    def found() -> dict:
        return {
            "processes": {pid: cmd for demo in demos for pid, cmd in demo.processes().items()},
            "state_dirs": demo_state_dirs() - before[1],
            "home_files": home_files() - before[0],
        }

    deadline = time.monotonic() + timeout
    left = found()
    while any(left.values()) and time.monotonic() < deadline:
        time.sleep(0.1)  # init may take a moment to reap what the demo orphaned on exit
        left = found()
    assert left == {"processes": {}, "state_dirs": set(), "home_files": set()}


def test_kernel_lifecycle_then_ctrl_c_leaves_nothing(demos):
    before = snapshot()
    demo = demos().wait_ready()
    state_dir = demo.state_dir()
    assert state_dir.is_dir() and oct(state_dir.stat().st_mode & 0o777) == "0o700"
    kernel = demo.start_kernel()

    out = kernel.execute("import os; print(os.environ['SSH_CONNECTION']); print(os.getuid())")
    ssh_connection, uid = out["stdout"].split("\n")[:2]
    assert ssh_connection.endswith(f"127.0.0.1 {demo.login_port()}"), out
    assert int(uid) == ensure_user(DEMO_USER).pw_uid
    # The kernel runs as the demo user, and it is one of the demo's processes.
    assert any("ipykernel_launcher" in cmd for cmd in demo.processes().values())

    kernel.execute("x = 41")
    spin = kernel.send("execute_request", {"code": "while True: pass", "silent": False})
    kernel.wait_busy(spin)
    time.sleep(0.5)
    demo.api("POST", f"kernels/{kernel.id}/interrupt")
    assert kernel.collect(spin, timeout=20)["error"] == "KeyboardInterrupt"
    assert kernel.execute("print(x + 1)")["stdout"] == "42\n"

    demo.api("POST", f"kernels/{kernel.id}/restart")
    kernel.wait_ready()
    assert kernel.execute("print('x' in dir())", timeout=60)["stdout"] == "False\n"

    kernel.close()
    demo.api("DELETE", f"kernels/{kernel.id}")
    deadline = time.monotonic() + 10  # with pending kernels, the shutdown finishes after the 204
    while demo.api("GET", "kernels").json() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert demo.api("GET", "kernels").json() == []

    # One more kernel left running: Ctrl-C must end it too, through the server.
    running = demo.start_kernel()
    assert running.execute("print('still here')")["stdout"] == "still here\n"
    running.close()

    demo.interrupt()
    assert demo.wait(60) == 0
    assert "Stopping the demo" in demo.output
    assert not state_dir.exists()
    assert_nothing_left([demo], before)


def test_two_demos_at_once_and_a_second_ctrl_c(demos):
    before = snapshot()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        chosen = probe.getsockname()[1]
    first, second = demos("--port", str(chosen)), demos()
    first.wait_ready()
    second.wait_ready()
    assert first.port == chosen != second.port
    assert first.login_port() != second.login_port()
    assert first.state_dir() != second.state_dir()
    kernels = []
    for demo in (first, second):
        kernel = demo.start_kernel()
        out = kernel.execute("import os; print(os.environ['SSH_CONNECTION'])")
        assert out["stdout"].strip().endswith(f" {demo.login_port()}"), out
        kernels.append(kernel)
    # The first demo's kernel leaves a process in a session of its own, which neither the
    # kernel's shutdown nor the launcher knows about: only the demo's sweep can end it.
    stray = kernels[0].execute(
        "import subprocess; print(subprocess.Popen(['sleep', '300'], start_new_session=True).pid)"
    )
    assert int(stray["stdout"]) in first.processes()
    for kernel in kernels:
        kernel.close()

    # The first gets a second Ctrl-C while it is shutting down; the second one gets SIGTERM
    # (as from a service manager) at the same time and stops politely.
    first.interrupt()
    os.kill(second.pid, signal.SIGTERM)
    time.sleep(0.1)
    first.interrupt()
    assert first.wait(30) == 0
    assert second.wait(60) == 0
    assert "Stopping at once" in first.output
    assert "Stopping at once" not in second.output
    assert "Stopping the demo (SIGTERM)" in second.output
    assert_nothing_left([first, second], before)


def test_a_taken_port_fails_clearly_and_leaves_nothing(demos):
    before = snapshot()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        demo = demos("--port", str(port))
        assert demo.wait(90) == 1
    assert f"The demo could not start: The port {port} is already in use on 127.0.0.1" in demo.output
    assert "choose another with --port" in demo.output
    assert_nothing_left([demo], before)


def test_ctrl_c_while_starting_leaves_nothing(demos):
    before = snapshot()
    demo = demos()
    deadline = time.monotonic() + 30
    while not demo.processes_named("jupyterlab") and time.monotonic() < deadline:
        time.sleep(0.05)  # JupyterLab is starting: the login node and state dir exist
    demo.interrupt()
    assert demo.wait(30) == 0
    assert demo.url is None
    assert_nothing_left([demo], before)


def test_help(demo_bin):
    result = run_as(DEMO_USER, [str(demo_bin / "jupyter"), "hpc", "demo", "--help"],
                    capture_output=True, text=True, cwd="/")
    assert result.returncode == 0, result.stderr
    for option in ("--port", "--no-browser", "--no-hub", "--otp", "Ctrl-C stops everything"):
        assert option in " ".join(result.stdout.split())
