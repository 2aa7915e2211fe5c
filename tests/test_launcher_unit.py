"""The remote launcher's request/answer handling, run locally without SSH."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

import pytest

from jupyter_hpc.errors import KernelLaunchError
from jupyter_hpc.launcher import BOOTSTRAP, launcher_stdin, parse_answer
from jupyter_hpc.launcher import remote_launcher as rl
from remote_inspect import process_alive


# A stand-in kernel: listens on the five ports of its connection file, as a kernel would.
FAKE_KERNEL = """
import json, socket, sys, time
info = json.load(open(sys.argv[1]))
held = []
for name in ("shell", "iopub", "stdin", "control", "hb"):
    s = socket.socket(); s.bind((info["ip"], info[name + "_port"])); s.listen(5); held.append(s)
print(sys.argv[1], flush=True)
time.sleep(60)
"""


def request(tmp_path, **extra) -> dict:
    body = {
        "op": "launch",
        "argv": [sys.executable, "-c", FAKE_KERNEL, "{connection_file}"],
        "key": "s3cret-signing-key",
        "runtime_dir": str(tmp_path / "run"),
        "transport": "tcp",
        "kernel_id": "abc-123",
    }
    body.update(extra)
    return body


def start_launcher(req: dict) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", BOOTSTRAP], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdin.write(launcher_stdin(req))
    proc.stdin.flush()
    return proc


def test_launch_answer_and_cleanup_over_pipes(tmp_path):
    proc = start_launcher(request(tmp_path))
    answer = json.loads(proc.stdout.readline())
    assert answer["ok"] and answer["transport"] == "tcp" and answer["ip"] == "127.0.0.1"
    assert sorted(answer["ports"]) == sorted(rl.CHANNELS)
    connection_file = answer["connection_file"]
    assert stat.S_IMODE(os.stat(connection_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(answer["kernel_dir"]).st_mode) == 0o700
    assert json.load(open(connection_file))["key"] == "s3cret-signing-key"
    # the key is never on the kernel's (or the launcher's) command line
    for pid in (answer["pid"], proc.pid):
        assert b"s3cret" not in open(f"/proc/{pid}/cmdline", "rb").read()
    proc.stdin.write(b'{"op": "cleanup"}\n')
    proc.stdin.flush()
    events = [json.loads(line) for line in proc.stdout]
    assert {"event": "cleaned"} in events
    assert any(e.get("event") == "exited" for e in events)
    assert proc.wait(10) == 0
    assert not os.path.exists(answer["kernel_dir"])


def test_signal_is_relayed_and_exit_reported(tmp_path):
    proc = start_launcher(request(tmp_path))
    answer = json.loads(proc.stdout.readline())
    proc.stdin.write(json.dumps({"op": "signal", "signum": signal.SIGTERM}).encode() + b"\n")
    proc.stdin.flush()
    assert json.loads(proc.stdout.readline()) == {"event": "exited", "status": -signal.SIGTERM}
    proc.stdin.close()
    proc.wait(10)
    assert not os.path.exists(answer["kernel_dir"])


def test_closed_channel_kills_the_kernel_without_lease(tmp_path):
    proc = start_launcher(request(tmp_path))
    answer = json.loads(proc.stdout.readline())
    proc.stdin.close()  # what a dropped SSH connection looks like from the remote side
    proc.wait(10)
    assert not process_alive(answer["pid"])
    assert not os.path.exists(answer["kernel_dir"])


# The same on Unix sockets, at the paths the launcher's ipc connection file names.
FAKE_IPC_KERNEL = """
import json, socket, sys, time
info = json.load(open(sys.argv[1]))
held = []
for name in ("shell", "iopub", "stdin", "control", "hb"):
    s = socket.socket(socket.AF_UNIX); s.bind("%s-%d" % (info["ip"], info[name + "_port"])); s.listen(5); held.append(s)
