"""Many users' single-user servers on one machine, each running hpc-ssh kernels under load.

Used by tests/test_load.py (issue 8, "Load") and benchmarks/load.py. What it builds, as a hub
would spawn it:

* ``users`` unix users of our own (``hpcload01``...: other sessions' tests inspect and kill
  ``hpcuser``'s processes, so these users are nobody else's), all allowed in one sshd of ours
  that stands in for the cluster's login node.
* one real ``python -m jupyter_server`` per user, **run as that user** (``Popen(user=...)``)
  from the demo venv (a world-readable install of this checkout, tests/demo_helpers.py), with
  ``HPCMappingKernelManager`` and an ``hpc-ssh`` kernelspec logging in as that user with a
  copy of the client key the user owns. Its JUPYTER_* directories are the user's own (0700).
* ``kernels_per_user`` kernels per server, started over REST, all at once.
* then, for ``duration`` seconds, one thread per kernel with its own websocket runs a light
  cell about every ``period`` seconds (``n += 1; print(n, sum(range(10000)))``) and checks its
  ``execute_reply`` is ``ok`` and its output is exactly the expected counter line.

Errors are every failed check, exception or timeout in a client, and every ``[E`` or
``Traceback`` line in a server's log. Memory: each server's VmRSS (from /proc) sampled during
the load, and the RSS of each user's kernel processes.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import pwd
import random
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests

from demo_helpers import KernelSocket, ensure_demo_venv, user_processes
from jupyter_rest import wait_until_serving
from testbed.remote_python import ensure_remote_python
from testbed.sshd import SSHDaemon, free_port
from testbed.users import ensure_user

MANAGER = "jupyter_hpc.server.HPCMappingKernelManager"
SPEC = "hpc-load"
CELL = "n = globals().get('n', 0) + 1\nprint(n, sum(range(10000)))"
EXPECTED_SUM = sum(range(10000))
ERROR_LINE = re.compile(r"^\[E |Traceback \(most recent call last\)", re.M)


def load_user(index: int) -> str:
    return f"hpcload{index:02d}"


def vm_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of ``pid`` so far (from /proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def kernel_pids(user: str) -> list[int]:
    return [pid for pid, args in user_processes(user).items() if "ipykernel_launcher" in args]


def quantile(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid)


class UserServer:
    """One user's jupyter_server, run as that user, with an hpc-ssh kernelspec of its own."""

    def __init__(self, base: Path, user: pwd.struct_passwd, sshd: SSHDaemon, remote_python: str,
                 bin_dir: Path, port: int) -> None:
        self.user = user.pw_name
        self.dir = base / self.user
        self.port = port
        self.token = uuid.uuid4().hex
        for sub in ("jupyter/kernels/" + SPEC, "runtime", "config", "data", "work"):
            (self.dir / sub).mkdir(parents=True)
        # The user's own copy of the key: the server runs as the user, who cannot read root's.
        key = self.dir / "id_ed25519"
        shutil.copy(sshd.client_key, key)
        os.chmod(key, 0o600)
        shutil.copy(sshd.known_hosts, self.dir / "known_hosts")
        config = sshd.provisioner_config(self.user, remote_python=remote_python)
        config.update(client_keys=[str(key)], known_hosts=str(self.dir / "known_hosts"))
        (self.dir / "jupyter/kernels" / SPEC / "kernel.json").write_text(json.dumps({
            "argv": [remote_python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "HPC load", "language": "python", "interrupt_mode": "signal",
            "metadata": {"kernel_provisioner": {"provisioner_name": "hpc-ssh", "config": config}},
        }))
        os.chmod(self.dir, 0o700)
        chown_tree(self.dir, user.pw_uid, user.pw_gid)
        env = {
            "HOME": user.pw_dir, "USER": self.user, "LOGNAME": self.user, "SHELL": user.pw_shell,
            "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
            "JUPYTER_PATH": str(self.dir / "jupyter"),
            "JUPYTER_RUNTIME_DIR": str(self.dir / "runtime"),
            "JUPYTER_CONFIG_DIR": str(self.dir / "config"),
            "JUPYTER_DATA_DIR": str(self.dir / "data"),
        }
        argv = [
            str(bin_dir / "python"), "-m", "jupyter_server", "--no-browser",
            f"--ServerApp.port={port}", "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.dir / 'work'}",
            f"--ServerApp.kernel_manager_class={MANAGER}",
        ]
        # The log is root's file; only the server's stdout/stderr descriptor is handed over.
        self.log_path = base / f"{self.user}-server.log"
        self.started = time.monotonic()
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                argv, env=env, cwd=self.dir / "work", stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, user=user.pw_uid, group=user.pw_gid, extra_groups=[],
            )
        self.ready_after: float | None = None

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float) -> float:
        self.ready_after = wait_until_serving(
            self.process, self.port, self.token, self.started, timeout,
            f"{self.user}'s server", lambda: self.log, interval=0.2,
        )
        return self.ready_after

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        response = requests.request(
            method, f"http://127.0.0.1:{self.port}/api/{path}",
            headers={"Authorization": f"token {self.token}"}, timeout=120, **kwargs,
        )
        response.raise_for_status()
        return response

    def error_lines(self) -> list[str]:
        text = self.log
        return [text[m.start():text.find("\n", m.start())] for m in ERROR_LINE.finditer(text)]

    def stop(self, timeout: float = 30) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


