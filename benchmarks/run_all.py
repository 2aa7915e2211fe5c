#!/usr/bin/env python
"""Run every benchmark in turn and print their tables; optionally put them in the README.

Usage (as root)::

    python benchmarks/run_all.py [--quick] [--update-readme]

``--quick`` is passed on to each script. ``kernel_start.py`` re-executes itself in the peers'
venv (``_peers.py``); ``slurm_start.py`` prints "not run" while pytest sessions use SLURM. ``--update-readme`` replaces the block between the
``results`` markers of benchmarks/README.md with this run's tables, the date and the machine.
A full run takes about seven minutes on two cores (SLURM's three 60 s windows); ``--quick`` about two.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["transport.py", "kernel_start.py", "slurm_start.py"]
START, END = "<!-- results:start -->", "<!-- results:end -->"


def machine() -> str:
    load = os.getloadavg()[0]
    versions = []
    for package in ("jupyter_client", "ipykernel", "asyncssh", "pyzmq"):
        try:
            from importlib.metadata import version

            versions.append(f"{package} {version(package)}")
        except Exception:  # noqa: BLE001 - a missing package is only not listed
            pass
    ssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip().split(",")[0]
    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} cores, load {load:.1f} at start; "
        f"Python {platform.python_version()}; {', '.join(versions)}; {ssh}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--update-readme", action="store_true")
    args = parser.parse_args()

    header = f"Run {datetime.datetime.now():%Y-%m-%d %H:%M}{' (--quick)' if args.quick else ''}: {machine()}"
    print(header)
    outputs = []
    start = time.perf_counter()
    for script in SCRIPTS:
        argv = [sys.executable, str(HERE / script)] + (["--quick"] if args.quick else [])
        print(f"\n## {script}", flush=True)
        result = subprocess.run(argv, stdout=subprocess.PIPE, text=True)
        print(result.stdout, end="", flush=True)
        if result.returncode != 0:
            raise SystemExit(f"{script} failed with exit status {result.returncode}")
        outputs.append(f"### `{script}{' --quick' if args.quick else ''}`\n{result.stdout.rstrip()}\n")
    print(f"\nall benchmarks: {time.perf_counter() - start:.0f} s")

    if args.update_readme:
        readme = HERE / "README.md"
        text = readme.read_text()
        before, _, rest = text.partition(START)
        _, _, after = rest.partition(END)
        block = "\n".join([START, "", header, "", *outputs, END])
        readme.write_text(before + block + after)
        print(f"updated {readme}")


if __name__ == "__main__":
    main()
