"""Pre-started kernels: a start takes one and costs only the attach; idle ones are stopped."""

from __future__ import annotations

import time

import jupyter_client
import pytest

from jupyter_hpc.provisioners.kernel_pool import KernelPool
from jupyter_hpc.ssh import run_in_ssh_loop_sync
from kernel_helpers import execute, provisioner_info, running_kernel
from remote_inspect import process_alive, under_sshd


def ready_pids(timeout: float = 30, count: int = 2) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = {remote.pid for pool in KernelPool._pools.values() for remote, _, _ in pool.ready}
        if len(pids) >= count:
            return pids
        time.sleep(0.1)
    raise AssertionError("the pool did not fill")


def test_a_start_takes_a_pre_started_kernel(ssh_spec, served_proxy_route):
    """Taken from the pool: started before it was asked for, with every cluster kernel's
    environment (the proxy's links: issue 28), its first cell still In [1] after the pool's
    warm-up; the manager adopts its key, and a restart is a fresh kernel."""
    run_in_ssh_loop_sync(KernelPool.drain_all())
    name = ssh_spec(pool_size=2, pool_idle_lifetime=60)
    with running_kernel(name) as (first, _):
        pooled = ready_pids()
        with running_kernel(name) as (km, client):
            pid = provisioner_info(km)["pid"]
            assert pid in pooled  # started before it was asked for
            out = execute(client, "import os; x = 7; print(os.getpid()); "
                                  "print(os.environ.get('JUPYTER_HPC_PROXY')); "
                                  "print(os.environ.get('DASK_DISTRIBUTED__DASHBOARD__LINK'))")
            got_pid, proxy, dask_link = out["stdout"].split()
            assert int(got_pid) == pid
            assert out["reply"]["execution_count"] == 1  # the pool's warm-up requests left no trace
            assert proxy.startswith("/user/alice/jupyter-hpc/proxy/"), proxy
            assert dask_link == "{JUPYTER_HPC_PROXY}/{host}:{port}/status"
            key = km.session.key
            km.restart_kernel()  # a restart keeps the manager's key: a fresh kernel, not the pool's
            client.wait_for_ready(timeout=60)
            assert execute(client, "print('x' in dir())")["stdout"].strip() == "False"
            assert km.session.key == key and provisioner_info(km)["pid"] not in pooled
        refill = ready_pids()  # topped up again after the take
    run_in_ssh_loop_sync(KernelPool.drain_all())
    time.sleep(0.5)
    assert not any(process_alive(p) for p in pooled | refill)


def test_a_pre_started_kernel_moves_to_the_notebooks_folder(ssh_spec, kernel_user):
    """One pool serves notebooks in every folder: the taken kernel is moved to the notebook's
    (remote_cwd, as the contents manager passes it) and gets its session name; a folder that
    does not exist fails the start as without a pool, and the kernel taken is not left running."""
    run_in_ssh_loop_sync(KernelPool.drain_all())
    name = ssh_spec(pool_size=2, pool_idle_lifetime=60)
    with running_kernel(name):  # started in the home; fills the pool
        pooled = ready_pids()
        km = jupyter_client.KernelManager(kernel_name=name)
        km.start_kernel(remote_cwd="/tmp", env={"JPY_SESSION_NAME": "/tmp/analysis.ipynb"})
        client = km.client()
        try:
            client.start_channels()
            client.wait_for_ready(timeout=60)
            assert provisioner_info(km)["pid"] in pooled
            out = execute(client, "import os; print(os.getcwd(), os.environ['JPY_SESSION_NAME'], __session__)")
            assert out["stdout"].split() == ["/tmp", "/tmp/analysis.ipynb", "/tmp/analysis.ipynb"], out
            assert out["reply"]["execution_count"] == 1
            assert "__hpc_os" not in execute(client, "print(dir())")["stdout"]
        finally:
            client.stop_channels()
            km.shutdown_kernel(now=False)
        waiting = ready_pids(count=1) & pooled
        assert waiting
        bad = jupyter_client.KernelManager(kernel_name=name)
        with pytest.raises(Exception, match="does not exist"):
            bad.start_kernel(remote_cwd="/nonexistent-hpc-folder")
        time.sleep(0.5)
        assert not any(process_alive(p) for p in waiting)  # taken, not adopted, stopped
    run_in_ssh_loop_sync(KernelPool.drain_all())


