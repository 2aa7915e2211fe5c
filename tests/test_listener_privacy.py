"""No other user on the login node reaches a kernel through anything it listens on, debugger included.

A kernel's owner (its own unix user and sshd here, so that no other test's kernels are in the
way) starts a kernel through hpc-ssh and switches the debugger on as JupyterLab does (DAP
``initialize`` then ``attach``, as debug_request on the control channel). The neighbour
(``hpcspy``) then goes for every TCP port the owner's processes listen on. The control test
shows the same neighbour does get debugpy's answers and its access token from a kernel run
with ``debugger = 'open'``, so the attempt is a real one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from pathlib import Path

import jupyter_client
import pytest

from jupyter_hpc.launcher import kernel_shim_source
from kernel_helpers import execute, provisioner_info, running_kernel
from remote_inspect import all_cmdlines
from testbed import intruder
from testbed.sshd import running_sshd
from test_private_transport import spy_script  # noqa: F401 (a fixture)
from testbed.users import NEIGHBOUR_USER, ensure_user, run_as

OWNER = "hpcpriv"
JUPYTERLAB_INITIALIZE = {
    "clientID": "jupyterlab", "clientName": "JupyterLab", "adapterID": "python", "pathFormat": "path",
    "linesStartAt1": True, "columnsStartAt1": True, "supportsVariableType": True,
    "supportsVariablePaging": True, "supportsRunInTerminalRequest": True, "locale": "en",
}
CELL = "def add(a, b):\n    total = a + b\n    return total\n\nadd(2, 3)\n"


@pytest.fixture(scope="module")
def owner(neighbour_user):
    return ensure_user(OWNER)


@pytest.fixture(scope="module")
def owner_sshd(owner):
    with running_sshd([owner.pw_name], "priv") as daemon:
        yield daemon


@pytest.fixture(scope="module")
def jupyter_dir():
    root = Path(tempfile.mkdtemp(prefix="jupyter-hpc-priv-"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_PATH", str(root))
        patch.setenv("JUPYTER_RUNTIME_DIR", str(root / "runtime"))
        yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def spec(jupyter_dir, owner_sshd, owner, remote_python):
    """Write an hpc-ssh kernelspec for the owner; returns its name."""

    def make(name: str, **config) -> str:
        config.setdefault("remote_python", remote_python)
        config.setdefault("launcher_standby", 0)
        directory = jupyter_dir / "kernels" / name
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "kernel.json").write_text(json.dumps({
            "argv": [remote_python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": name, "language": "python",
            "metadata": {"kernel_provisioner": {
                "provisioner_name": "hpc-ssh", "config": owner_sshd.provisioner_config(owner.pw_name, **config),
            }},
        }))
        return name

    return make


@pytest.fixture(scope="module")
def intruder_script():
    directory = Path(tempfile.mkdtemp(prefix="jupyter-hpc-intruder-"))
    os.chmod(directory, 0o755)
    script = directory / "intruder.py"
    shutil.copy(intruder.__file__, script)
    os.chmod(script, 0o644)
    yield script
    shutil.rmtree(directory, ignore_errors=True)


class Debugger:
    """The front end's half of a debug session: debug_request on control, debug_event on iopub."""

    def __init__(self, client):
        self.client, self.seq = client, 0

    def request(self, command: str, arguments: dict | None = None, timeout: float = 30) -> dict:
        self.seq += 1
        msg = self.client.session.msg("debug_request", {
            "type": "request", "seq": self.seq, "command": command, "arguments": arguments or {},
        })
        self.client.control_channel.send(msg)
        deadline = time.monotonic() + timeout
        while True:
            reply = self.client.get_control_msg(timeout=max(0.1, deadline - time.monotonic()))
            if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
                return reply["content"]

    def start(self) -> None:
        assert self.request("initialize", JUPYTERLAB_INITIALIZE)["success"]
        assert self.request("attach")["success"]

    def event(self, name: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            msg = self.client.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            if msg["msg_type"] == "debug_event" and msg["content"].get("event") == name:
                return msg["content"]


def tcp_listeners_of(uid: int) -> dict[str, int]:
    """Every TCP address a process of ``uid`` listens on, with that process's pid."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        for pid in map(int, re.findall(r"pid=(\d+)", line)):
            try:
                owner = os.stat(f"/proc/{pid}").st_uid
            except FileNotFoundError:
                continue
            if owner == uid:
                found[line.split()[3]] = pid
    return found


def wait_for_no_listeners(uid: int, timeout: float = 15) -> dict[str, int]:
    """debugpy's adapter is its own session (it daemonizes); it ends once its kernel has gone."""
    deadline = time.monotonic() + timeout
    while (left := tcp_listeners_of(uid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def adapter_token(client) -> str:
    """The access token the kernel's pydevd expects from debugpy's adapter (which the adapter
    sends to whoever connects to its server port), read in the kernel by its owner."""
    code = "import pydevd; print(pydevd.get_global_debugger().authentication.access_token)"
    token = execute(client, code)["stdout"].strip()
    assert re.fullmatch(r"[0-9a-f]{64}", token), token
    return token


def uid_of(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def environ_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def intrude(script, remote_python, addresses, paths, canary, token="") -> dict:
    result = run_as(
        NEIGHBOUR_USER, [remote_python, str(script), json.dumps(addresses), json.dumps(paths), canary, token],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def debugged(spec, owner, neighbour_user):
    """The owner's kernel with the debugger initialised and attached, as JupyterLab leaves it.

    Before the debugger starts, the neighbour creates the directory ipykernel would dump cells
    in (/tmp/ipykernel_<pid>), world-writable, hoping the kernel writes there.
    """
    km = jupyter_client.KernelManager(kernel_name=spec("hpc-private"))
    km.start_kernel()
    client = km.client()
    client.start_channels()
    trap = None
    try:
        client.wait_for_ready(timeout=60)
        info = provisioner_info(km)
        trap = Path(f"/tmp/ipykernel_{info['pid']}")
        run_as(NEIGHBOUR_USER, ["mkdir", "-m", "777", str(trap)], check=True)
        debugger = Debugger(client)
        debugger.start()
        yield km, client, debugger, info, trap
    finally:
        client.stop_channels()
        km.shutdown_kernel(now=False)
        if trap is not None:
            shutil.rmtree(trap, ignore_errors=True)
        assert wait_for_no_listeners(owner.pw_uid) == {}  # the adapter ended with its kernel


def test_neighbour_reaches_nothing_while_the_debugger_is_attached(debugged, owner, intruder_script, remote_python, canary):
    km, client, debugger, info, trap = debugged
    listeners = tcp_listeners_of(owner.pw_uid)
    # The kernel itself listens on no TCP port (its channels and its IOPub fork pipe are Unix
    # sockets); debugpy's adapter has its two, which are the ones to attack.
    assert info["pid"] not in listeners.values()
    assert len(listeners) == 2, listeners
    token = adapter_token(client)  # the neighbour is handed it, to try its luck with it
    report = intrude(intruder_script, remote_python, list(listeners), [], canary, token)
    assert sorted(report["connected"]) == sorted(listeners)  # the ports are there...
    assert report["received"] == ""  # ...and say nothing: closed before a byte
    assert "debugServerAccessToken" not in report["received"]
    # canary (the fixture) asserts at teardown that the evaluate never ran
    assert execute(client, "print('still mine')")["stdout"].strip() == "still mine"


def test_the_adapter_token_is_on_no_command_line(debugged, owner):
    """debugpy passes its adapter the token as ``--server-access-token`` and pydevd writes it into
    the command line of every Python the debugged kernel starts; ``/proc/<pid>/cmdline`` is every
    user's. Here it reaches the adapter through a pipe, and children are not debugged."""
    km, client, debugger, info, trap = debugged
    token = adapter_token(client)
    [adapter] = set(tcp_listeners_of(owner.pw_uid).values())  # alive, with its two ports
    child = execute(client, "import subprocess, sys\nchild = subprocess.Popen([sys.executable, '-c', "
                            "'import time; time.sleep(60)'])\nprint(child.pid)")["stdout"].strip()
    try:
        cmdlines = all_cmdlines()
        assert "debugpy/adapter --for-server" in cmdlines[adapter]
        assert cmdlines[int(child)].split(" ", 1)[1] == "-c import time; time.sleep(60) "  # not rewritten by pydevd
        assert not [cmd for cmd in cmdlines.values() if token in cmd]
        owners = [cmd for pid, cmd in cmdlines.items() if uid_of(pid) == owner.pw_uid]
        assert any("ipykernel_launcher" in cmd for cmd in owners)
        assert not [cmd for cmd in owners if "--server-access-token" in cmd or "access_token=" in cmd]
        assert not [pid for pid in cmdlines if token in environ_of(pid)]  # nor in an environment
    finally:
        execute(client, "child.kill(); child.wait()")


def test_the_debugger_still_stops_at_a_breakpoint_and_shows_a_variable(debugged):
    km, client, debugger, info, trap = debugged
    source = debugger.request("dumpCell", {"code": CELL})["body"]["sourcePath"]
    assert source.startswith(info["kernel_dir"] + "/cells/")  # not /tmp/ipykernel_<pid>
    reply = debugger.request("setBreakpoints", {
        "breakpoints": [{"line": 2}], "source": {"path": source}, "sourceModified": False,
    })
    assert reply["body"]["breakpoints"][0]["verified"]
    assert debugger.request("debugInfo")["body"]["isStarted"]
    assert debugger.request("configurationDone")["success"]
    msg_id = client.execute(CELL)
    stopped = debugger.event("stopped")
    assert stopped["body"]["reason"] == "breakpoint"
    frames = debugger.request("stackTrace", {"threadId": stopped["body"]["threadId"]})["body"]["stackFrames"]
    assert frames[0]["name"] == "add" and frames[0]["line"] == 2
    scopes = debugger.request("scopes", {"frameId": frames[0]["id"]})["body"]["scopes"]
    local_scope = next(scope for scope in scopes if scope["name"] == "Locals")
    variables = debugger.request("variables", {"variablesReference": local_scope["variablesReference"]})
    values = {var["name"]: var["value"] for var in variables["body"]["variables"]}
    assert values["a"] == "2" and values["b"] == "3"
    assert debugger.request("continue", {"threadId": stopped["body"]["threadId"]})["success"]
    while True:
        msg = client.get_shell_msg(timeout=30)
        if msg["parent_header"].get("msg_id") == msg_id:
            break
    assert msg["content"]["status"] == "ok"
    # The world-writable directory the neighbour laid out got nothing.
    assert list(trap.iterdir()) == []


def test_neighbour_reads_no_file_the_kernel_leaves(debugged, owner, intruder_script, remote_python, canary):
    """The audit of what a kernel leaves on the node: ~/.jupyter-hpc, the runtime directory,
    the kernel's directory and the shim; the kernel's environment; secrets on command lines."""
    km, client, debugger, info, trap = debugged
    kernel_dir = Path(info["kernel_dir"])
    base = Path(owner.pw_dir) / ".jupyter-hpc"
    run_dir = kernel_dir.parent
    digest = "%08x" % (zlib.crc32(kernel_shim_source().encode()) & 0xFFFFFFFF)
    shim_dirs = [run_dir / f"shim-{digest}"]  # one per shim version, written once
    assert (shim_dirs[0] / "sitecustomize.py").read_text() == kernel_shim_source()
    for directory in (base, run_dir, kernel_dir, shim_dirs[0], kernel_dir / "cells"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
        assert directory.stat().st_uid == owner.pw_uid
    files = [entry for entry in [*kernel_dir.iterdir(), *shim_dirs[0].iterdir()] if entry.is_file()]
    assert {"kernel.json", "kernel.log", "monitor.pid", "listeners.json", "sitecustomize.py"} <= {f.name for f in files}
    for entry in files:
        assert stat.S_IMODE(entry.stat().st_mode) == 0o600, entry
    paths = [str(base), str(run_dir), str(kernel_dir / "kernel.json"), str(shim_dirs[0] / "sitecustomize.py"),
             f"/proc/{info['pid']}/environ"]
    report = intrude(intruder_script, remote_python, [], paths, canary)
    assert report["read"] == []
    assert len(report["errors"]) == len(paths)
    assert all("Permission denied" in error for error in report["errors"]), report["errors"]
    # The signing key is in the 0600 connection file only: no command line carries it.
    key = km.session.key.decode()
    assert not [cmd for cmd in all_cmdlines().values() if key in cmd]
    assert json.loads((kernel_dir / "listeners.json").read_text()) == {"iopub_pipe": "ipc", "debugger": "private"}


def test_the_attack_is_real_when_the_debugger_is_open(spec, owner, intruder_script, remote_python):
    """The control: debugger = 'open' is ipykernel as it comes; the neighbour gets answers and the
    adapter's access token, and the IOPub pipe is on TCP."""
    km = jupyter_client.KernelManager(kernel_name=spec("hpc-open", debugger="open"))
    km.start_kernel()
    client = km.client()
    client.start_channels()
    harmless = f"/tmp/jupyter-hpc-open-{uuid.uuid4().hex}"
    try:
        client.wait_for_ready(timeout=60)
        pid = provisioner_info(km)["pid"]
        assert pid in tcp_listeners_of(owner.pw_uid).values()  # the IOPub fork pipe
        Debugger(client).start()
        listeners = [address for address, owner_pid in tcp_listeners_of(owner.pw_uid).items() if owner_pid != pid]
        # As debugpy comes, its token is on the adapter's command line, for every user to read.
        token = adapter_token(client)
        assert [cmd for cmd in all_cmdlines().values() if f"--server-access-token {token}" in cmd]
        report = intrude(intruder_script, remote_python, listeners, [], harmless)
    finally:
        client.stop_channels()
        km.shutdown_kernel(now=False)
        if os.path.exists(harmless):
            os.unlink(harmless)
        # ipykernel as it comes leaves debugpy's adapter running (in a session of its own) while
        # the intruder's sessions keep it busy: end it here, by pid.
        for adapter in set(tcp_listeners_of(owner.pw_uid).values()):
            os.kill(adapter, 9)
    assert "debugServerAccessToken" in report["received"]
    assert '"command": "initialize"' in report["received"]


def test_debugger_off_is_not_offered_and_forks_still_print(spec, owner):
    km = jupyter_client.KernelManager(kernel_name=spec("hpc-nodebug", debugger="off"))
    km.start_kernel()
    client = km.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        features = client.kernel_info(reply=True, timeout=30)["content"].get("supported_features", [])
        assert "debugger" not in features  # JupyterLab greys its debugger switch
        Debugger(client).request("initialize", JUPYTERLAB_INITIALIZE)
        assert tcp_listeners_of(owner.pw_uid) == {}
        # The IOPub pipe moved to a Unix socket, and still carries a forked process's output.
        fork = ("import os, time\npid = os.fork()\nif pid == 0:\n    print('from the child', flush=True)\n"
                "    os._exit(0)\nos.waitpid(pid, 0)\ntime.sleep(0.5)\n")
        assert "from the child" in execute(client, fork)["stdout"]
    finally:
        client.stop_channels()
        km.shutdown_kernel(now=False)


def test_slurm_request_is_staged_where_only_its_owner_reads(owner_sshd, owner, intruder_script, remote_python, canary):
    """The batch job's request carries the signing key: 0600 in ~/.jupyter-hpc/jobs (0700)."""
    from jupyter_hpc.provisioners.slurm_provisioner import SlurmProvisioner
    from jupyter_hpc.ssh import SSHTarget, get_pool, run_in_ssh_loop_sync

    config = owner_sshd.provisioner_config(owner.pw_name)
    target = SSHTarget(host=config["host"], port=config["port"], username=owner.pw_name,
                       client_keys=tuple(config["client_keys"]), known_hosts=config["known_hosts"])
    provisioner = SlurmProvisioner(kernel_id="audit", **config)

    async def stage():
        login = await get_pool().connect(target)
        return await provisioner._stage(login, {"op": "launch", "key": "SIGNING-KEY-audit"}, uuid.uuid4().hex)

    launcher, request_file, _answer, _output = run_in_ssh_loop_sync(stage())
    try:
        jobs = Path(request_file).parent
        assert stat.S_IMODE(jobs.stat().st_mode) == 0o700
        assert stat.S_IMODE(Path(request_file).stat().st_mode) == 0o600
        assert stat.S_IMODE(Path(launcher).stat().st_mode) & 0o077 == 0
        report = intrude(intruder_script, remote_python, [], [str(jobs), request_file], canary)
        assert report["read"] == [] and all("Permission denied" in e for e in report["errors"])
    finally:
        os.unlink(request_file)


def test_owner_only_socket_refuses_another_user(neighbour_user, remote_python):
    """The check the debugger's listeners make: the peer's uid, from /proc/net/tcp."""
    from jupyter_hpc.launcher import kernel_shim

    assert kernel_shim.peer_check_works()
    server = kernel_shim.owner_only(lambda: __import__("socket").create_server(("127.0.0.1", 0)))()
    server.settimeout(10)
    port = server.getsockname()[1]
    try:
        probe = ("import socket,sys; s=socket.create_connection(('127.0.0.1',%d)); s.settimeout(5); "
                 "print('connected', flush=True); sys.stdout.write(repr(s.recv(10)))" % port)
        neighbour = subprocess.Popen(["runuser", "-u", NEIGHBOUR_USER, "--", remote_python, "-c", probe],
                                     stdout=subprocess.PIPE, text=True)
        assert neighbour.stdout.readline() == "connected\n"  # first in the queue, before ours
        mine = __import__("socket").create_connection(("127.0.0.1", port))
        conn, _ = server.accept()  # the neighbour's connection is closed inside; ours comes out
        assert conn.getpeername() == mine.getsockname()
        assert neighbour.communicate(timeout=20)[0] == "b''"  # closed, nothing said
        conn.close()
        mine.close()
    finally:
        server.close()


def test_runtime_directory_is_never_another_users(tmp_path, monkeypatch, neighbour_user):
    """$XDG_RUNTIME_DIR is used only when it is ours; else ~/.jupyter-hpc/run, tightened to 0700."""
    from jupyter_hpc.launcher.remote_launcher import LaunchFailure, private_runtime_dir

    monkeypatch.setenv("HOME", str(tmp_path))
    theirs = tmp_path / "their-runtime"
    theirs.mkdir()
    os.chown(theirs, neighbour_user.pw_uid, neighbour_user.pw_gid)
    chosen = private_runtime_dir({"XDG_RUNTIME_DIR": str(theirs)})
    assert chosen == str(tmp_path / ".jupyter-hpc" / "run")
    os.chmod(tmp_path / ".jupyter-hpc", 0o755)  # loosened by hand, or by a careless copy
    private_runtime_dir({})
    assert stat.S_IMODE((tmp_path / ".jupyter-hpc").stat().st_mode) == 0o700
    shutil.rmtree(tmp_path / ".jupyter-hpc")
    (tmp_path / ".jupyter-hpc").symlink_to(theirs)
    with pytest.raises(LaunchFailure, match="not a directory owned by this user"):
        private_runtime_dir({})
    ours = tmp_path / "xdg"
    ours.mkdir()
    assert private_runtime_dir({"XDG_RUNTIME_DIR": str(ours)}) == str(ours / "jupyter-hpc")


def test_doctor_says_who_can_reach_the_listeners(spec):
    def doctor(kernel):
        return subprocess.run([sys.executable, "-m", "jupyter_hpc.cli.main", "doctor", kernel],
                              capture_output=True, text=True, timeout=60, env=dict(os.environ))

    private = doctor(spec("hpc-private"))
    assert private.returncode == 0, private.stdout + private.stderr
    assert "[ok  ] listeners" in private.stdout and f"accept only {OWNER}'s own processes" in private.stdout
    opened = doctor(spec("hpc-open", debugger="open"))
    assert "OPEN (debugger = 'open')" in opened.stdout and "for every user there" in opened.stdout


def test_a_killed_kernel_leaves_no_debug_adapter_behind(spec, owner):
    """debugpy's adapter daemonizes out of the kernel's process group; the launcher's cleanup
    still ends it (the shim records its pid in the kernel's directory)."""
    km = jupyter_client.KernelManager(kernel_name=spec("hpc-private"))
    km.start_kernel()
    client = km.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        Debugger(client).start()
        adapters = set(tcp_listeners_of(owner.pw_uid).values())
        assert len(adapters) == 1
    finally:
        client.stop_channels()
        km.shutdown_kernel(now=True)
    assert wait_for_no_listeners(owner.pw_uid, timeout=5) == {}


def assert_attached_kernel_is_private(client, km, owner, intruder_script, remote_python, canary) -> None:
    """The debugger on as JupyterLab leaves it; the neighbour connects to its ports and gets nothing.

    Other kernels of the owner may run meanwhile (without a debugger): they listen on no TCP port.
    """
    info = provisioner_info(km)
    assert json.loads((Path(info["kernel_dir"]) / "listeners.json").read_text()) == {
        "iopub_pipe": "ipc", "debugger": "private"}
    Debugger(client).start()
    listeners = tcp_listeners_of(owner.pw_uid)
    assert info["pid"] not in listeners.values()
    assert len(listeners) == 2 and len(set(listeners.values())) == 1, listeners  # one adapter, its two ports
    report = intrude(intruder_script, remote_python, list(listeners), [], canary, adapter_token(client))
    assert sorted(report["connected"]) == sorted(listeners)
    assert report["received"] == ""


def test_a_kernel_from_the_pool_is_as_private(spec, owner, intruder_script, remote_python, canary):
    """A pre-started kernel (pool_size) was launched from the same request, shim included."""
    from jupyter_hpc.provisioners.kernel_pool import KernelPool
    from jupyter_hpc.ssh import run_in_ssh_loop_sync

    run_in_ssh_loop_sync(KernelPool.drain_all())
    name = spec("hpc-private-pool", pool_size=1, pool_idle_lifetime=60)
    try:
        with running_kernel(name):  # a cold start; the pool fills after it
            deadline = time.monotonic() + 30
            while not (pooled := {r.pid for p in KernelPool._pools.values() for r, _, _ in p.ready}):
                assert time.monotonic() < deadline, "the pool did not fill"
                time.sleep(0.1)
            assert tcp_listeners_of(owner.pw_uid) == {}  # two idle kernels: no TCP port at all
            with running_kernel(name) as (km, client):
                assert provisioner_info(km)["pid"] in pooled  # taken from the pool
                assert_attached_kernel_is_private(client, km, owner, intruder_script, remote_python, canary)
    finally:
        run_in_ssh_loop_sync(KernelPool.drain_all())
    assert wait_for_no_listeners(owner.pw_uid) == {}


def test_a_kernel_started_by_a_standby_launcher_is_as_private(spec, owner, intruder_script, remote_python, canary):
    """The launcher waiting on the connection (launcher_standby) gets the request, shim included, later."""
    from jupyter_hpc.launcher import standby
    from jupyter_hpc.ssh import run_in_ssh_loop_sync

    name = spec("hpc-private-standby", launcher_standby=30)
    with running_kernel(name):  # a cold start; a launcher is then started to wait for the next
        deadline = time.monotonic() + 30
        while not (waiting := [w for slots in list(standby._waiting.values()) for w in slots.values() if w]):
            assert time.monotonic() < deadline, "no launcher came on standby"
            time.sleep(0.1)
        with running_kernel(name) as (km, client):
            assert km.provisioner._remote.process is waiting[0].process  # the standby one
            assert_attached_kernel_is_private(client, km, owner, intruder_script, remote_python, canary)
    # The next standby launcher (started after this take) is dismissed with the test's connection.
    for slots in list(standby._waiting.values()):
        for key in list(slots):
            entry = slots.pop(key)
            if entry is not None:
                entry.expiry.cancel()
                run_in_ssh_loop_sync(_dismiss(standby, entry.process))
    assert wait_for_no_listeners(owner.pw_uid) == {}


async def _dismiss(standby, process) -> None:
    standby.dismiss(process)


def test_a_compute_node_kernel_reached_directly_gives_the_neighbour_nothing(slurm_spec, spy_script, remote_python):
    """node_access = 'direct': the channels listen on the node's address, for the whole cluster
    network to reach, with CurveZMQ. A client needs the kernel's server key for the handshake;
    it is in the 0600 connection file only (no command line), so the neighbour reads nothing.
    The IOPub pipe is a Unix socket there too, and the debugger private."""
    from remote_inspect import tcp_listeners, unix_listeners
    from test_private_transport import SECRET, neighbour_reads

    with running_kernel(slurm_spec("hpc-direct-audit", node_access="direct")) as (km, client):
        info = provisioner_info(km)
        assert info["remote_transport"] == "tcp" and km.curve_secretkey is not None
        kernel_dir = Path(info["kernel_dir"])
        assert json.loads((kernel_dir / "listeners.json").read_text()) == {"iopub_pipe": "ipc", "debugger": "private"}
        assert len(tcp_listeners(info["pid"])) == 5 and unix_listeners(info["pid"]) == [str(kernel_dir / "pipe-1")]
        connection = json.loads((kernel_dir / "kernel.json").read_text())
        secrets = [connection["key"], *(v for k, v in connection.items() if k.startswith("curve_"))]
        assert len(secrets) >= 2, sorted(connection)  # the signing key and the Curve keys
        assert stat.S_IMODE((kernel_dir / "kernel.json").stat().st_mode) == 0o600
        assert not [cmd for cmd in all_cmdlines().values() for secret in secrets if secret in cmd]
        report = neighbour_reads(spy_script, remote_python, info["pid"], client)
    assert SECRET not in report["received"]
