"""Shared by the benchmark scripts: the test bed (user, remote python, sshd), kernelspecs,
a plain-TCP kernel as the peers run it, statistics and table printing.

Everything here reuses ``tests/testbed`` so the benchmarks run against the same sshd and
the same remote ipykernel as the tests. Runs as root: it creates the test user and starts
sshd.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from testbed.remote_python import ensure_remote_python  # noqa: E402
from testbed.sshd import SSHDaemon, free_port  # noqa: E402
from testbed.users import ensure_user  # noqa: E402

# A user of our own: other sessions' tests start, inspect and kill hpcuser's processes.
BENCH_USER = "hpcbench"

__all__ = ["Bed", "free_port", "rss_mb", "summarize", "table"]


def rss_mb() -> float:
    """This process's resident memory, in MB (from /proc, no psutil needed)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank-free linear quantile (``statistics.quantiles`` inclusive method)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[max(0, min(98, round(q * 100) - 1))]


def summarize(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": statistics.median(values),
        "p90": quantile(values, 0.90),
        "p99": quantile(values, 0.99),
        "min": min(values),
        "max": max(values),
    }


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table (readable in a terminal too)."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def quiet_logs(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.ERROR, format="%(name)s: %(message)s")
    if not verbose:
        for name in ("jupyter_hpc", "asyncssh", "traitlets"):
            logging.getLogger(name).setLevel(logging.ERROR)


