"""A real jupyter_server, SIGKILLed under a running remote kernel, and the server started after it.

The kernel outlives its server for its lease. With HPCMappingKernelManager the next server takes
it back (same kernel id, state intact, over the REST API and websockets) or reaps it, by
``reattach_policy``; a kernel that has ended meanwhile is dropped from the record, named in a
warning. Nothing is left running on the "cluster" afterwards.
"""

from __future__ import annotations

import os
import stat
import time

import pytest

from demo_helpers import KernelSocket
from remote_inspect import process_alive
from server_helpers import Server, record_path, recorded_kernels


def eventually(check, what: str, timeout: float = 30) -> None:
    """Reattaching runs in the background of a server that is already serving, and a shutdown
    (pending kernels) finishes after DELETE answered: wait for what follows."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.1)


def wait_gone(pid: int, timeout: float) -> float:
    started = time.monotonic()
    while process_alive(pid) and time.monotonic() - started < timeout:
        time.sleep(0.1)
    assert not process_alive(pid), f"kernel process {pid} still runs after {timeout} s"
    return time.monotonic() - started


@pytest.fixture
def servers(tmp_path):
    """Start servers in the test's directory; any still running at the end are stopped."""
    started: list[Server] = []

    def start(*args: str) -> Server:
        server = Server(tmp_path, *args, name=f"server{len(started) + 1}")
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def kernel_with_state(server: Server, name: str) -> tuple[str, dict]:
    """A kernel started over REST holding x = 'kept'; its record entry."""
    kernel_id = server.api("POST", "kernels", json={"name": name}).json()["id"]
    ws = KernelSocket(server, kernel_id)
    try:
        assert ws.execute("x = 'kept'")["error"] is None
    finally:
        ws.close()
    return kernel_id, recorded_kernels()[kernel_id]


def test_killed_server_kernel_is_reattached_with_state(ssh_spec, servers):
    name = ssh_spec(lease=30)
    first = servers()
    kernel_id, entry = kernel_with_state(first, name)
    assert entry["kernel_name"] == name
    assert stat.S_IMODE(os.stat(record_path()).st_mode) == 0o600  # it holds the signing key
    pid = entry["provisioner_info"]["pid"]
    first.kill()
    assert process_alive(pid)

    second = servers()
    print(f"restarted server answered after {second.ready_after:.1f} s")
    assert second.kernel_ids() == [kernel_id]  # listed at once ('starting'), reattached in the background
    eventually(lambda: "Reattached remote kernel " + kernel_id in second.log, "the reattach")
    ws = KernelSocket(second, kernel_id)
    try:
        started = time.monotonic()
        assert ws.execute("print(x)")["stdout"].strip() == "kept"
        print(f"first cell after reattach: {time.monotonic() - started:.2f} s")
    finally:
        ws.close()
    assert recorded_kernels()[kernel_id]["provisioner_info"]["pid"] == pid

    second.api("DELETE", f"kernels/{kernel_id}")
    wait_gone(pid, 10)
    eventually(lambda: not os.path.exists(entry["provisioner_info"]["kernel_dir"]), "the kernel's directory removed", 10)
    eventually(lambda: recorded_kernels() == {}, "the record emptied")



def test_record_follows_a_restart_and_a_shutdown(ssh_spec, servers):
    server = servers()
    kernel_id, entry = kernel_with_state(server, ssh_spec(lease=30))
    old_pid = entry["provisioner_info"]["pid"]
    server.api("POST", f"kernels/{kernel_id}/restart")
    new_pid = recorded_kernels()[kernel_id]["provisioner_info"]["pid"]
    assert new_pid != old_pid and process_alive(new_pid)
    wait_gone(old_pid, 10)
    server.api("DELETE", f"kernels/{kernel_id}")
    eventually(lambda: recorded_kernels() == {}, "the record emptied")
    wait_gone(new_pid, 10)

def test_reap_policy_ends_the_left_kernel(ssh_spec, servers):
    first = servers()
    kernel_id, entry = kernel_with_state(first, ssh_spec(lease=30))
    pid = entry["provisioner_info"]["pid"]
    first.kill()
    assert process_alive(pid)

    second = servers("--HPCMappingKernelManager.reattach_policy=reap")
    print(f"server with reap policy answered after {second.ready_after:.1f} s")
    assert second.kernel_ids() == []
    wait_gone(pid, 10)
    eventually(lambda: recorded_kernels() == {} and "Reaped remote kernel " + kernel_id in second.log, "the reap")


