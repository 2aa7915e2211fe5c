"""SlurmProvisioner against a real single-node SLURM, the node reached through the test sshd."""

from __future__ import annotations

import asyncio
import os
import time

import jupyter_client
import pytest

from jupyter_hpc.errors import SlurmError
from kernel_helpers import start_failure, execute, provisioner_info, running_kernel
from remote_inspect import process_alive


def job_nodes(km) -> list[tuple[str, str, str]]:
    """jupyter_hpc.slurm.site.running_job_nodes on the kernel's own login connection."""
    from jupyter_hpc.slurm.site import running_job_nodes
    from jupyter_hpc.ssh import get_pool, run_in_ssh_loop_sync

    async def ask():
        connection = await get_pool().connect(km.provisioner.ssh_target())
        return await running_job_nodes(connection)

    return [(n.job_id, n.name, n.address) for n in run_in_ssh_loop_sync(ask())]


def test_kernel_runs_in_the_job_squeue_shows(slurm_spec, slurm, kernel_user):
    with running_kernel(slurm_spec()) as (km, client):
        out = execute(client, "import os; print(os.environ['SLURM_JOB_ID'])")
        job_id = out["stdout"].strip()
        assert slurm.jobs(kernel_user.pw_name) == [job_id]
        info = provisioner_info(km)
        assert info["job_id"] == job_id
        assert job_nodes(km) == [(job_id, info["node"], "127.0.0.1")]  # the proxy's allow list: NodeAddr
        msg_id = client.execute("while True: pass", stop_on_error=False)
        time.sleep(0.5)
        km.interrupt_kernel()
        reply = client.get_shell_msg(timeout=5)
        assert reply["parent_header"]["msg_id"] == msg_id and reply["content"]["ename"] == "KeyboardInterrupt"
    deadline = time.monotonic() + 10
    while slurm.jobs(kernel_user.pw_name) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert slurm.jobs(kernel_user.pw_name) == []
    assert not process_alive(info["pid"])


def test_nonexistent_partition_fails_with_sbatchs_message(slurm_spec, slurm, kernel_user):
    error, _ = start_failure(slurm_spec(partition="nosuchpartition"))
    assert isinstance(error, SlurmError)
    assert "invalid partition" in str(error).lower() and "sbatch refused" in str(error)
    assert slurm.jobs(kernel_user.pw_name) == []


def test_hostile_partition_is_one_argument(slurm_spec, slurm, kernel_user):
    canary = f"/tmp/jupyter-hpc-slurm-canary-{os.getpid()}"
    error, _ = start_failure(slurm_spec(partition=f"debug; touch {canary}"))
    assert isinstance(error, SlurmError) and "invalid partition" in str(error).lower()
    assert not os.path.exists(canary)
    with pytest.raises(Exception, match="control characters"):
        jupyter_client.KernelManager(kernel_name=slurm_spec("nl", account="a\n#SBATCH --x")).start_kernel()
    assert not os.path.exists(canary)
    assert slurm.jobs(kernel_user.pw_name) == []


def test_job_that_cannot_start_fails_after_queue_timeout(slurm_spec, slurm, kernel_user):
    error, elapsed = start_failure(slurm_spec(extra_directives=["--hold"], queue_timeout=3))
    assert isinstance(error, SlurmError)
    message = str(error)
    assert "did not start within 3 s" in message and "PENDING" in message and "JobHeldUser" in message
    assert elapsed < 15
    deadline = time.monotonic() + 10
    while slurm.jobs(kernel_user.pw_name) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert slurm.jobs(kernel_user.pw_name) == []


def test_scancel_from_outside_is_seen_within_5s(slurm_spec, slurm, kernel_user):
    from testbed.users import run_as

    with running_kernel(slurm_spec()) as (km, client):
        job_id = provisioner_info(km)["job_id"]
        run_as(kernel_user.pw_name, ["scancel", job_id], check=True)
        started = time.monotonic()
        while km.is_alive() and time.monotonic() - started < 10:
            time.sleep(0.1)
        assert not km.is_alive()
        assert time.monotonic() - started < 5


