"""A dropped SSH connection under a running kernel: reconnect, same endpoints, state intact."""

from __future__ import annotations

import os
import signal
import time

from kernel_helpers import execute, provisioner_info, running_kernel
from remote_inspect import process_alive


def sshd_connection_processes(daemon_pid: int) -> list[int]:
    """The per-connection sshd processes (privileged monitor and session) under the daemon:
    killing them is what a dropped network looks like to both ends. The kernel, also a
    descendant, is spared."""
    parents, names = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    stat = handle.read()
            except OSError:
                continue
            names[int(entry)] = stat[stat.index("(") + 1 : stat.rindex(")")]
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])

    def descends(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == daemon_pid:
                return True
        return False

    return [pid for pid, name in names.items() if name == "sshd" and pid != daemon_pid and descends(pid)]


def test_kernel_survives_a_dropped_connection(ssh_spec, sshd):
    with running_kernel(ssh_spec(lease=30)) as (km, client):
        execute(client, "x = 'before the drop'")
        before = provisioner_info(km)
        connections = sshd_connection_processes(sshd.process.pid)
        assert connections
        for pid in connections:
            os.kill(pid, signal.SIGKILL)  # the network goes away under the kernel
        dropped = time.monotonic()
        time.sleep(0.5)
        assert km.is_alive(), "a dropped connection must not look like a dead kernel"
        # The original client's sockets reconnect to the same endpoints by themselves. Its SUB
        # subscribes again only when the socket is next used (jupyter_server's streams poll all
        # the time; this blocking client does not), so wait for the kernel's welcome on it.
        # No second km.client() here: it would share this one's Session, hence its routing id,
        # and ipykernel's ROUTER_HANDOVER would hand it the shell route, leaving this client's
        # connection open but dead.
        deadline = dropped + 10
        while client.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))["msg_type"] != "iopub_welcome":
            pass
        out = execute(client, "print(x)", timeout=max(0.1, deadline - time.monotonic()))
        recovered = time.monotonic() - dropped
        assert out["stdout"].strip() == "before the drop"
        assert recovered < 10
        after = provisioner_info(km)
        assert after["pid"] == before["pid"]
        assert after["connection_info"] == before["connection_info"]
        assert after["local_endpoints"] == before["local_endpoints"]
    assert not process_alive(before["pid"])
    assert not os.path.exists(before["kernel_dir"])


def test_without_lease_a_drop_ends_the_kernel(ssh_spec, sshd):
    with running_kernel(ssh_spec(lease=0)) as (km, client):
        pid = provisioner_info(km)["pid"]
        for conn in sshd_connection_processes(sshd.process.pid):
            os.kill(conn, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while km.is_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not km.is_alive()
        deadline = time.monotonic() + 5
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not process_alive(pid)


def test_server_shows_reconnecting_then_the_next_cell_runs(ssh_spec, sshd, tmp_path):
    """Through jupyter_server: while the network is down the kernel reads 'reconnecting', not
    dead; within 10 s of the network returning the notebook's next cell runs, state intact."""
    from demo_helpers import KernelSocket
    from server_helpers import Server

    server = Server(tmp_path)
    try:
        kernel_id = server.api("POST", "kernels", json={"name": ssh_spec(lease=60)}).json()["id"]
        ws = KernelSocket(server, kernel_id)
        assert ws.execute("x = 'before the drop'")["error"] is None
        os.kill(sshd.process.pid, signal.SIGSTOP)  # the network is down: no new connection either
        try:
            for pid in sshd_connection_processes(sshd.process.pid):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            state = None
            while time.monotonic() < deadline and state != "reconnecting":
                state = server.api("GET", f"kernels/{kernel_id}").json()["execution_state"]
                time.sleep(0.1)
            assert state == "reconnecting"
            time.sleep(3)
            assert server.api("GET", f"kernels/{kernel_id}").json()["execution_state"] == "reconnecting"
        finally:
            os.kill(sshd.process.pid, signal.SIGCONT)  # the network returns
        back = time.monotonic()
        # The user sees the state leave 'reconnecting', then runs the next cell. (A cell sent
        # during the outage may run with its output lost: iopub subscribers rejoin after it.)
        while server.api("GET", f"kernels/{kernel_id}").json()["execution_state"] == "reconnecting":
            assert time.monotonic() - back < 10
            time.sleep(0.1)
        assert ws.execute("print(x)", timeout=30)["stdout"].strip() == "before the drop"
        assert time.monotonic() - back < 10
        ws.close()
        server.api("DELETE", f"kernels/{kernel_id}")
    finally:
        server.stop()