def test_in_a_server_a_notebooks_kernel_comes_from_the_pool_with_its_session_name(ssh_spec, kernel_user, tmp_path):
    """The same through jupyter_server, with the extension loaded: the SSH layer runs in the
    server's loop (the warm-up and the adoption speak ZMQ there) and the kernel's channels are
    Unix sockets on the server's side."""
    import json

    from demo_helpers import KernelSocket
    from server_helpers import Server

    name = ssh_spec(pool_size=1, pool_idle_lifetime=60)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {"jupyter_hpc": True}}}))
    server = Server(tmp_path)
    sockets = []
    try:
        def notebook(path: str) -> KernelSocket:
            reply = server.api("POST", "sessions", json={"path": path, "type": "notebook", "kernel": {"name": name}})
            assert reply.status_code == 201, reply.text + server.log[-3000:]
            sockets.append(KernelSocket(server, reply.json()["kernel"]["id"]))
            return sockets[-1]

        first = notebook("a.ipynb")
        deadline = time.monotonic() + 30
        while len(kernels_under_sshd(kernel_user.pw_uid)) < 2:  # the pool has filled
            assert time.monotonic() < deadline, server.log[-3000:]
            time.sleep(0.1)
        time.sleep(0.5)  # and warmed up
        pooled = kernels_under_sshd(kernel_user.pw_uid) - {int(first.execute("import os; print(os.getpid())")["stdout"])}
        second = notebook("b.ipynb")
        pid, session_name, session = second.execute(
            "import os; print(os.getpid(), os.environ['JPY_SESSION_NAME'], __session__)")["stdout"].split()
        assert int(pid) in pooled  # started before it was asked for (others' kernels may be in the set)
        assert session_name == session == "b.ipynb"
    finally:
        for socket in sockets:
            socket.close()
        server.stop()


@pytest.fixture
def served_proxy_route():
    """As in a hub's server whose extension serves the cluster proxy's route."""
    from jupyter_hpc import kernel_links

    before = kernel_links._base_url
    kernel_links.configure("/user/alice/")
    yield
    kernel_links._base_url = before


def test_a_drained_pool_starts_no_more_kernels(ssh_spec, kernel_user):
    """Draining (the server exits) right after a take must not let the pending refill start a
    kernel that no pool knows of, and that would then run on until its lease ends."""
    run_in_ssh_loop_sync(KernelPool.drain_all())
    name = ssh_spec(pool_size=1, pool_idle_lifetime=60)
    with running_kernel(name) as (first, _):  # fills the pool
        ready_pids(count=1)
        with running_kernel(name) as (second, _):  # takes the pooled kernel: a refill is due in 1 s
            run_in_ssh_loop_sync(KernelPool.drain_all())
            mine = {provisioner_info(first)["pid"], provisioner_info(second)["pid"]}
            time.sleep(1.0 + 1.5)  # past the refill's moment, and a kernel's start
            assert kernels_under_sshd(kernel_user.pw_uid) == mine
    time.sleep(0.5)
    assert not kernels_under_sshd(kernel_user.pw_uid)


def kernels_under_sshd(uid: int) -> set[int]:
    """The kernel user's kernels (other test sessions run kernels as other users meanwhile)."""
    import os

    def owned(pid: int) -> bool:
        try:
            return os.stat(f"/proc/{pid}").st_uid == uid
        except FileNotFoundError:
            return False

    return {pid for pid in under_sshd("ipykernel_launcher") if owned(pid)}


def test_unused_kernels_are_stopped_after_their_idle_lifetime(ssh_spec):
    run_in_ssh_loop_sync(KernelPool.drain_all())
    name = ssh_spec(pool_size=2, pool_idle_lifetime=1.5)
    with running_kernel(name):
        pooled = ready_pids()
        time.sleep(4)
        assert not any(process_alive(p) for p in pooled)
        assert all(not pool.ready for pool in KernelPool._pools.values())
    run_in_ssh_loop_sync(KernelPool.drain_all())


def test_a_pre_started_kernel_that_dies_is_replaced(ssh_spec):
    import os
    import signal

    run_in_ssh_loop_sync(KernelPool.drain_all())
    name = ssh_spec(pool_size=2, pool_idle_lifetime=60)
    with running_kernel(name):
        pooled = ready_pids()
        victim = sorted(pooled)[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = ready_pids()
            if victim not in now and len(now) == 2:
                break
            time.sleep(0.1)
        assert victim not in now and len(now) == 2
    run_in_ssh_loop_sync(KernelPool.drain_all())


def test_a_taken_kernel_gets_its_owners_lease_and_waiting_ones_none(ssh_spec, sshd):
    """After a drop the taken kernel is reconnected, state intact; the waiting ones just end."""
    import os
    import signal

    from test_reconnect import sshd_connection_processes

    run_in_ssh_loop_sync(KernelPool.drain_all())
    name = ssh_spec(pool_size=2, pool_idle_lifetime=60, lease=30)
    with running_kernel(name):
        pooled = ready_pids()
        with running_kernel(name) as (km, client):
            assert provisioner_info(km)["pid"] in pooled
            execute(client, "x = 'taken'")
            time.sleep(2)  # the pool's refill, after the take, has finished
            waiting = ready_pids()
            for pid in sshd_connection_processes(sshd.process.pid):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(process_alive(p) for p in waiting):
                time.sleep(0.1)
            assert not any(process_alive(p) for p in waiting)
            assert km.is_alive()
            client.get_iopub_msg(timeout=10)  # rejoined (iopub_welcome), see test_reconnect
            assert execute(client, "print(x)", timeout=20)["stdout"].strip() == "taken"
    run_in_ssh_loop_sync(KernelPool.drain_all())
