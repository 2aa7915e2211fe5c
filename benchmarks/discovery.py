"""Remote kernelspec discovery latency (issue 16): cold and warm, beside one plain `ssh host true`.

* cold: a RemoteKernelSpecManager made with no SSH connection open (as right after a server
  starts) until its first ``get_all_specs()`` returns the site's specs: login, one exec of the
  discovery snippet, parsing, logos mirrored. Baseline: one OpenSSH ``ssh host true`` (login
  and one exec), in the same run, interleaved.
* warm: ``get_all_specs()`` from the cache, as every later /api/kernelspecs poll.

Targets: cold <= 1.5x `ssh host true` for 50 specs; warm <= 5 ms.

    python benchmarks/discovery.py [--rounds 7] [--counts 1,50,500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path

from _bed import Bed, quiet_logs, summarize, table

from jupyter_hpc.ssh import get_pool, run_in_ssh_loop
from jupyter_hpc.ssh import pool as pool_module
from traitlets.config import Config

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def write_specs(bed: Bed, count: int) -> None:
    kernels = Path(bed.user.pw_dir) / ".local" / "share" / "jupyter" / "kernels"
    shutil.rmtree(kernels, ignore_errors=True)
    for i in range(count):
        directory = kernels / f"env{i:03d}"
        directory.mkdir(parents=True)
        (directory / "kernel.json").write_text(json.dumps({
            "argv": [bed.remote_python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": f"Env {i}", "language": "python"}))
        (directory / "logo-64x64.png").write_bytes(PNG)
    subprocess.run(["chown", "-R", f"{bed.user.pw_name}:", str(Path(bed.user.pw_dir) / ".local")], check=True)


async def drop_connections() -> None:
    async def close():
        await get_pool().close()
        pool_module._pool = None
    await run_in_ssh_loop(close())


async def cold_and_warm(config: Config, count: int, warm_reads: int) -> tuple[float, list[float]]:
    from jupyter_hpc.kernelspecs import RemoteKernelSpecManager

    await drop_connections()
    started = time.perf_counter()
    manager = RemoteKernelSpecManager(config=config)
    specs = await manager.get_all_specs()
    cold = time.perf_counter() - started
    # The bed's cluster also has kernelspecs of its own (its python's, a system R kernel):
    # listed too, as a login node's site kernels are; only ours are counted.
    ours = [name for name in specs if name.startswith("bench-login-env")]
    assert len(ours) == count, (len(ours), sorted(specs))
    warm = []
    for _ in range(warm_reads):
        t = time.perf_counter()
        await manager.get_all_specs()
        warm.append(time.perf_counter() - t)
    return cold, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--counts", default="1,50,500")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    quiet_logs(args.verbose)
    bed = Bed()
    config = Config({
        "HPCSites": {"sites": {"bench": bed.ssh_config()}},
        "RemoteKernelSpecManager": {"include_local": False, "first_list_timeout": 60.0},
    })
    rows = []
    try:
        for count in [int(c) for c in args.counts.split(",")]:
            write_specs(bed, count)
            ssh, cold, warm = [], [], []
            for _ in range(args.rounds):
                t = time.perf_counter()
                subprocess.run(bed.ssh_argv() + ["true"], check=True)
                ssh.append(time.perf_counter() - t)
                c, w = asyncio.run(cold_and_warm(config, count, 200))
                cold.append(c)
                warm.extend(w)
            s, c, w = summarize(ssh), summarize(cold), summarize(warm)
            rows.append([str(count), f"{s['p50'] * 1e3:.0f} ({s['min'] * 1e3:.0f}-{s['max'] * 1e3:.0f})",
                         f"{c['p50'] * 1e3:.0f} ({c['min'] * 1e3:.0f}-{c['max'] * 1e3:.0f})",
                         f"{c['p50'] / s['p50']:.2f}x",
                         f"{w['p50'] * 1e3:.3f} / {w['p99'] * 1e3:.3f}"])
    finally:
        shutil.rmtree(Path(bed.user.pw_dir) / ".local" / "share" / "jupyter", ignore_errors=True)
        bed.close()
    print(f"\nKernelspec discovery, {args.rounds} rounds per count; ms, p50 (min-max)\n")
    print(table(["remote specs", "ssh host true", "cold first list", "cold / ssh", "warm p50 / p99"], rows))


if __name__ == "__main__":
    main()
