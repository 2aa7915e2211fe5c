"""A real single-node SLURM (munged + slurmctld + slurmd from Debian's packages) for the tests,
with real accounting: a private MariaDB and slurmdbd, so that sacct answers as on a cluster.

The config goes to /etc/slurm/slurm.conf so that a plain SSH login of the test user finds it,
as on a cluster; slurmdbd's (which holds the database password) to /etc/slurm/slurmdbd.conf,
0600 root, as slurmdbd demands. Two partitions: ``debug`` (default) and ``regular``.

Every daemon but munged is a child of the test process, started without systemd; MariaDB runs
as root on a datadir, socket and TCP port of its own under the cluster's temporary root
(``jupyter-hpc-slurm-*``), so nothing of a system MariaDB is touched. The database password is
generated per run and only ever written to the 0600 slurmdbd.conf and to the mariadb client's
stdin: never on a command line, never in a log.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from testbed.users import KERNEL_USER, NEIGHBOUR_USER

CONF = Path("/etc/slurm/slurm.conf")
DBD_CONF = Path("/etc/slurm/slurmdbd.conf")
MUNGE_KEY = Path("/etc/munge/munge.key")
LOCK = "/run/lock/jupyter-hpc-slurm-testbed.lock"
ROOT_MARK = "/jupyter-hpc-slurm-"  # the prefix of the fixture's temporary root (conftest)
CLUSTER = "test"
ACCOUNT = "testbed"
DB_NAME = "slurm_acct_db"
DB_USER = "slurm"
# A small, fast, throw-away server: no durability (nosync, no doublewrite), small buffers.
MARIADB_OPTIONS = (
    "--skip-name-resolve", "--innodb-buffer-pool-size=16M", "--innodb-log-file-size=8M",
    "--innodb-flush-method=nosync", "--innodb-doublewrite=0",
)


def _munge_up() -> bool:
    munge = subprocess.run(["munge", "-n"], capture_output=True)
    return munge.returncode == 0 and subprocess.run(["unmunge"], input=munge.stdout, capture_output=True).returncode == 0


def ensure_munge() -> None:
    if _munge_up():
        return
    munge_user = pwd.getpwnam("munge")
    if not MUNGE_KEY.exists():
        MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
        MUNGE_KEY.write_bytes(os.urandom(1024))
    os.chown(MUNGE_KEY, munge_user.pw_uid, munge_user.pw_gid)
    os.chmod(MUNGE_KEY, 0o400)
    for directory in ("/run/munge", "/var/lib/munge", "/var/log/munge"):
        os.makedirs(directory, exist_ok=True)
        os.chown(directory, munge_user.pw_uid, munge_user.pw_gid)
    subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged", "--force"], check=True)
    deadline = time.monotonic() + 10
    while not _munge_up():
        if time.monotonic() > deadline:
            raise RuntimeError("munged did not start")
        time.sleep(0.1)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ours(pid: str) -> bool:
    """Whether a process's command line or working directory is in a test bed's temp root."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    return ROOT_MARK in cmdline or ROOT_MARK in cwd