time.sleep(60)
"""


def test_a_terminated_launcher_ends_its_kernel_and_leaves_no_directory(tmp_path):
    """SIGTERM to the launcher (a node's cleanup of a user's processes, a demo's stop) ends the
    kernel and removes its directory (the signing key) and its short socket directory in TMPDIR,
    as a cleanup request would."""
    proc = start_launcher(request(tmp_path, transport="ipc", argv=[sys.executable, "-c", FAKE_IPC_KERNEL, "{connection_file}"]))
    answer = json.loads(proc.stdout.readline())
    assert answer["ok"], answer
    socket_dir = os.path.dirname(answer["ip"])
    assert os.path.basename(socket_dir).startswith(rl.SHORT_DIR_PREFIX) and socket_dir != answer["kernel_dir"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 128 + signal.SIGTERM
    assert not process_alive(answer["pid"])
    assert not os.path.exists(answer["kernel_dir"]) and not os.path.exists(socket_dir)


def test_a_killed_launchers_short_directory_is_swept_by_the_next_launch(tmp_path):
    """SIGKILL runs no cleanup (a demo's second Ctrl-C, the OOM killer): the kernel's socket
    directory in TMPDIR stays. The user's next launch on the node removes it once its sockets
    all refuse, and leaves alone a live kernel's, a fresh one, and one made by another host."""
    ipc = dict(transport="ipc", argv=[sys.executable, "-c", FAKE_IPC_KERNEL, "{connection_file}"])
    for name in ("killed", "live", "fresh"):
        (tmp_path / name).mkdir()
    killed = start_launcher(request(tmp_path / "killed", **ipc))
    dead = json.loads(killed.stdout.readline())
    assert dead["ok"], dead
    live = start_launcher(request(tmp_path / "live", **ipc))
    alive = json.loads(live.stdout.readline())
    killed.kill()
    os.kill(dead["pid"], signal.SIGKILL)
    killed.wait(10)
    dead_dir, live_dir = os.path.dirname(dead["ip"]), os.path.dirname(alive["ip"])
    elsewhere = rl.mark_host(tempfile.mkdtemp(prefix=rl.SHORT_DIR_PREFIX))
    with open(os.path.join(elsewhere, rl.HOST_MARKER), "w") as handle:
        handle.write("another-node %d" % killed.pid)  # a launcher gone, but not from here
    for name in ("k-1", "k-2"):
        socket.socket(socket.AF_UNIX).bind(os.path.join(elsewhere, name))  # closed: refuses
    old = time.time() - 2 * rl.STALE_AFTER
    for path in (dead_dir, dead["kernel_dir"], live_dir, alive["kernel_dir"], elsewhere):
        os.utime(path, (old, old))
    fresh = start_launcher(request(tmp_path / "fresh", **ipc))  # the next launch sweeps
    try:
        assert json.loads(fresh.stdout.readline())["ok"]
        deadline = time.monotonic() + 10
        while os.path.exists(dead_dir) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not os.path.exists(dead_dir)
        # The killed kernel's directory went to TMPDIR too (its runtime directory is deep
        # here): it names the dead sockets, so it goes, and the signing key with it.
        assert dead["kernel_dir"].startswith(tempfile.gettempdir() + "/" + rl.SHORT_DIR_PREFIX)
        while os.path.exists(dead["kernel_dir"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not os.path.exists(dead["kernel_dir"])
        assert os.path.isdir(live_dir) and os.path.isdir(alive["kernel_dir"]) and os.path.isdir(elsewhere)
    finally:
        for proc in (live, fresh):
            proc.stdin.close()
            proc.wait(10)
        shutil.rmtree(elsewhere, ignore_errors=True)
    assert not os.path.exists(live_dir) and not os.path.exists(alive["kernel_dir"])


@pytest.mark.parametrize(
    "line, expected",
    [
        (b"not json\n", "not JSON"),
        (b"[1, 2]\n", "malformed"),
        (b'{"ok": true, "pid": 1}\n', "answered without"),
        (b'{"ok": false, "error": "no space left"}\n', "no space left"),
        (b'{"ok": tr', "not JSON"),
    ],
)
def test_bad_answers_become_clear_errors(line, expected):
    with pytest.raises(KernelLaunchError, match=expected):
        parse_answer(line, host="cori", remote_python="python3", exit_status=None, stderr="")


def test_no_answer_names_the_missing_python():
    with pytest.raises(KernelLaunchError, match="remote python '/x/python' was not found on cori"):
        parse_answer(b"", host="cori", remote_python="/x/python", exit_status=127, stderr="sh: /x/python: not found")


def test_malformed_requests_are_answered_not_crashed(tmp_path):
    for payload in (b"garbage\n", json.dumps({"op": "launch"}).encode() + b"\n",
                    json.dumps(request(tmp_path, transport="udp")).encode() + b"\n"):
        proc = subprocess.run([sys.executable, rl.__file__], input=payload, capture_output=True, timeout=20)
        answer = json.loads(proc.stdout.splitlines()[0])
        assert answer["ok"] is False and answer["error"]


def test_a_port_taken_before_the_kernel_binds_it_is_picked_again(tmp_path, monkeypatch):
    """Ports are chosen, released, then bound by the kernel: another process can win the race."""
    import socket as socketlib

    squatter = socketlib.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen(1)
    taken = squatter.getsockname()[1]
    picks = iter([[taken] * 5])
    real = rl.pick_tcp_ports
    monkeypatch.setattr(rl, "pick_tcp_ports", lambda ip: next(picks, None) or real(ip))
    monitor = rl.Monitor(request(tmp_path), None, None)
    try:
        answer = monitor.launch()
        assert answer["ok"] and taken not in answer["ports"].values()
    finally:
        monitor.cleanup()
        squatter.close()


def test_ipc_paths_and_setup_command(tmp_path):
    info = rl.connection_info({"transport": "ipc", "key": "k"}, str(tmp_path))
    assert rl.socket_paths(info) == [f"{tmp_path}/k-{n}" for n in range(1, 6)]
    argv = rl.kernel_command({"argv": ["python", "-f", "{connection_file}"], "setup": ["module load x"]}, "/c.json")
    assert argv[:3] == ["/bin/bash", "-l", "-c"] and argv[-3:] == ["python", "-f", "/c.json"]
    assert "module load x" in argv[3] and "{connection_file}" not in " ".join(argv)


def test_environment_expands_remotely():
    env = rl.kernel_environment({"env": {"P": "/opt/bin:${PATH}", "Q": "$NOPE"}}, {"PATH": "/usr/bin"})
    assert env["P"] == "/opt/bin:/usr/bin" and env["Q"] == "$NOPE"
