#!/usr/bin/env python
"""Run every benchmark in turn and print their tables; optionally put them in the README.

Usage (as root)::

    python benchmarks/run_all.py [--quick] [--update-readme] [--only transport.py,discovery.py]

Each script prints its variants against their baseline measured in the same run. ``--quick``
gives each script its own lighter arguments (``QUICK``). ``kernel_start.py`` re-executes itself
in the peers' venv (``_peers.py``); ``slurm_start.py`` prints "not run" while a pytest session
uses SLURM. ``terminal.py`` and ``proxy.py`` are run when they exist. A script that fails is
reported as such and the others still run.

``--update-readme`` replaces the block between the ``results`` markers of benchmarks/README.md
with this run's tables, the date, the machine and the load before and after each script (the
machine is shared: read the min–max columns and the load together). With ``--only``, the other
scripts' tables already in that block are kept.
A full run takes about 25 minutes on two cores (hub_login's twenty servers, SLURM's three 60 s
windows); ``--quick`` about 10.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
START, END = "<!-- results:start -->", "<!-- results:end -->"

# In README order; each with the arguments of a --quick run.
QUICK: dict[str, list[str]] = {
    "transport.py": ["--quick"],
    "kernel_start.py": ["--quick"],
    "slurm_start.py": ["--quick"],
    "discovery.py": ["--rounds", "3", "--counts", "1,50"],
    "contents.py": ["--rounds", "3"],
    "contents_upload.py": ["--mb", "50"],
    "keyservice.py": ["--rounds", "5", "--users", "6"],
    "hub_login.py": ["--users", "6", "--no-flow"],
    "squeue_parse.py": ["--repeat", "3"],
    "terminal.py": ["--quick"],
    "proxy.py": ["--rounds", "1", "--small", "200", "--mb", "20"],
}
TIMEOUT = 1200  # seconds one script may run before it is ended and reported as failed
# Not here: load.py (a report of one load, no baseline) and profile_transport.py (a profiler).


def machine() -> str:
    versions = []
    for package in ("jupyter_client", "jupyter_server", "ipykernel", "asyncssh", "pyzmq", "jupyterhub"):
        try:
            from importlib.metadata import version

            versions.append(f"{package} {version(package)}")
        except Exception:  # noqa: BLE001 - a missing package is only not listed
            pass
    ssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip().split(",")[0]
    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} cores; "
        f"Python {platform.python_version()}; {', '.join(versions)}; {ssh}"
    )


def load() -> str:
    return "/".join(f"{value:.1f}" for value in os.getloadavg())


def section(script: str, quick: bool, body: str, note: str) -> str:
    body = body.strip("\n")
    if not any(line.startswith("|") for line in body.splitlines()):
        body = f"```text\n{body}\n```"  # a script that prints aligned text, not Markdown
    return f"### `{script}{' --quick' if quick else ''}`\n\n{note}\n{body}\n"


def existing_sections(text: str) -> dict[str, str]:
    """The per-script sections already between the markers (kept by ``--only``)."""
    _, _, rest = text.partition(START)
    block, _, _ = rest.partition(END)
    found = {}
    for match in re.finditer(r"^### `(\S+?\.py)[^`]*`\n.*?(?=^### `|\Z)", block, re.S | re.M):
        found[match.group(1)] = match.group(0).rstrip() + "\n"
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--update-readme", action="store_true")
    parser.add_argument("--only", help="comma-separated scripts to run (default: all)")
    args = parser.parse_args()
    scripts = [name for name in QUICK if (HERE / name).exists()]
    if args.only:
        wanted = [name.strip() for name in args.only.split(",")]
        unknown = sorted(set(wanted) - set(scripts))
        if unknown:
            raise SystemExit(f"no such benchmark here: {', '.join(unknown)} (there are: {', '.join(scripts)})")
        scripts = [name for name in scripts if name in wanted]

    started = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC{' (--quick)' if args.quick else ''}"
    header = (f"Run {started}: {machine()}" if not args.only else
              f"Last refreshed {started} ({', '.join(scripts)}; the others kept from earlier runs, "
              f"each dated under its heading): {machine()}")
    print(header)
    outputs: dict[str, str] = {}
    failed = []
    start = time.perf_counter()
    for script in scripts:
        argv = [sys.executable, str(HERE / script)] + (QUICK[script] if args.quick else [])
        print(f"\n## {script}", flush=True)
        before, t0 = load(), time.perf_counter()
        try:
            result = subprocess.run(argv, stdout=subprocess.PIPE, text=True, timeout=TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            result = subprocess.CompletedProcess(argv, f"timed out after {TIMEOUT} s", out)
        print(result.stdout, end="", flush=True)
        note = (f"Ended {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC after "
                f"{time.perf_counter() - t0:.0f} s; load average {before} before and {load()} after "
                f"(1/5/15 min; {os.cpu_count()} cores).\n")
        if result.returncode != 0:
            failed.append(script)
            note += f"\n**Failed ({result.returncode})**; its output up to then:\n"
        outputs[script] = section(script, args.quick, result.stdout, note)
    print(f"\nall benchmarks: {time.perf_counter() - start:.0f} s" + (f"; failed: {', '.join(failed)}" if failed else ""))

    if args.update_readme:
        readme = HERE / "README.md"
        text = readme.read_text()
        before, _, rest = text.partition(START)
        _, _, after = rest.partition(END)
        kept = existing_sections(text) if args.only else {}
        merged = [outputs.get(name) or kept.get(name) for name in QUICK]
        block = "\n".join([START, "", header, "", *[m for m in merged if m], END])
        readme.write_text(before + block + after)
        print(f"updated {readme}")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
