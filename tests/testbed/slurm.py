"""A real single-node SLURM (munged + slurmctld + slurmd from Debian's packages) for the tests.

The config goes to /etc/slurm/slurm.conf so that a plain SSH login of the test user finds it,
as on a cluster. Two partitions: ``debug`` (default) and ``regular``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

CONF = Path("/etc/slurm/slurm.conf")
MUNGE_KEY = Path("/etc/munge/munge.key")


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


class SlurmCluster:
    """slurmctld and slurmd for one node named after this host, at 127.0.0.1."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.node = socket.gethostname().split(".")[0]
        self.cpus = os.cpu_count() or 1
        self.processes: list[subprocess.Popen] = []

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
            "JobAcctGatherType": "jobacct_gather/none",
            "AccountingStorageType": "accounting_storage/none",
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

    def start(self) -> "SlurmCluster":
        ensure_munge()
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        CONF.parent.mkdir(parents=True, exist_ok=True)
        CONF.write_text(self.config_text())
        os.chmod(CONF, 0o644)
        subprocess.run(["pkill", "-x", "slurmctld"], capture_output=True)
        subprocess.run(["pkill", "-x", "slurmd"], capture_output=True)
        time.sleep(0.2)
        self.processes.append(subprocess.Popen(["/usr/sbin/slurmctld", "-D", "-i"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        self.processes.append(subprocess.Popen(["/usr/sbin/slurmd", "-D"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 30
        while True:
            state = subprocess.run(["sinfo", "-h", "-n", self.node, "-o", "%T"], capture_output=True, text=True)
            if state.returncode == 0 and state.stdout.strip().startswith("idle"):
                return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"SLURM node not idle: {state.stdout} {state.stderr}\n{self.log_tail()}")
            time.sleep(0.2)

    def log_tail(self) -> str:
        out = []
        for name in ("slurmctld.log", "slurmd.log"):
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
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(self.root, ignore_errors=True)