def test_queue_wait_blocks_nothing_and_polls_once_per_interval(slurm_spec, ssh_spec, slurm, kernel_user):
    """Three kernels wait in the queue while another kernel on the same server runs cells."""
    from jupyter_hpc.slurm.site import SlurmQueue

    held = slurm_spec("held", extra_directives=["--hold"], queue_timeout=4, poll_interval=0.5)
    busy = ssh_spec("busy")

    async def scenario():
        waiting = [jupyter_client.AsyncKernelManager(kernel_name=held) for _ in range(3)]
        starts = [asyncio.ensure_future(km.start_kernel()) for km in waiting]
        worker = jupyter_client.AsyncKernelManager(kernel_name=busy)
        await worker.start_kernel()
        client = worker.client()
        client.start_channels()
        await client.wait_for_ready(timeout=60)
        ran = 0
        while not all(task.done() for task in starts):
            reply = await client.execute_interactive("1 + 1", timeout=10)
            assert reply["content"]["status"] == "ok"
            ran += 1
        client.stop_channels()
        await worker.shutdown_kernel(now=True)
        return ran, [task.exception() for task in starts]

    queries_before = sum(queue.queries for queue in SlurmQueue._instances.values())
    ran, errors = asyncio.run(scenario())
    queries = sum(queue.queries for queue in SlurmQueue._instances.values()) - queries_before
    assert ran >= 20, "the server's loop stalled while kernels waited in the queue"
    assert all(isinstance(error, SlurmError) for error in errors)
    # 3 kernels x 4 s at 0.5 s would be ~24 calls one per kernel; shared, ~8 (+ cancels' checks)
    assert queries <= 8 + 3 * 3, queries
    deadline = time.monotonic() + 10
    while slurm.jobs(kernel_user.pw_name) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert slurm.jobs(kernel_user.pw_name) == []


def test_direct_mode_without_ssh_to_the_node(slurm_spec, slurm, kernel_user, sshd):
    """Where nodes take no SSH: CurveZMQ on the node's address, forwarded from the login node."""
    from jupyter_hpc.ssh import get_pool, run_in_ssh_loop_sync
    from remote_inspect import tcp_listeners

    run_in_ssh_loop_sync(get_pool().close())
    logins = sshd.accepted_logins()
    with running_kernel(slurm_spec(node_access="direct")) as (km, client):
        info = provisioner_info(km)
        assert info["remote_transport"] == "tcp" and km.curve_secretkey is not None
        out = execute(client, "import os; print(os.environ['SLURM_JOB_ID'])")
        assert out["stdout"].strip() == info["job_id"]
        assert len(tcp_listeners(info["pid"])) >= 5
        msg_id = client.execute("while True: pass", stop_on_error=False)
        time.sleep(0.5)
        km.interrupt_kernel()
        reply = client.get_shell_msg(timeout=5)
        assert reply["parent_header"]["msg_id"] == msg_id and reply["content"]["ename"] == "KeyboardInterrupt"
    time.sleep(0.2)
    assert sshd.accepted_logins() - logins == 1  # the login node only: no SSH session to the node
    deadline = time.monotonic() + 10
    while slurm.jobs(kernel_user.pw_name) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert slurm.jobs(kernel_user.pw_name) == []
    assert not process_alive(info["pid"])


def test_restart_keeps_the_allocation(slurm_spec, slurm, kernel_user):
    with running_kernel(slurm_spec()) as (km, client):
        execute(client, "x = 1")
        first = provisioner_info(km)
        km.restart_kernel()
        client.wait_for_ready(timeout=60)
        out = execute(client, "import os; print('x' in dir(), os.environ['SLURM_JOB_ID'])")
        second = provisioner_info(km)
        assert out["stdout"].split() == ["False", first["job_id"]]
        assert second["job_id"] == first["job_id"] and second["pid"] != first["pid"]
        assert not process_alive(first["pid"])
        assert slurm.jobs(kernel_user.pw_name) == [first["job_id"]]
    deadline = time.monotonic() + 10
    while slurm.jobs(kernel_user.pw_name) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert slurm.jobs(kernel_user.pw_name) == []


@pytest.mark.parametrize("node_access", ["jump", "direct"])
def test_kernel_in_a_job_survives_a_dropped_connection(slurm_spec, sshd, node_access):
    import os
    import signal

    from test_reconnect import sshd_connection_processes

    with running_kernel(slurm_spec(node_access=node_access, lease=30)) as (km, client):
        execute(client, "x = 'in the job'")
        before = provisioner_info(km)
        for pid in sshd_connection_processes(sshd.process.pid):
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        assert km.is_alive()
        client.get_iopub_msg(timeout=15)  # the iopub socket has rejoined (see test_reconnect)
        assert execute(client, "print(x)", timeout=20)["stdout"].strip() == "in the job"
        after = provisioner_info(km)
        assert (after["pid"], after["job_id"]) == (before["pid"], before["job_id"])


def test_unreachable_compute_node_is_named_with_the_ways_out(slurm_spec, slurm, kernel_user):
    from testbed.sshd import free_port

    closed = free_port()  # nothing listens there: the nodes' "sshd" refuses every connection
    error, _ = start_failure(slurm_spec(node_port=closed, launch_timeout=10))
    message = str(error)
    assert "compute node" in message and "through the login node 127.0.0.1" in message
    assert f"port {closed}" in message and "of job " in message
    assert "node_port" in message and 'node_access = "direct"' in message
    deadline = time.monotonic() + 10
    while slurm.jobs(kernel_user.pw_name) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert slurm.jobs(kernel_user.pw_name) == []  # the job that ran for nothing is cancelled