class LoadClient(KernelSocket):
    """A websocket to one kernel that runs the counter cell and checks each answer."""

    def run_cell(self, expected_n: int, timeout: float) -> tuple[float, str | None]:
        """(round trip in s, the problem or None). Waits for both the shell's execute_reply and
        iopub's idle: the two channels' messages may arrive in either order."""
        started = time.monotonic()
        msg_id = self.send("execute_request", {"code": CELL, "silent": False, "store_history": False})
        reply, idle, stdout, errors = None, False, [], []
        deadline = started + timeout
        while reply is None or not idle:
            left = deadline - time.monotonic()
            if left <= 0:
                return time.monotonic() - started, f"no {'reply' if reply is None else 'idle'} in {timeout} s"
            self.ws.settimeout(left)
            msg = json.loads(self.ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "execute_reply":
                reply = msg["content"]
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                idle = True
            elif kind == "stream":
                stdout.append(msg["content"]["text"])
            elif kind == "error":
                errors.append(msg["content"]["ename"])
        elapsed = time.monotonic() - started
        expected = f"{expected_n} {EXPECTED_SUM}\n"
        if reply.get("status") != "ok":
            return elapsed, f"execute_reply status {reply.get('status')!r} ({reply.get('ename')})"
        if errors:
            return elapsed, f"error output {errors}"
        if "".join(stdout) != expected:
            return elapsed, f"output {''.join(stdout)!r}, expected {expected!r}"
        return elapsed, None


@dataclass
class LoadResult:
    users: int
    kernels: int
    duration: float
    period: float
    servers_ready: float = 0.0
    kernels_started: float = 0.0
    cells: int = 0
    round_trips: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    rss_idle: dict[str, float] = field(default_factory=dict)   # server RSS before the load
    rss_peak: dict[str, float] = field(default_factory=dict)   # highest sample during the load
    rss_end: dict[str, float] = field(default_factory=dict)    # after the load
    kernel_rss: dict[str, float] = field(default_factory=dict)  # the user's kernels, summed
    server_cpu: dict[str, float] = field(default_factory=dict)  # CPU s each server used in the load
    loadavg: str = ""
    cells_per_kernel: list[int] = field(default_factory=list)
    load_wall: float = 0.0
    shutdown: float = 0.0
    kernels_gone: float = 0.0
    servers_stopped: float = 0.0
    leftovers: dict[str, dict[int, str]] = field(default_factory=dict)

    def report(self) -> str:
        def mmm(values) -> str:
            values = sorted(values)
            return f"{values[0]:.0f} / {statistics.median(values):.0f} / {values[-1]:.0f}"

        rt = [t * 1000 for t in self.round_trips] or [float("nan")]
        rows = [
            ("users (one jupyter_server each, run as the user)", f"{self.users}"),
            ("kernels (hpc-ssh, one sshd)", f"{self.kernels}"),
            ("all servers answering after", f"{self.servers_ready:.1f} s"),
            (f"all {self.kernels} kernels started (REST, at once) after", f"{self.kernels_started:.1f} s"),
            ("load", f"{self.load_wall:.1f} s, one cell per kernel every ~{self.period:g} s"),
            ("cells executed", f"{self.cells} ({self.cells / max(self.load_wall, 1e-9):.1f}/s)"),
            ("cells per kernel min / median / max", mmm(self.cells_per_kernel or [0])),
            ("cell round trip p50 / p90 / p99 / max",
             f"{statistics.median(rt):.1f} / {quantile(rt, .90):.1f} / {quantile(rt, .99):.1f} / {max(rt):.1f} ms"),
            ("errors", f"{len(self.errors)}"),
            ("load average (1, 5, 15 min) at the end of the load", self.loadavg),
            ("server CPU during the load, min / median / max",
             mmm([v * 1000 / max(self.load_wall, 1e-9) for v in self.server_cpu.values()] or [0])
             + " ms per s"),
            ("server RSS before load, min / median / max", mmm(self.rss_idle.values() or [0]) + " MB"),
            ("server RSS peak during load, min / median / max", mmm(self.rss_peak.values() or [0]) + " MB"),
            ("server RSS after load, min / median / max", mmm(self.rss_end.values() or [0]) + " MB"),
            ("server RSS after load, all servers", f"{sum(self.rss_end.values()):.0f} MB"),
            (f"RSS of one user's {self.kernels // max(self.users, 1)} kernels, min / median / max",
             mmm(self.kernel_rss.values() or [0]) + " MB"),
            ("kernels' processes gone after the DELETEs (all at once)", f"{self.kernels_gone:.1f} s"),
            ("servers exited after SIGTERM (all at once)", f"{self.servers_stopped:.1f} s"),
            ("shutdown (DELETE kernels, stop servers, no process left)", f"{self.shutdown:.1f} s"),
        ]
        width = max(len(name) for name, _ in rows)
        lines = ["Load: issue 8", *(f"  {name.ljust(width)}  {value}" for name, value in rows)]
        lines.append("")
        lines.append("  per user: server RSS before / peak / after load (MB), kernels' RSS (MB)")
        for user in sorted(self.rss_end):
            lines.append(f"    {user}  {self.rss_idle.get(user, 0):6.1f} {self.rss_peak.get(user, 0):6.1f} "
                         f"{self.rss_end.get(user, 0):6.1f}   {self.kernel_rss.get(user, 0):6.1f}")
        if self.errors:
            lines += ["", f"  errors (first 20 of {len(self.errors)}):", *(f"    {e}" for e in self.errors[:20])]
        return "\n".join(lines) + "\n"


class LoadBed:
    """Users, sshd, servers; ``run()`` does kernels, load and shutdown; ``close()`` always cleans."""

    def __init__(self, users: int = 20, kernels_per_user: int = 3) -> None:
        self.names = [load_user(i + 1) for i in range(users)]
        self.kernels_per_user = kernels_per_user
        self.entries = [ensure_user(name) for name in self.names]
        self.kill_user_processes()  # a crashed earlier run's, of our own users only
        self.remote_python = ensure_remote_python()
        self.bin_dir = ensure_demo_venv()
        self.base = Path(tempfile.mkdtemp(prefix="jupyter-hpc-load-"))
        os.chmod(self.base, 0o755)
        # sshd reads authorized keys as the user: under our 0755 base, not pytest's 0700 tmp.
        self.sshd = SSHDaemon(self.base / "sshd", users=self.names).start()
        self.servers: list[UserServer] = []

    def kill_user_processes(self) -> None:
        for name in self.names:
            for pid in user_processes(name):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def start_servers(self, timeout: float = 120) -> float:
        started = time.monotonic()
        ports: set[int] = set()
        for entry in self.entries:
            port = free_port()
            while port in ports:
                port = free_port()
            ports.add(port)
            self.servers.append(UserServer(self.base, entry, self.sshd, self.remote_python, self.bin_dir, port))
        for server in self.servers:
            server.wait_ready(timeout)
        return time.monotonic() - started

    def run(self, duration: float = 60.0, period: float = 1.0, cell_timeout: float = 60.0) -> LoadResult:
        result = LoadResult(users=len(self.names), kernels=len(self.names) * self.kernels_per_user,
                            duration=duration, period=period)
        errors_lock = threading.Lock()

        def error(text: str) -> None:
            with errors_lock:
                result.errors.append(text)

        result.servers_ready = self.start_servers()

        # -- kernels: all started at once over REST ----------------------------------------
        started = time.monotonic()
        jobs = [(server, k) for server in self.servers for k in range(self.kernels_per_user)]
        kernels: list[tuple[UserServer, str]] = []
        with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
            futures = {pool.submit(lambda s: s.api("POST", "kernels", json={"name": SPEC}).json()["id"], s): s
                       for s, _ in jobs}
            for future in concurrent.futures.as_completed(futures):
                server = futures[future]
                try:
                    kernels.append((server, future.result()))
                except Exception as exc:  # noqa: BLE001 - every failure is an error of the run
                    error(f"{server.user}: kernel start failed: {exc!r}")
        result.kernels_started = time.monotonic() - started

        # -- load ----------------------------------------------------------------------------
        for server in self.servers:
            result.rss_idle[server.user] = vm_rss_mb(server.process.pid) or 0.0
        cpu_before = {s.user: cpu_seconds(s.process.pid) or 0.0 for s in self.servers}
        counts: list[int] = []
        trips: list[float] = []
        stop_sampling = threading.Event()

        def sample() -> None:
            while not stop_sampling.wait(2.0):
                for server in self.servers:
                    rss = vm_rss_mb(server.process.pid)
                    if rss is not None:
                        result.rss_peak[server.user] = max(result.rss_peak.get(server.user, 0.0), rss)

        barrier = threading.Barrier(len(kernels) + 1)
        load_end = [0.0]

        def client(server: UserServer, kernel_id: str) -> None:
            done, mine = 0, []
            ws = None
            try:
                try:
                    ws = LoadClient(server, kernel_id)
                finally:
                    barrier.wait()
                rng = random.Random(kernel_id)
                next_at = time.monotonic() + rng.uniform(0, period)
                while True:
                    next_at += period * rng.uniform(0.8, 1.2)
                    if next_at >= load_end[0]:
                        break
                    time.sleep(max(0.0, next_at - time.monotonic()))
                    elapsed, problem = ws.run_cell(done + 1, cell_timeout)
                    done += 1
                    mine.append(elapsed)
                    if problem:
                        error(f"{server.user} kernel {kernel_id[:8]} cell {done}: {problem}")
                        if problem.startswith("no "):
                            break  # a timed-out socket holds stale messages; stop this client
            except threading.BrokenBarrierError:
                error(f"{server.user} kernel {kernel_id[:8]}: barrier broken")
            except Exception as exc:  # noqa: BLE001
                error(f"{server.user} kernel {kernel_id[:8]} after {done} cells: {exc!r}\n"
                      + "".join(traceback.format_exception_only(exc)).strip())
            finally:
                if ws is not None:
                    with contextlib.suppress(Exception):
                        ws.close()
                with errors_lock:
                    counts.append(done)
                    trips.extend(mine)

        threads = [threading.Thread(target=client, args=kv, daemon=True) for kv in kernels]
        load_end[0] = float("inf")
        for thread in threads:
            thread.start()
        barrier.wait()  # every websocket is open and has had its kernel_info_reply
        load_started = time.monotonic()
        load_end[0] = load_started + duration
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        for thread in threads:
            thread.join(duration + cell_timeout + 30)
            if thread.is_alive():
                error(f"a client thread did not finish within {duration + cell_timeout + 30:.0f} s")
        result.load_wall = time.monotonic() - load_started
        stop_sampling.set()
        sampler.join()
        result.cells, result.round_trips, result.cells_per_kernel = sum(counts), trips, sorted(counts)
        result.loadavg = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        for server in self.servers:
            result.server_cpu[server.user] = (cpu_seconds(server.process.pid) or 0.0) - cpu_before[server.user]
        for server in self.servers:
            result.rss_end[server.user] = vm_rss_mb(server.process.pid) or 0.0
            result.rss_peak[server.user] = max(result.rss_peak.get(server.user, 0.0), result.rss_end[server.user])
            result.kernel_rss[server.user] = sum(vm_rss_mb(pid) or 0.0 for pid in kernel_pids(server.user))

        # -- shutdown --------------------------------------------------------------------------
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max(1, len(kernels))) as pool:
            futures = {pool.submit(s.api, "DELETE", f"kernels/{k}"): (s, k) for s, k in kernels}
            for future in concurrent.futures.as_completed(futures):
                server, kernel_id = futures[future]
                try:
                    future.result()
                except Exception as exc:  # noqa: BLE001
                    error(f"{server.user}: shutting down kernel {kernel_id[:8]} failed: {exc!r}")
        # A DELETE answers before its kernel's shutdown ends (pending kernels): each server
        # must have let go of its kernels within 30 s.
        listing = {server.user: True for server in self.servers}
        deadline = time.monotonic() + 30
        while any(listing.values()) and time.monotonic() < deadline:
            for server in self.servers:
                if listing[server.user]:
                    with contextlib.suppress(requests.RequestException):
                        listing[server.user] = bool(server.api("GET", "kernels").json())
            time.sleep(0.2)
        for user, still in listing.items():
            if still:
                error(f"{user}: the server still lists kernels 30 s after DELETE")
        deadline = time.monotonic() + 30
        while any(kernel_pids(n) for n in self.names) and time.monotonic() < deadline:
            time.sleep(0.2)
        result.kernels_gone = time.monotonic() - started
        for name in self.names:
            for pid in kernel_pids(name):
                error(f"{name}: kernel process {pid} still runs 30 s after its DELETE")
        stopping = time.monotonic()
        for server in self.servers:  # all at once, as a hub's shutdown would
            server.process.send_signal(signal.SIGTERM)
        for server in self.servers:
            server.stop()
            if server.process.returncode not in (0, -signal.SIGTERM):
                error(f"{server.user}: the server exited with {server.process.returncode}")
        result.servers_stopped = time.monotonic() - stopping
        deadline = time.monotonic() + 30
        while any(user_processes(n) for n in self.names) and time.monotonic() < deadline:
            time.sleep(0.2)
        result.leftovers = {n: p for n in self.names if (p := user_processes(n))}
        result.shutdown = time.monotonic() - started
        for server in self.servers:
            for line in server.error_lines():
                error(f"{server.user} server log: {line}")
        return result

    def save_logs(self, dest: Path) -> None:
        """Copy every server's log and sshd's to ``dest`` (for a failed run)."""
        dest.mkdir(parents=True, exist_ok=True)
        for path in [*self.base.glob("*-server.log"), self.sshd.log]:
            if path.exists():
                shutil.copy(path, dest / path.name)

    def close(self) -> None:
        for server in self.servers:
            with contextlib.suppress(Exception):
                server.stop(10)
        self.kill_user_processes()
        self.sshd.stop()
        if os.environ.get("JUPYTER_HPC_KEEP_LOAD_LOGS") != "1":
            shutil.rmtree(self.base, ignore_errors=True)
