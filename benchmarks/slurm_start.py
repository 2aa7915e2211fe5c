#!/usr/bin/env python
"""SLURM (issue 9 item 5): job RUNNING → kernel ready, and scheduler calls per minute with idle kernels.

Against the test bed's real single-node SLURM (``tests/testbed/slurm.py``: munged, slurmctld,
slurmd, slurmdbd and a private MariaDB), the node reached through the loopback sshd as the
benchmarks' own user ``hpcbench`` (added to SLURM accounting with ``sacctmgr``), with the
``hpc-slurm`` provisioner's defaults (``poll_interval`` 1 s, ``node_access`` jump).

* *RUNNING → ready*: a thread of this process runs ``squeue`` every 25 ms (as root, for the
  bench user's jobs) and notes when each job is first shown RUNNING; the time from there to the
  first ``execute_reply`` of ``pass`` is the figure. Split: when the provisioner itself saw
  RUNNING (its log line) and submit → RUNNING. Kernels started one after another.
* *Scheduler calls per minute*: slurmctld's own count of RPCs by user (``sdiag``, reset at the
  start of each window, read at its end), for the bench user, over a window with 1 and with 10
  idle kernels running (jobs started, nothing waiting), and with one job held in the queue
  (``--hold``: the provisioner polls squeue while a job waits). The 25 ms poller is off then.

SlurmCluster rewrites /etc/slurm/slurm.conf and restarts SLURM: this script refuses to run
while a pytest session that uses SLURM is running (``--force`` overrides). The partition is
given ``OverSubscribe=FORCE:16`` (a subclass of the test bed's cluster) so that ten one-CPU
jobs run at once on two cores.

Usage (as root): ``python benchmarks/slurm_start.py [--quick] [--rounds 5] [--window 60] [--force]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bed import Bed, quiet_logs, summarize, table  # noqa: E402
from kernel_start import close_pool, start_one, stop  # noqa: E402
from testbed.slurm import ACCOUNT, SlurmCluster  # noqa: E402

SLURM_TESTS = ("test_slurm_provisioner", "test_magics_slurm", "test_server_reattach", "test_fuzz", "tests/ ", "tests -")


def slurm_users_running() -> list[str]:
    """pytest sessions that (may) use SLURM: the SLURM test files, the fuzz tests, or a whole-suite run."""
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        if "pytest" not in line or "slurm_start" in line:
            continue
        args = line + " "
        whole_suite = re.search(r"pytest(\s+-\S+)*\s*$", line) or re.search(r"\stests/?\s", args)
        if whole_suite or any(name in args for name in SLURM_TESTS):
            found.append(line.strip()[:160])
    return found


class BenchSlurm(SlurmCluster):
    """The test bed's cluster with cores shared (ten idle kernels on two cores)."""

    def config_text(self) -> str:
        return re.sub(r"^(PartitionName=\S+ .*)$", r"\1 OverSubscribe=FORCE:16", super().config_text(), flags=re.M)


class RunningWatcher(threading.Thread):
    """squeue every ``interval`` s; first wall time each job of ``user`` is seen RUNNING."""

    def __init__(self, user: str, interval: float = 0.025) -> None:
        super().__init__(daemon=True)
        self.user, self.interval = user, interval
        self.first_running: dict[str, float] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            out = subprocess.run(["squeue", "-h", "-u", self.user, "-o", "%i %T"], capture_output=True, text=True)
            now = time.time()
            for line in out.stdout.splitlines():
                job, _, state = line.partition(" ")
                if state.strip() == "RUNNING":
                    self.first_running.setdefault(job, now)
            self.stopping.wait(self.interval)