def stray_pids(name: str) -> list[int]:
    """Processes named ``name`` left by an earlier run of the bed (not anyone else's)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if comm == name and _ours(entry.name):
            pids.append(int(entry.name))
    return pids


def kill_strays(*names: str, timeout: float = 10) -> None:
    pids = [pid for name in names for pid in stray_pids(name)]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        pids = [pid for pid in pids if _alive(pid)]
        time.sleep(0.1)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _write_secret(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` as 0600, never readable by others, even for a moment."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(temporary, path)


class SlurmCluster:
    """slurmctld and slurmd for one node named after this host, at 127.0.0.1."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.node = socket.gethostname().split(".")[0]
        self.cpus = os.cpu_count() or 1
        self.processes: list[subprocess.Popen] = []
        self.db_port = 0
        self.db_dir = root / "db"

    def config_text(self) -> str:
        state = self.root / "state"
        spool = self.root / "spool"
        state.mkdir(parents=True, exist_ok=True)
        spool.mkdir(parents=True, exist_ok=True)
        lines = {
            "ClusterName": "test",
            "SlurmctldHost": f"{self.node}(127.0.0.1)",
            "SlurmUser": "root",
            "AuthType": "auth/munge",
            "StateSaveLocation": str(state),
            "SlurmdSpoolDir": str(spool),
            "SlurmctldPidFile": str(self.root / "slurmctld.pid"),
            "SlurmdPidFile": str(self.root / "slurmd.pid"),
            "SlurmctldLogFile": str(self.root / "slurmctld.log"),
            "SlurmdLogFile": str(self.root / "slurmd.log"),
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "JobAcctGatherType": "jobacct_gather/linux",
            "AccountingStorageType": "accounting_storage/slurmdbd",
            "AccountingStorageHost": "localhost",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_Core",
            "ReturnToService": "2",
            "MinJobAge": "30",
            "SchedulerParameters": "sched_interval=2",
            "MessageTimeout": "10",
            "KillWait": "5",
        }
        text = "".join(f"{key}={value}\n" for key, value in lines.items())
        text += (
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory=4000 State=UNKNOWN\n"
            f"PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP\n"
            f"PartitionName=regular Nodes={self.node} MaxTime=INFINITE State=UP\n"
        )
        return text

    def dbd_config_text(self, password: str) -> str:
        lines = {
            "AuthType": "auth/munge",
            "DbdHost": "localhost",
            "DbdAddr": "127.0.0.1",
            "SlurmUser": "root",
            "DebugLevel": "info",
            "LogFile": str(self.root / "slurmdbd.log"),
            "PidFile": str(self.root / "slurmdbd.pid"),
            "StorageType": "accounting_storage/mysql",
            "StorageHost": "127.0.0.1",
            "StoragePort": str(self.db_port),
            "StorageUser": DB_USER,
            "StoragePass": password,
            "StorageLoc": DB_NAME,
        }
        return "".join(f"{key}={value}\n" for key, value in lines.items())

    def start(self) -> "SlurmCluster":
        # One bed at a time on this machine: a second test session (or benchmark) waits here
        # instead of killing the first one's daemons. The lock dies with its holder.
        self._lock = open(LOCK, "w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        ensure_munge()
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        subprocess.run(["pkill", "-x", "slurmctld"], capture_output=True)
        subprocess.run(["pkill", "-x", "slurmd"], capture_output=True)
        kill_strays("slurmdbd", "mariadbd")  # only an earlier bed's: a site's own are left alone
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(
                subprocess.run(["pgrep", "-x", name], capture_output=True).returncode == 0 for name in ("slurmctld", "slurmd")):
            time.sleep(0.1)
        try:
            CONF.parent.mkdir(parents=True, exist_ok=True)
            CONF.write_text(self.config_text())  # sacctmgr, too, finds slurmdbd through slurm.conf
            os.chmod(CONF, 0o644)
            self._start_accounting()
            self._spawn(["/usr/sbin/slurmctld", "-D", "-i"])
            self._spawn(["/usr/sbin/slurmd", "-D"])
            self._wait("SLURM node not idle", 30, self._node_idle)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, argv: list[str]) -> subprocess.Popen:
        process = subprocess.Popen(argv, cwd=self.root, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        self.processes.append(process)
        return process

    def _wait(self, what: str, timeout: float, ready, process: subprocess.Popen | None = None) -> None:
        deadline = time.monotonic() + timeout
        while True:
            result = ready()
            if result is True:
                return
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"{what}: {process.args[0]} exited ({process.returncode}) {result}\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what}: {result}\n{self.log_tail()}")
            time.sleep(0.1)

    def _node_idle(self):
        state = subprocess.run(["sinfo", "-h", "-n", self.node, "-o", "%T"], capture_output=True, text=True)
        return True if state.returncode == 0 and state.stdout.strip().startswith("idle") else state.stdout + state.stderr

    def _sql(self, statements: str, secret: str) -> None:
        """Run SQL as the database's root (unix-socket auth: root of this machine only), from stdin;
        ``secret`` is blanked out of any error (MariaDB quotes the statement it stumbled on)."""
        client = subprocess.run(["mariadb", "--no-defaults", f"--socket={self.db_dir / 'mysqld.sock'}", "-u", "root"],
                                input=statements, capture_output=True, text=True)
        if client.returncode:
            raise RuntimeError("mariadb: " + client.stderr.strip().replace(secret, "<password>"))

    def _sacctmgr(self, *words: str) -> None:
        done = subprocess.run(["sacctmgr", "-i", *words], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"sacctmgr {' '.join(words)}: {done.stdout.strip()} {done.stderr.strip()}")

    def _start_accounting(self) -> None:
        """A private MariaDB, slurm_acct_db and its user, slurmdbd; the cluster, account and users."""
        data = self.db_dir / "data"
        self.db_dir.mkdir(mode=0o700)
        install = subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root",
             "--auth-root-authentication-method=socket", "--skip-test-db", *MARIADB_OPTIONS],
            cwd=self.db_dir, capture_output=True, text=True)
        if install.returncode:
            raise RuntimeError(f"mariadb-install-db failed:\n{install.stdout[-2000:]}{install.stderr[-2000:]}")
        self.db_port = _free_port()
        socket_path = self.db_dir / "mysqld.sock"
        mariadbd = self._spawn([
            "/usr/sbin/mariadbd", "--no-defaults", "--user=root", f"--datadir={data}", f"--socket={socket_path}",
            f"--port={self.db_port}", "--bind-address=127.0.0.1", f"--pid-file={self.db_dir / 'mysqld.pid'}",
            f"--log-error={self.root / 'mariadb.log'}", "--performance-schema=OFF", "--skip-log-bin",
            *MARIADB_OPTIONS])

        def pinged():
            ping = subprocess.run(["mariadb-admin", "--no-defaults", f"--socket={socket_path}", "-u", "root", "ping"],
                                  capture_output=True, text=True)
            return True if ping.returncode == 0 else ping.stderr.strip()

        self._wait("MariaDB did not start", 30, pinged, mariadbd)
        password = secrets.token_urlsafe(24)
        self._sql(f"CREATE DATABASE {DB_NAME};\n"
                  f"CREATE USER '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{password}';\n"
                  f"GRANT ALL ON {DB_NAME}.* TO '{DB_USER}'@'127.0.0.1';\n", password)
        DBD_CONF.parent.mkdir(parents=True, exist_ok=True)
        _write_secret(DBD_CONF, self.dbd_config_text(password))
        slurmdbd = self._spawn(["/usr/sbin/slurmdbd", "-D"])

        def answering():
            show = subprocess.run(["sacctmgr", "-n", "-P", "show", "cluster", "format=cluster"],
                                  capture_output=True, text=True)
            return True if show.returncode == 0 else show.stderr.strip()

        self._wait("slurmdbd did not answer", 30, answering, slurmdbd)
        self._sacctmgr("add", "cluster", CLUSTER)
        self._sacctmgr("add", "account", ACCOUNT, "Description=test bed", "Organization=jupyter-hpc")
        users = [name for name in ("root", KERNEL_USER, NEIGHBOUR_USER) if _user_exists(name)]
        self._sacctmgr("add", "user", ",".join(users), f"DefaultAccount={ACCOUNT}")

    def log_tail(self) -> str:
        out = []
        for name in ("mariadb.log", "slurmdbd.log", "slurmctld.log", "slurmd.log"):
            path = self.root / name
            if path.exists():
                out.append(f"--- {name}\n" + "\n".join(path.read_text().splitlines()[-20:]))
        return "\n".join(out)

    def jobs(self, user: str) -> list[str]:
        """Job ids squeue shows for ``user``."""
        out = subprocess.run(["squeue", "-h", "-u", user, "-o", "%i"], capture_output=True, text=True, check=True)
        return out.stdout.split()

    def cancel_all(self, user: str) -> None:
        subprocess.run(["scancel", "-u", user], capture_output=True)

    def stop(self) -> None:
        """Stop slurmd and slurmctld (which flushes its records to slurmdbd), then slurmdbd, then
        MariaDB; remove the temp root and slurmdbd.conf (its password is this run's)."""
        started = {Path(p.args[0]).name: p for p in self.processes}
        for group in (("slurmd", "slurmctld"), ("slurmdbd",), ("mariadbd",)):
            processes = [started[name] for name in group if name in started]
            for process in processes:
                if process.poll() is None:
                    process.terminate()
            for process in processes:
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes.clear()
        DBD_CONF.unlink(missing_ok=True)
        shutil.rmtree(self.root, ignore_errors=True)
        if getattr(self, "_lock", None) is not None:
            self._lock.close()  # releases the flock
            self._lock = None


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def hold_regular(held: bool) -> None:
    """Take the ``regular`` partition down (jobs stay pending there) or bring it back up."""
    subprocess.run(["scontrol", "update", "PartitionName=regular", f"State={'DOWN' if held else 'UP'}"],
                   check=True, capture_output=True)
