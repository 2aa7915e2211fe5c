"""The cluster's files: list a 10,000-entry folder and open a 10 MB notebook.

Side by side in one run, on the same files:
- ``SFTPContentsManager.get`` over the bed's sshd (the pooled connection, warm);
- jupyter_server's ``AsyncLargeFileManager.get`` on the same folder through the local disk;
- OpenSSH ``sftp -b`` listing the folder (``ls -1``), its login taken out: the time of a batch
  of ``1 + N`` listings minus a batch of one, over N.

Targets (issue 17): listing ≤ 1.5× sftp, ≤ 3× local.

    python benchmarks/contents.py [--rounds 9] [--entries 10000] [--notebook-mb 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

from _bed import Bed, summarize, table
from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from traitlets.config import Config

from jupyter_hpc.contents import SFTPContentsManager


def make_files(home: Path, entries: int, notebook_mb: int, owner: pwd.struct_passwd) -> Path:
    base = home / "bench-contents"
    shutil.rmtree(base, ignore_errors=True)
    many = base / "many"
    many.mkdir(parents=True)
    for number in range(entries):
        suffix = (".txt", ".ipynb", ".py", ".csv")[number % 4]
        (many / f"file-{number:05d}{suffix}").write_text("x\n")
    cell_output = {"output_type": "stream", "name": "stdout", "text": "y" * 1000 + "\n"}
    cells = []
    while len(json.dumps(cells)) < notebook_mb * 1_000_000:
        cells.append({"cell_type": "code", "execution_count": 1, "id": f"c{len(cells)}", "metadata": {},
                      "source": "print('y' * 1000)", "outputs": [cell_output] * 10})
    notebook = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (base / "big.ipynb").write_text(json.dumps(notebook))
    subprocess.run(["chown", "-R", f"{owner.pw_uid}:{owner.pw_gid}", str(base)], check=True)
    return base


async def timed(call, rounds: int) -> list[float]:
    await call()  # warm: connection, roots, caches
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return times


def sftp_listing(bed: Bed, folder: str, rounds: int) -> list[float]:
    daemon = bed.sshd
    argv = ["sftp", "-F", "/dev/null", "-i", str(daemon.client_key), "-o", f"UserKnownHostsFile={daemon.known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-P", str(daemon.port)]
    batches = {}
    for count in (1, 11):
        path = bed.root / f"batch-{count}"
        path.write_text(f"ls -1 {folder}\n" * count)
        batches[count] = path

    def run(count: int) -> float:
        started = time.perf_counter()
        subprocess.run([*argv, "-b", str(batches[count]), f"{bed.user.pw_name}@{daemon.host}"],
                       check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - started

    run(1)
    return [(run(11) - run(1)) / 10 for _ in range(rounds)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--notebook-mb", type=int, default=10)
    args = parser.parse_args()
    bed = Bed()
    try:
        home = Path(bed.user.pw_dir)
        base = make_files(home, args.entries, args.notebook_mb, bed.user)
        site = bed.ssh_config()
        site["roots"] = {"home": "~"}
        remote = SFTPContentsManager(config=Config({"HPCSites": {"sites": {"bench": site}}}))
        local = AsyncLargeFileManager(root_dir=str(home))
        folder, notebook = "bench-contents/many", "bench-contents/big.ipynb"
        results = {
            ("list", "SFTPContentsManager"): asyncio.run(timed(lambda: remote.get(folder), args.rounds)),
            ("list", "AsyncLargeFileManager (local)"): asyncio.run(timed(lambda: local.get(folder), args.rounds)),
            ("list", "sftp -b (OpenSSH)"): sftp_listing(bed, str(base / "many"), args.rounds),
            ("open", "SFTPContentsManager"): asyncio.run(timed(lambda: remote.get(notebook), args.rounds)),
            ("open", "AsyncLargeFileManager (local)"): asyncio.run(timed(lambda: local.get(notebook), args.rounds)),
        }
        rows = []
        for what, baseline_names in (("list", ("sftp -b (OpenSSH)", "AsyncLargeFileManager (local)")),
                                     ("open", ("AsyncLargeFileManager (local)",))):
            ours = summarize(results[(what, "SFTPContentsManager")])["p50"]
            for (kind, name), times in results.items():
                if kind != what:
                    continue
                stats = summarize(times)
                ratios = ", ".join(f"{ours / summarize(results[(what, b)])['p50']:.2f}× {b.split()[0]}"
                                   for b in baseline_names if b != name) if name == "SFTPContentsManager" else ""
                rows.append([
                    f"{what} {'%d entries' % args.entries if what == 'list' else '%d MB notebook' % args.notebook_mb}",
                    name, f"{stats['p50'] * 1000:.1f}", f"{stats['min'] * 1000:.1f}–{stats['max'] * 1000:.1f}", ratios,
                ])
        print(table(["operation", "how", "p50 ms", "min–max ms", "ours vs baseline"], rows))
        shutil.rmtree(base, ignore_errors=True)
    finally:
        bed.close()
    os._exit(0)  # the SSH loop's thread holds the pooled connection


if __name__ == "__main__":
    main()
