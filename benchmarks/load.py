#!/usr/bin/env python
"""Many users' servers, each running hpc-ssh kernels, all executing cells at once.

The same bed as tests/test_load.py (issue 8, "Load"; see tests/load_bed.py): one sshd, one
jupyter_server per user run as that user with HPCMappingKernelManager and an hpc-ssh
kernelspec, ``--kernels`` kernels per server started over REST, then one websocket client
thread per kernel running ``n += 1; print(n, sum(range(10000)))`` about every ``--period``
seconds for ``--seconds``. Prints the report (errors, cell round trips, per-server RSS and
CPU, the users' kernels' RSS, start and shutdown times); unlike the test it asserts nothing.

Usage (as root): ``python benchmarks/load.py [--users 20] [--kernels 3] [--seconds 60]
[--period 1.0] [--report FILE] [--keep-logs]``. The users are hpcload01..hpcloadNN.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from load_bed import LoadBed  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--kernels", type=int, default=3, help="kernels per user's server")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the load runs")
    parser.add_argument("--period", type=float, default=1.0, help="seconds between one kernel's cells")
    parser.add_argument("--report", type=Path, help="also write the report to this file")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' and sshd's logs in /tmp")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: it creates the load users and starts sshd")
    if not 1 <= args.users <= 99:
        raise SystemExit("--users must be between 1 and 99")
    if args.keep_logs:
        os.environ["JUPYTER_HPC_KEEP_LOAD_LOGS"] = "1"
    started = time.monotonic()
    bed = LoadBed(args.users, args.kernels)
    try:
        result = bed.run(duration=args.seconds, period=args.period)
    finally:
        bed.close()
        if args.keep_logs:
            print(f"logs kept in {bed.base}")
    report = result.report() + f"\n  whole run {time.monotonic() - started:.1f} s\n"
    print(report)
    if args.report:
        args.report.write_text(report)
    return 1 if result.errors or result.leftovers else 0


if __name__ == "__main__":
    sys.exit(main())