class ProvisionerLog(logging.Handler):
    """When the provisioner logged its job's submission and RUNNING."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.submitted: dict[str, float] = {}
        self.running: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if m := re.search(r"submitted as job (\d+)", message):
            self.submitted.setdefault(m.group(1), record.created)
        elif m := re.search(r"job (\d+) RUNNING", message):
            self.running.setdefault(m.group(1), record.created)


def sdiag_by_user() -> dict[str, int]:
    out = subprocess.run(["sdiag"], capture_output=True, text=True, check=True).stdout
    _, _, users = out.partition("Remote Procedure Call statistics by user")
    counts = {}
    for line in users.splitlines():
        if m := re.match(r"\s+(\S+)\s*\(\s*\d+\)\s+count:(\d+)", line):
            counts[m.group(1)] = int(m.group(2))
    return counts


def sdiag_by_type() -> dict[str, int]:
    out = subprocess.run(["sdiag"], capture_output=True, text=True, check=True).stdout
    _, _, rest = out.partition("Remote Procedure Call statistics by message type")
    rest, _, _ = rest.partition("Remote Procedure Call statistics by user")
    counts = {}
    for line in rest.splitlines():
        if m := re.match(r"\s+(\S+)\s*\(\s*\d+\)\s+count:(\d+)", line):
            counts[m.group(1)] = int(m.group(2))
    return counts


async def window(user: str, seconds: float) -> tuple[float, float, str]:
    """Over ``seconds`` (sdiag reset first): the bench user's RPCs per minute, squeue calls per
    minute (``REQUEST_JOB_INFO_SINGLE``: one per ``squeue -j``; all users, nobody else calls
    SLURM then), and the RPC types seen."""
    subprocess.run(["sdiag", "--reset"], check=True, capture_output=True)
    await asyncio.sleep(seconds)
    by_user = sdiag_by_user()
    types = {k: v for k, v in sdiag_by_type().items() if k not in ("REQUEST_STATS_INFO", "REQUEST_RESET_STATS")}
    seen = ", ".join(f"{k} {v}" for k, v in sorted(types.items(), key=lambda kv: -kv[1])) or "none"
    return by_user.get(user, 0) * 60 / seconds, types.get("REQUEST_JOB_INFO_SINGLE", 0) * 60 / seconds, seen


async def run(args) -> None:
    bed = Bed()
    cluster = None
    watcher = RunningWatcher(bed.user.pw_name)
    handler = ProvisionerLog()
    errors = logging.StreamHandler()
    errors.setLevel(logging.INFO if args.verbose else logging.ERROR)
    for handler_ in (handler, errors):
        logging.getLogger("jupyter_hpc").addHandler(handler_)
    logging.getLogger("jupyter_hpc").setLevel(logging.INFO)
    logging.getLogger("jupyter_hpc").propagate = False
    user = bed.user.pw_name
    try:
        cluster = BenchSlurm(Path(tempfile.mkdtemp(prefix="jupyter-hpc-slurm-bench-"))).start()
        subprocess.run(["sacctmgr", "-i", "add", "user", user, f"DefaultAccount={ACCOUNT}"], check=True,
                       capture_output=True)
        config = bed.ssh_config(node_port=bed.sshd.port, queue_timeout=120)
        name = bed.kernelspec("bench-slurm", config, provisioner="hpc-slurm")
        held = bed.kernelspec("bench-slurm-held", dict(config, extra_directives=["--hold"],
                                                        queue_timeout=args.window + 30), provisioner="hpc-slurm")
        t0 = time.perf_counter()
        # One untimed start: imports, the first connection, the launcher staged once.
        km, client, *_ = await start_one(name, False)
        await stop([(km, client)])

        watcher.start()
        rounds = []
        for _ in range(args.rounds):
            start = time.time()
            km, client, _, ready_after = await start_one(name, False)
            ready = start + ready_after
            job = (await km.provisioner.get_provisioner_info())["job_id"]
            await stop([(km, client)])
            rounds.append({
                "total": ready - start,
                "submit_running": watcher.first_running[job] - handler.submitted.get(job, start),
                "running_ready": ready - watcher.first_running[job],
                "seen_ready": ready - handler.running.get(job, float("nan")),
                "seen_late": handler.running.get(job, float("nan")) - watcher.first_running[job],
            })
        watcher.stopping.set()
        watcher.join()

        calls = []
        for count in (1, 10):
            outcomes = await asyncio.gather(*(start_one(name, False) for _ in range(count)))
            await asyncio.sleep(2)  # the starts' own calls are done
            jobs = len(cluster.jobs(user))
            per_minute, squeues, types = await window(user, args.window)
            await stop([(km, client) for km, client, *_ in outcomes])
            calls.append([f"{count} idle kernel{'s' if count > 1 else ''}", str(jobs), f"{per_minute:.1f}",
                          f"{squeues:.1f}", types])

        # One job held in the queue: the provisioner polls while it waits.
        waiting = asyncio.ensure_future(start_one(held, False))
        await asyncio.sleep(3)
        per_minute, squeues, types = await window(user, args.window)
        jobs = len(cluster.jobs(user))
        cluster.cancel_all(user)  # the provisioner sees the job gone and fails the start
        try:
            await asyncio.wait_for(waiting, 30)
        except Exception:  # noqa: BLE001 - expected: "Job … ended before the kernel started"
            pass
        calls.append(["1 job waiting (held), no kernel", str(jobs), f"{per_minute:.1f}", f"{squeues:.1f}", types])
        elapsed = time.perf_counter() - t0
    except BaseException:
        print(bed.log_tail(), file=sys.stderr)
        if cluster is not None:
            print(cluster.log_tail(), file=sys.stderr)
        raise
    finally:
        watcher.stopping.set()
        close_pool()
        if cluster is not None:
            cluster.cancel_all(user)
            cluster.stop()
        bed.close()

    rows = []
    for key, label in (("running_ready", "squeue shows RUNNING → first execute_reply"),
                       ("seen_ready", "provisioner sees RUNNING → first execute_reply"),
                       ("seen_late", "squeue shows RUNNING → provisioner sees it"),
                       ("submit_running", "sbatch → squeue shows RUNNING"),
                       ("total", "start_kernel → first execute_reply (whole)")):
        s = summarize([r[key] for r in rounds])
        rows.append([label, f"{s['p50']:.3f}", f"{s['p90']:.3f}", f"{s['min']:.3f}–{s['max']:.3f}"])
    print(f"\n#### Job RUNNING → kernel ready, {args.rounds} kernels one after another (poll_interval 1 s, node_access jump)\n")
    print(table(["interval", "p50 s", "p90 s", "min–max s"], rows))
    print(f"\n#### Scheduler calls (slurmctld RPCs by the bench user, sdiag), {args.window:.0f} s window each\n")
    print(table(["state", "jobs in squeue", f"{user} RPCs per minute", "squeue calls per minute",
                 "RPC types in the window (all users)"], calls))
    print(f"\n(whole run {elapsed:.0f} s)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 kernels, 15 s windows")
    parser.add_argument("--rounds", type=int, help="kernels timed for RUNNING → ready (default 5, quick 3)")
    parser.add_argument("--window", type=float, help="seconds per scheduler-call window (default 60, quick 15)")
    parser.add_argument("--force", action="store_true", help="run even while SLURM test sessions run")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (3 if args.quick else 5)
    args.window = args.window or (15.0 if args.quick else 60.0)
    busy = slurm_users_running()
    if busy and not args.force:
        print("\n#### SLURM: not run\n\nSlurmCluster restarts SLURM, and these pytest sessions use it:\n")
        for line in busy:
            print(f"* `{line}`")
        return
    quiet_logs(args.verbose)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
