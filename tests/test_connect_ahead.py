"""Issue 30: a server with installed hpc kernelspecs logs in to their sites at its start.

One jupyter_server (plain KernelSpecManager, the jupyter_hpc extension loaded) with two installed
``hpc-ssh`` kernelspecs on the test sshd. They pin copies of one known_hosts, so each has a pooled
connection of its own. Both are opened at the server's start, before any kernel, each with a
launcher waiting on standby; the first kernel rides its spec's connection and takes the waiting
launcher (no login, no launcher start of its own; its channels on Unix sockets since the client
is jupyter_server), and the other, never used, is closed after its ``pool_idle_lifetime``.
"""

from __future__ import annotations

import json
import re
import shutil
import time

from demo_helpers import KernelSocket
from server_helpers import Server


def logins(log: str, user: str) -> list[str]:
    """The client ports of the logins of ``user`` in this part of sshd's log."""
    return re.findall(rf"Accepted publickey for {re.escape(user)} from \S+ port (\d+)", log)


def sessions(log: str, user: str, port: str) -> int:
    """Sessions (commands) sshd started on the connection from client ``port``."""
    return len(re.findall(rf"Starting session: command for {re.escape(user)} from \S+ port {port}\b", log))


def test_installed_kernelspecs_sites_are_connected_ahead_and_unused_ones_closed(
    ssh_spec, sshd, kernel_user, tmp_path
):
    user = kernel_user.pw_name
    used = ssh_spec("hpc-ahead-used", pool_idle_lifetime=60)
    spare_known_hosts = shutil.copy(sshd.known_hosts, tmp_path / "known_hosts.spare")
    ssh_spec("hpc-ahead-spare", pool_idle_lifetime=2, known_hosts=str(spare_known_hosts))
    offset = len(sshd.log.read_text())

    def since_start() -> str:
        return sshd.log.read_text()[offset:]

    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {"jupyter_hpc": True}}}))
    server = Server(tmp_path)
    try:
        deadline = time.monotonic() + 30
        while len(logins(since_start(), user)) < 2:
            assert time.monotonic() < deadline, "no logins ahead of a kernel:\n" + since_start() + server.log
            time.sleep(0.1)
        assert server.kernel_ids() == []
        first_two = logins(since_start(), user)
        # On the login node a launcher is loaded ahead too (a session on that connection),
        # so the first kernel skips the session's open and the remote python's start.
        deadline = time.monotonic() + 30
        while not [port for port in first_two if sessions(since_start(), user, port)]:
            assert time.monotonic() < deadline, "no launcher waiting ahead:\n" + since_start()
            time.sleep(0.1)
        ahead = {port: sessions(since_start(), user, port) for port in first_two}

        kernel_id = server.api("POST", "kernels", json={"name": used}).json()["id"]
        ws = KernelSocket(server, kernel_id)
        try:
            out = ws.execute("print(6 * 7)")
            assert out["stdout"].strip() == "42", out
        finally:
            ws.close()
        assert logins(since_start(), user) == first_two, "the first kernel logged in again"
        # Its launcher was the one waiting: the only new session is the next one put on standby.
        deadline = time.monotonic() + 15
        while sum(sessions(since_start(), user, port) - ahead[port] for port in first_two) < 1:
            assert time.monotonic() < deadline, "no launcher on standby after the start:\n" + since_start()
            time.sleep(0.1)
        time.sleep(0.5)
        opened = {port: sessions(since_start(), user, port) - ahead[port] for port in first_two}
        assert sorted(opened.values()) == [0, 1], (opened, since_start())
        # jupyter_server is the client: the kernel's channels are Unix sockets in the runtime dir.
        sockets = list((tmp_path / "runtime").glob("hpc-*/k-1"))
        assert sockets and sockets[0].is_socket(), list((tmp_path / "runtime").iterdir())

        # The spare connection closes after its 2 s; the used one stays.
        deadline = time.monotonic() + 20
        closed = []
        while not closed:
            assert time.monotonic() < deadline, "the unused connection stayed open:\n" + since_start()
            closed = [port for port in first_two if re.search(rf"Disconnected from user {user} \S+ port {port}\b", since_start())]
            time.sleep(0.2)
        assert len(closed) == 1, since_start()
        still = server.api("GET", f"kernels/{kernel_id}").json()
        assert still["execution_state"] in ("idle", "busy"), still
        server.api("DELETE", f"kernels/{kernel_id}")
        deadline = time.monotonic() + 30
        while server.kernel_ids():
            assert time.monotonic() < deadline, server.log
            time.sleep(0.1)
    finally:
        server.stop()