class Bed:
    """The user, the remote python, an sshd (and one refusing stream-local forwarding),
    and a private JUPYTER_PATH with one kernelspec per variant."""

    def __init__(self, *, fallback_sshd: bool = False, namespace: bool = False, stock_sessions_sshd: bool = False) -> None:
        """``stock_sessions_sshd``: a second sshd with OpenSSH's default ``MaxSessions 10`` (the
        test bed's allows 200), beside the first (port 2222 in the namespace).
        ``namespace``: the sshd runs in a network namespace of its own, on 10.231.0.2:22
        (``_netns.py``), instead of a free port on 127.0.0.1."""
        if os.geteuid() != 0:
            raise SystemExit("benchmarks must run as root: they create the test user and start sshd")
        self.user = ensure_user(BENCH_USER)
        self.remote_python = ensure_remote_python()
        self.root = Path(tempfile.mkdtemp(prefix="jupyter-hpc-bench-"))
        os.chmod(self.root, 0o755)
        self.namespace = None
        if namespace:
            from _netns import Namespace, namespaced_sshd

            self.namespace = Namespace().create()
            try:
                self.sshd = namespaced_sshd(self.root / "sshd", [self.user.pw_name], self.namespace)
            except BaseException:
                self.namespace.close()
                raise
        else:
            self.sshd = SSHDaemon(self.root / "sshd", users=[self.user.pw_name]).start()
        self.sshd_stock = None
        if stock_sessions_sshd:
            stock = {"MaxSessions": "10"}
            if self.namespace is not None:
                self.sshd_stock = namespaced_sshd(
                    self.root / "sshd-stock", [self.user.pw_name], self.namespace, port=2222, options=stock
                )
            else:
                self.sshd_stock = SSHDaemon(self.root / "sshd-stock", users=[self.user.pw_name], options=stock).start()
        self.sshd_nosl = None
        if fallback_sshd:
            self.sshd_nosl = SSHDaemon(
                self.root / "sshd-nosl", users=[self.user.pw_name], options={"AllowStreamLocalForwarding": "no"}
            ).start()
        self.jupyter_path = self.root / "jupyter"
        os.environ["JUPYTER_PATH"] = str(self.jupyter_path)
        os.environ["JUPYTER_RUNTIME_DIR"] = str(self.root / "runtime")
        self._cleanups: list = []

    # -- kernelspecs -----------------------------------------------------------------------

    def kernelspec(self, name: str, provisioner_config: dict | None = None, provisioner: str = "hpc-ssh") -> str:
        """Write a kernelspec running the remote python's ipykernel; ``provisioner`` (hpc-ssh) if a
        config is given."""
        directory = self.jupyter_path / "kernels" / name
        directory.mkdir(parents=True, exist_ok=True)
        body = {
            "argv": [self.remote_python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": name,
            "language": "python",
            "interrupt_mode": "signal",
            "metadata": {},
        }
        if provisioner_config is not None:
            body["metadata"] = {"kernel_provisioner": {"provisioner_name": provisioner, "config": provisioner_config}}
        (directory / "kernel.json").write_text(json.dumps(body))
        return name

    def ssh_config(self, daemon: SSHDaemon | None = None, **extra) -> dict:
        daemon = daemon or self.sshd
        return daemon.provisioner_config(self.user.pw_name, remote_python=self.remote_python, **extra)

    # -- OpenSSH client --------------------------------------------------------------------

    def ssh_argv(self, *options: str, daemon: SSHDaemon | None = None) -> list[str]:
        daemon = daemon or self.sshd
        return [
            "ssh", "-F", "/dev/null", "-i", str(daemon.client_key),
            "-o", f"UserKnownHostsFile={daemon.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-p", str(daemon.port), *options,
            f"{self.user.pw_name}@{daemon.host}",
        ]

    @contextlib.contextmanager
    def ssh_master(self):
        """An OpenSSH ControlMaster, so each raw `ssh host cmd` below skips the key exchange."""
        control = self.root / "ctl"
        master = subprocess.Popen(
            self.ssh_argv("-M", "-S", str(control), "-N"), stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 15
        while not control.exists():
            if master.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the OpenSSH control master did not start")
            time.sleep(0.05)
        try:
            yield ["-S", str(control)]
        finally:
            master.terminate()
            master.wait(10)

    # -- a kernel as the peers run it ------------------------------------------------------

    @contextlib.contextmanager
    def plain_tcp_kernel_over_ssh_L(self):
        """A kernel on the remote's 127.0.0.1 TCP (no encryption), as hpcuser, reached through
        one OpenSSH ``ssh -N -L`` per kernel: the way remote_ikernel and the other peers work.
        Yields a started BlockingKernelClient's connection info (local ports)."""
        from jupyter_client import BlockingKernelClient

        directory = Path(tempfile.mkdtemp(prefix="plain-", dir=self.root))
        os.chown(directory, self.user.pw_uid, self.user.pw_gid)
        remote = BlockingKernelClient()
        remote.write_connection_file()
        remote_info = remote.get_connection_info()
        connection_file = directory / "kernel.json"
        shutil.copy(remote.connection_file, connection_file)
        os.chown(connection_file, self.user.pw_uid, self.user.pw_gid)
        remote.cleanup_connection_file()
        kernel = subprocess.Popen(
            ["runuser", "-u", self.user.pw_name, "--", self.remote_python, "-m", "ipykernel_launcher",
             "-f", str(connection_file)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/tmp",
        )
        channels = ("shell", "iopub", "stdin", "control", "hb")
        local = {ch: free_port() for ch in channels}
        forwards = []
        for ch in channels:
            forwards += ["-L", f"127.0.0.1:{local[ch]}:127.0.0.1:{remote_info[ch + '_port']}"]
        tunnel = subprocess.Popen(
            self.ssh_argv("-N", "-o", "ExitOnForwardFailure=yes", *forwards), stdin=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 15
            while True:
                try:
                    socket.create_connection(("127.0.0.1", local["hb"]), timeout=0.5).close()
                    break
                except OSError:
                    if tunnel.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("ssh -L did not come up")
                    time.sleep(0.05)
            info = dict(remote_info, **{f"{ch}_port": local[ch] for ch in channels})
            yield info
        finally:
            tunnel.terminate()
            tunnel.wait(10)
            kernel.terminate()
            try:
                kernel.wait(10)
            except subprocess.TimeoutExpired:
                kernel.kill()
            shutil.rmtree(directory, ignore_errors=True)

    def leftover_processes(self, grace: float = 10.0) -> list[str]:
        """Processes of the bed's own user still running (after every kernel was shut down):
        their command lines, for the report; then each is ended by its pid. The user is the
        benchmarks' own, so these are ours."""
        import collections
        import signal

        def ours() -> dict[int, str]:
            found = {}
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    if entry.stat().st_uid != self.user.pw_uid:
                        continue
                    cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                except OSError:
                    continue
                if cmd:  # zombies have none
                    found[int(entry.name)] = cmd
            return found

        deadline = time.monotonic() + grace
        found = ours()
        while found and time.monotonic() < deadline:
            time.sleep(0.2)
            found = ours()
        for pid in found:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        def label(cmd: str) -> str:
            if "jupyter-hpc-launcher" in cmd:
                return "hpc-ssh launcher/monitor (python -I -S -c …)"
            if "ipykernel_launcher" in cmd and "/pool-" in cmd:
                return "ipykernel of hpc-ssh's pre-started pool"
            if "launch_ipykernel.py" in cmd:
                return "gateway's launch_ipykernel.py"
            if cmd.startswith("sleep 600"):
                return "sleep 600 (remote_ikernel's tunnel command)"
            return cmd[:100]

        counts = collections.Counter(label(cmd) for cmd in found.values())
        return [f"{n}× {cmd}" for cmd, n in counts.most_common()]

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of each sshd's log, to explain a failure."""
        out = []
        for daemon in (self.sshd, self.sshd_nosl, self.sshd_stock):
            if daemon is not None and daemon.log.exists():
                out.append(f"--- {daemon.log}")
                out += daemon.log.read_text().splitlines()[-lines:]
        return "\n".join(out)

    def close(self) -> None:
        for daemon in (self.sshd, self.sshd_nosl, self.sshd_stock):
            if daemon is not None:
                daemon.stop()
        if self.namespace is not None:
            self.namespace.close()
        shutil.rmtree(self.root, ignore_errors=True)