def test_ended_kernel_is_dropped_with_a_warning(ssh_spec, servers):
    first = servers()
    kernel_id, entry = kernel_with_state(first, ssh_spec(lease=1))
    first.kill()
    wait_gone(entry["provisioner_info"]["pid"], 10)  # the lease ran out with no server

    second = servers()
    eventually(lambda: f"Remote kernel {kernel_id}" in second.log and "dropped from the record" in second.log,
               "the ended kernel dropped")
    assert second.kernel_ids() == []
    assert recorded_kernels() == {}


def test_a_second_live_server_does_not_take_the_kernels(ssh_spec, servers):
    first = servers()
    kernel_id, entry = kernel_with_state(first, ssh_spec(lease=30))
    second = servers()
    assert second.kernel_ids() == []
    assert "Another running server holds the kernel record" in second.log
    assert first.kernel_ids() == [kernel_id]
    first.api("DELETE", f"kernels/{kernel_id}")
    wait_gone(entry["provisioner_info"]["pid"], 10)


# -- SLURM: the kernel runs in a job on a compute node --------------------------------------

def wait_no_jobs(slurm, user: str, timeout: float) -> float:
    started = time.monotonic()
    while slurm.jobs(user) and time.monotonic() - started < timeout:
        time.sleep(0.2)
    assert slurm.jobs(user) == [], f"jobs {slurm.jobs(user)} still queued after {timeout} s"
    return time.monotonic() - started


def test_killed_server_slurm_kernel_and_job_end_with_the_lease(slurm_spec, slurm, kernel_user, servers):
    lease, window = 3.0, 2.0
    first = servers()
    kernel_id, entry = kernel_with_state(first, slurm_spec(lease=lease, restart_window=window))
    info = entry["provisioner_info"]
    assert slurm.jobs(kernel_user.pw_name) == [info["job_id"]]
    first.kill()
    killed = time.monotonic()
    wait_gone(info["pid"], lease + 5)
    wait_no_jobs(slurm, kernel_user.pw_name, lease + window + 5)
    print(f"SLURM kernel gone and job {info['job_id']} out of squeue {time.monotonic() - killed:.1f} s "
          f"after SIGKILL (lease {lease:.0f} s + restart_window {window:.0f} s)")


@pytest.mark.parametrize("node_access", ["jump", "direct"])
def test_killed_server_slurm_kernel_is_reattached_on_its_node(slurm_spec, slurm, kernel_user, servers, node_access):
    first = servers()
    kernel_id, entry = kernel_with_state(first, slurm_spec(lease=30, node_access=node_access))
    info = entry["provisioner_info"]
    assert info["node"] and info["job_id"]
    first.kill()

    second = servers()
    print(f"restarted server answered after {second.ready_after:.1f} s (SLURM kernel)")
    assert second.kernel_ids() == [kernel_id]
    ws = KernelSocket(second, kernel_id)
    try:
        out = ws.execute("import os; print(x, os.environ['SLURM_JOB_ID'])")["stdout"].split()
    finally:
        ws.close()
    assert out == ["kept", info["job_id"]]
    assert slurm.jobs(kernel_user.pw_name) == [info["job_id"]]

    second.api("DELETE", f"kernels/{kernel_id}")
    wait_gone(info["pid"], 10)
    wait_no_jobs(slurm, kernel_user.pw_name, 10)
    eventually(lambda: recorded_kernels() == {}, "the record emptied")


def test_a_server_stopped_while_a_kernel_shuts_down_stops_at_once(ssh_spec, servers):
    """DELETE answers before the kernel's shutdown ends (pending kernels); a stop that follows
    waits for that shutdown instead of failing on it (InvalidStateError) and hanging."""
    server = servers()
    kernel_id, entry = kernel_with_state(server, ssh_spec(lease=30))
    server.api("DELETE", f"kernels/{kernel_id}")
    started = time.monotonic()
    server.stop(timeout=60)
    assert server.process.returncode is not None and "InvalidStateError" not in server.log, server.log[-3000:]
    assert server.process.returncode != -9, f"killed after {time.monotonic() - started:.1f} s: {server.log[-3000:]}"
    wait_gone(entry["provisioner_info"]["pid"], 10)
