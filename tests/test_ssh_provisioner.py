"""SSHProvisioner against a real OpenSSH sshd, through jupyter_client's own KernelManager."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

import jupyter_client

from jupyter_hpc.ssh import get_pool, run_in_ssh_loop, run_in_ssh_loop_sync
from kernel_helpers import execute, provisioner_info, running_kernel
from testbed.sshd import SSHDaemon
from remote_inspect import all_cmdlines, parent_chain, parent_pid, process_alive, tcp_listeners, under_sshd, unix_listeners


def test_kernel_runs_as_the_remote_user_under_sshd(ssh_spec, kernel_user, sshd):
    with running_kernel(ssh_spec()) as (km, client):
        out = execute(client, "import os; print(os.getuid(), os.getpid())")
        uid, pid = map(int, out["stdout"].split())
        assert uid == kernel_user.pw_uid
        assert "sshd" in parent_chain(pid), parent_chain(pid)
        # The test started sshd, so the test is an ancestor too, but only through sshd.
        ancestors = _ancestors(pid)
        assert sshd.process.pid in ancestors
        assert ancestors.index(sshd.process.pid) < ancestors.index(os.getpid())
        assert provisioner_info(km)["pid"] == pid


def _ancestors(pid: int) -> list[int]:
    chain = []
    while pid > 1:
        with open(f"/proc/{pid}/stat") as handle:
            pid = int(handle.read().rsplit(")", 1)[1].split()[1])
        chain.append(pid)
    return chain


def test_kernel_is_private_on_the_remote(ssh_spec):
    with running_kernel(ssh_spec()) as (km, client):
        info = provisioner_info(km)
        pid, kernel_dir = info["pid"], info["kernel_dir"]
        # The five channels and ipykernel's pipe for forked children's output (moved off
        # 127.0.0.1 by the launcher's kernel shim) are Unix sockets in the kernel's 0700
        # directory, the channels in a short 0700 one of their own where the kernel's is deep
        # (/tmp/jh-*: xeus kernels read endpoints back into 32 bytes); no TCP port at all.
        assert tcp_listeners(pid) == []
        connection_file = os.path.join(kernel_dir, "kernel.json")
        socket_dir = os.path.dirname(json.loads(Path(connection_file).read_text())["ip"])
        sockets = unix_listeners(pid)
        assert len(sockets) == 6 and all(path.startswith((kernel_dir + "/", socket_dir + "/")) for path in sockets)
        for directory in (kernel_dir, socket_dir):
            assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
            assert os.stat(directory).st_uid == os.stat(connection_file).st_uid
        assert stat.S_IMODE(os.stat(connection_file).st_mode) == 0o600
        key = km.session.key.decode()
        assert len(key) >= 32
        holders = [pid for pid, cmd in all_cmdlines().items() if key in cmd]
        assert holders == [], "the signing key is on some process's argv"


def test_interrupt_restart_and_shutdown(ssh_spec):
    with running_kernel(ssh_spec()) as (km, client):
        execute(client, "x = 42")
        first = provisioner_info(km)
        # stop_on_error=False: otherwise ipykernel aborts requests that arrive soon after the
        # KeyboardInterrupt, which is its policy, not the transport's
        msg_id = client.execute("while True: pass", stop_on_error=False)
        time.sleep(1.0)
        started = time.monotonic()
        km.interrupt_kernel()
        while True:
            msg = client.get_iopub_msg(timeout=5)
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "error":
                assert msg["content"]["ename"] == "KeyboardInterrupt"
                break
        assert time.monotonic() - started < 2.0
        reply = client.get_shell_msg(timeout=5)
        assert reply["parent_header"]["msg_id"] == msg_id and reply["content"]["status"] == "error"
        after = execute(client, "print(x)")
        assert after["stdout"].strip() == "42", after

        km.restart_kernel()
        client.wait_for_ready(timeout=60)
        out = execute(client, "print('x' in dir())")
        assert out["stdout"].strip() == "False"
        second = provisioner_info(km)
        assert second["pid"] != first["pid"]
        assert not process_alive(first["pid"]) and not os.path.exists(first["kernel_dir"])
    assert not process_alive(second["pid"])
    assert not os.path.exists(second["kernel_dir"])


def test_kernel_dead_when_remote_process_ends(ssh_spec):
    with running_kernel(ssh_spec()) as (km, client):
        pid = provisioner_info(km)["pid"]
        os.kill(pid, 9)
        deadline = time.monotonic() + 5
        while km.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not km.is_alive()


def test_ten_kernels_share_one_connection(ssh_spec, sshd):
    name = ssh_spec()
    run_in_ssh_loop_sync(get_pool().close())
    logins_before = sshd.accepted_logins()

    async def start_ten():
        managers = [jupyter_client.AsyncKernelManager(kernel_name=name) for _ in range(10)]
        await asyncio.gather(*(km.start_kernel() for km in managers))
        try:
            pids = []
            for km in managers:
                pids.append((await km.provisioner.get_provisioner_info())["pid"])
                assert await km.is_alive()
            return pids
        finally:
            await asyncio.gather(*(km.shutdown_kernel(now=True) for km in managers))

    pids = asyncio.run(start_ten())
    assert len(set(pids)) == 10
    time.sleep(0.2)
    assert sshd.accepted_logins() - logins_before == 1
    assert len(get_pool().connections()) == 1


def test_kernels_beyond_the_sites_session_limit_start_on_another_connection(kernelspecs, kernel_user, remote_python):
    """OpenSSH allows MaxSessions (10 unless the site changes it) session channels per
    connection, and each kernel's launcher holds one: here the limit is 3, and five kernels plus
    a command run beside them must all work."""
    root = Path(tempfile.mkdtemp(prefix="jupyter-hpc-sshd-max3-"))
    daemon = SSHDaemon(root, users=[kernel_user.pw_name], options={"MaxSessions": "3"}).start()
    try:
        name = kernelspecs("hpc-max3", daemon.provisioner_config(
            kernel_user.pw_name, remote_python=remote_python, launcher_standby=0))
        run_in_ssh_loop_sync(get_pool().close())

        async def five_kernels_and_a_command():
            managers = [jupyter_client.AsyncKernelManager(kernel_name=name) for _ in range(5)]
            await asyncio.gather(*(km.start_kernel() for km in managers))
            try:
                clients = [km.client() for km in managers]
                replies = []
                for client in clients:
                    client.start_channels()
                    reply = await client.execute_interactive("import os; print(os.getpid())", timeout=30, store_history=False)
                    replies.append(reply["content"]["status"])
                target = managers[0].provisioner.ssh_target()
                beside = await run_in_ssh_loop(_whoami(target))
                refusals = daemon.log.read_text().count("no more sessions")
                for _ in range(3):  # the full connection is not asked again and again
                    await run_in_ssh_loop(_whoami(target))
                assert daemon.log.read_text().count("no more sessions") == refusals
                for client in clients:
                    client.stop_channels()
                return replies, beside
            finally:
                await asyncio.gather(*(km.shutdown_kernel(now=True) for km in managers))

        replies, beside = asyncio.run(five_kernels_and_a_command())
        assert replies == ["ok"] * 5
        assert beside == kernel_user.pw_name
        assert "no more sessions" in daemon.log.read_text()  # the limit was reached, and worked around
        assert 2 <= daemon.accepted_logins() <= 3
        # Connections opened for the overflow close once their last session has ended.
        deadline = time.monotonic() + 10
        while len(get_pool().connections()) > 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(get_pool().connections()) == 1
    finally:
        run_in_ssh_loop_sync(get_pool().close())
        daemon.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_logins_a_busy_site_drops_are_tried_again(kernelspecs, kernel_user, remote_python):
    """sshd drops new connections beyond MaxStartups unauthenticated ones (10 by default), as
    when many servers reconnect at once: here the limit is 2, and three servers' connections
    (one kernelspec each, each with its own known_hosts, so each its own connection) all start."""
    root = Path(tempfile.mkdtemp(prefix="jupyter-hpc-sshd-startups2-"))
    daemon = SSHDaemon(root, users=[kernel_user.pw_name], options={"MaxStartups": "2:100:2"}).start()
    try:
        names = [
            kernelspecs(f"hpc-busy-{i}", daemon.provisioner_config(
                kernel_user.pw_name, remote_python=remote_python, launcher_standby=0,
                known_hosts=str(shutil.copy(daemon.known_hosts, root / f"known_hosts.{i}")),
            ))
            for i in range(3)
        ]
        run_in_ssh_loop_sync(get_pool().close())

        async def start_three():
            managers = [jupyter_client.AsyncKernelManager(kernel_name=name) for name in names]
            outcomes = await asyncio.gather(*(km.start_kernel() for km in managers), return_exceptions=True)
            try:
                return [repr(o) for o in outcomes if o is not None], [await km.is_alive() for km in managers]
            finally:
                await asyncio.gather(*(km.shutdown_kernel(now=True) for km in managers if km.has_kernel))

        failures, alive = asyncio.run(start_three())
        assert failures == [] and alive == [True, True, True]
        assert "past MaxStartups" in daemon.log.read_text()  # the site did drop one, and it was retried
        assert daemon.accepted_logins() == 3
    finally:
        run_in_ssh_loop_sync(get_pool().close())
        daemon.stop()
        shutil.rmtree(root, ignore_errors=True)


async def _whoami(target) -> str:
    connection = await get_pool().connect(target)
    return str((await connection.run(["whoami"])).stdout).strip()


def standby_launchers(sshd) -> set[int]:
    """Launchers under this sshd that have started no kernel: waiting for a request."""
    return under_sshd("jupyter-hpc-launcher") - {parent_pid(pid) for pid in under_sshd("ipykernel_launcher")}


def test_the_next_start_takes_the_launcher_waiting_on_standby_which_expires_unused(ssh_spec, sshd):
    name = ssh_spec(launcher_standby=2.0)
    run_in_ssh_loop_sync(get_pool().close())
    # Earlier tests' connections (closed just now) may have left launchers on standby under
    # the same sshd; they are not this test's.
    earlier = standby_launchers(sshd)
    with running_kernel(name) as (km, _):
        first = provisioner_info(km)["pid"]
        deadline = time.monotonic() + 10
        while not (waiting := standby_launchers(sshd) - earlier) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(waiting) == 1, "a launcher should wait on standby after a start"
        km.restart_kernel(now=True)  # a restart is a launch too: it takes the waiting launcher
        restarted = provisioner_info(km)["pid"]
        assert restarted != first and parent_pid(restarted) in waiting
    # Unused for launcher_standby seconds, the next one exits and leaves nothing running.
    deadline = time.monotonic() + 10
    while standby_launchers(sshd) - earlier and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not standby_launchers(sshd) - earlier


def test_setup_lines_shape_the_kernel_environment(ssh_spec, tmp_path, remote_python):
    venv = "/opt/jupyter-hpc-test/venv"
    name = ssh_spec(setup=["export HPC_GREETING='hello from setup'", f"source {venv}/bin/activate"])
    with running_kernel(name) as (km, client):
        out = execute(client, "import os; print(os.environ['HPC_GREETING']); print(os.environ['VIRTUAL_ENV'])")
        assert out["stdout"].split("\n")[:2] == ["hello from setup", venv]


def test_env_and_cwd_reach_the_kernel(ssh_spec, kernel_user):
    name = ssh_spec(env={"HPC_COLOUR": "blue", "HPC_HOME_SEEN": "${HOME}"}, cwd="/tmp")
    with running_kernel(name) as (km, client):
        out = execute(client, "import os; print(os.environ['HPC_COLOUR'], os.environ['HPC_HOME_SEEN'], os.getcwd())")
        assert out["stdout"].split() == ["blue", kernel_user.pw_dir, "/tmp"]


def test_every_provisioner_hook_in_order(ssh_spec):
    """Walk the provisioner contract as KernelManager does, hook by hook."""
    from jupyter_core.utils import run_sync

    km = jupyter_client.KernelManager(kernel_name=ssh_spec())
    km.start_kernel()  # pre_launch, launch_kernel, post_launch
    prov = km.provisioner
    client = km.client()
    client.start_channels()
    client.wait_for_ready(timeout=60)
    try:
        assert prov.has_process
        assert run_sync(prov.poll)() is None
        info = run_sync(prov.get_provisioner_info)()
        assert {"kernel_id", "connection_info", "pid", "kernel_dir", "host"} <= set(info)
        fresh = type(prov)(kernel_id=info["kernel_id"], kernel_spec=km.kernel_spec, parent=km)
        run_sync(fresh.load_provisioner_info)(info)
        assert fresh.connection_info == info["connection_info"] and fresh.host == info["host"]
        run_sync(prov.send_signal)(2)
        assert run_sync(prov.poll)() is None  # SIGINT interrupts, it does not kill
        run_sync(prov.terminate)()
        status = run_sync(prov.wait)()
        assert status is not None and run_sync(prov.poll)() is not None
        run_sync(prov.cleanup)(restart=False)
        assert not prov.has_process
        assert not os.path.exists(info["kernel_dir"])
    finally:
        client.stop_channels()
        km.cleanup_resources()


def test_jupyter_clients_transport_encryption_reaches_the_remote_kernel(kernelspecs, sshd, kernel_user, remote_python):
    """jupyter_client's own CurveZMQ option keeps working: its keys are in the remote file."""
    import json

    config = sshd.provisioner_config(kernel_user.pw_name, remote_python=remote_python)
    name = kernelspecs("curve", config, metadata={"supported_encryption": ["curve"]})
    with running_kernel(name, transport_encryption="required") as (km, client):
        assert km.curve_publickey is not None
        info = provisioner_info(km)
        remote = json.load(open(os.path.join(info["kernel_dir"], "kernel.json")))
        assert remote["curve_publickey"] == km.curve_publickey.decode()
        assert execute(client, "print('encrypted')")["stdout"].strip() == "encrypted"
