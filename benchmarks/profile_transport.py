#!/usr/bin/env python
"""Where a forwarded round trip and a forwarded stream spend their time, in this process.

Starts one hpc-ssh kernel (scripts' default path: remote ipc, local TCP, the SSH layer in its
own thread; ``--adopted``: jupyter_server's, local ipc and the SSH layer in the async client's
own loop), then runs round trips (``pass``) and an iopub stream through it, reporting the CPU
time each thread of this process used per request / per MB (from /proc/self/task/*/stat), and
for the stream also the far side's processes (the kernel, sshd's session: the bench user's), so
the SSH layer's share is visible without a profiler. ``--before`` runs the forwarding as it was
before issue 30, for an A/B in alternated runs. Under a sampling profiler (py-spy pauses the
process per sample by default, which inflates the share of syscalls such as sends)::

    py-spy record --threads --idle -r 1000 -f raw -o /tmp/rt.txt -- python benchmarks/profile_transport.py
    python benchmarks/profile_transport.py --pyinstrument   # the SSH loop thread only

Usage (as root): ``python benchmarks/profile_transport.py [--requests 2000] [--mb 100] [--config k=v]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bed import Bed, quiet_logs  # noqa: E402
from transport import iopub_throughput, iopub_throughput_async, round_trip, round_trip_async  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) per thread name of this process."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    cpu = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tid = int(task.name)
        name = names.get(tid) or (task / "comm").read_text().strip()
        cpu[name] = cpu.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / TICK
    return cpu


def user_cpu(uid: int) -> dict[str, float]:
    """CPU seconds per command of every process of ``uid`` (the remote side: kernel, sshd's session)."""
    cpu: dict[str, float] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if proc.stat().st_uid != uid:
                continue
            name = (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace").rsplit("/", 1)[-1][:40]
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if "ipykernel" in (proc / "cmdline").read_bytes().decode(errors="replace"):
            name = "remote kernel"
        cpu[name] = cpu.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / TICK
    return cpu


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before.get(name, 0.0) for name in after if after[name] - before.get(name, 0.0) > 0}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--local", action="store_true", help="profile a LocalProvisioner kernel instead")
    parser.add_argument("--config", action="append", default=[], help="extra provisioner config, key=json")
    parser.add_argument("--mb-only", action="store_true", help="skip the round trips (profile the stream only)")
    parser.add_argument("--cipher", help="experiment: ask asyncssh for this cipher first (e.g. aes128-gcm@openssh.com)")
    parser.add_argument("--max-pktsize", type=int, help="experiment: max SSH packet size our forward channels accept")
    parser.add_argument("--switch-interval", type=float, help="experiment: sys.setswitchinterval(seconds)")
    parser.add_argument("--client-process", action="store_true",
                        help="experiment: run the round trips from a second process (no GIL shared with the SSH loop)")
    parser.add_argument("--count-packets", action="store_true", help="count SSH packets sent and received per round trip")
    parser.add_argument("--pyinstrument", action="store_true", help="profile the SSH loop thread with pyinstrument")
    parser.add_argument("--before", action="store_true",
                        help="experiment: as before issue 30: asyncssh's own forwards, an ignore packet before each "
                        "packet, a send per packet (jupyter_hpc.ssh.forward, ignore_packets and coalesce not used)")
    parser.add_argument("--adopted", action="store_true",
                        help="jupyter_server's path: AsyncKernelManager and AsyncKernelClient, local ipc, the SSH "
                        "layer adopted into their asyncio loop (one thread does both)")
    parser.add_argument("--client-loop", choices=["asyncio", "uvloop"], default="asyncio",
                        help="with --adopted: the async client's loop (jupyter_server's is asyncio's; uvloop for comparison)")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop",
                        help="the SSH thread's event loop (JUPYTER_HPC_SSH_LOOP; uvloop is the default where installed)")
    args = parser.parse_args(argv)
    os.environ["JUPYTER_HPC_SSH_LOOP"] = args.loop
    print(f"SSH thread event loop: {args.loop}")
    quiet_logs(False)
    if args.cipher:
        patch_cipher(args.cipher)
    if args.max_pktsize:
        patch_max_pktsize(args.max_pktsize)
    counts = count_packets() if args.count_packets else None
    if args.before:
        import jupyter_hpc.ssh.pool
        from transport import asyncssh_forwards

        jupyter_hpc.ssh.pool.skip_ignore_packets = jupyter_hpc.ssh.pool.coalesce_writes = lambda conn: False
        asyncssh_forwards().__enter__()  # for the whole run
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)

    import jupyter_client

    bed = Bed()
    try:
        extra = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.config)}
        if args.adopted:
            extra.setdefault("local_transport", "ipc")
            name = bed.kernelspec("prof-local") if args.local else bed.kernelspec("prof-ssh", bed.ssh_config(**extra))
            factory = asyncio.new_event_loop
            if args.client_loop == "uvloop":
                import uvloop

                factory = uvloop.new_event_loop
            print(f"async client's loop (the SSH layer's too): {args.client_loop}")
            with asyncio.Runner(loop_factory=factory) as runner:
                runner.run(adopted(name, args.requests, args.mb))
            return
        name = bed.kernelspec("prof-local") if args.local else bed.kernelspec("prof-ssh", bed.ssh_config(**extra))
        km = jupyter_client.KernelManager(kernel_name=name)
        km.start_kernel()
        client = km.client()
        client.start_channels()
        client.wait_for_ready(timeout=60)
        for _ in range(50):
            round_trip(client)
        profiler = None
        if args.pyinstrument:
            profiler = start_loop_profiler()

        if args.client_process:
            round_trips_elsewhere(km.get_connection_info(session=False), args.requests)
        if counts is not None:
            counts.update(sent=0, received=0)
        before, start = thread_cpu(), time.perf_counter()
        samples = sorted(round_trip(client) for _ in range(0 if args.mb_only else args.requests)) or [0.0]
        wall = time.perf_counter() - start
        used = delta(before, thread_cpu())
        if counts is not None:
            n = max(1, len(samples))
            print(f"SSH packets per round trip: {counts['sent'] / n:.1f} sent, {counts['received'] / n:.1f} received")
            counts.update(sent=0, received=0)
        print(f"{args.requests} round trips: p50 {samples[len(samples) // 2] * 1e3:.3f} ms, wall {wall:.1f} s")
        for thread, seconds in sorted(used.items(), key=lambda kv: -kv[1]):
            print(f"  {thread:28s} {seconds / args.requests * 1e6:8.0f} µs CPU per round trip")

        nbytes = args.mb * 1_000_000 // 65536 * 65536
        if profiler is not None and not args.mb_only:
            stop_loop_profiler(profiler)
            profiler = None
        uid = bed.user.pw_uid
        before, start, remote_before = thread_cpu(), time.perf_counter(), user_cpu(uid)
        rate = iopub_throughput(client, nbytes, 65536)
        used = delta(before, thread_cpu())
        used.update({f"(remote) {k}": v for k, v in delta(remote_before, user_cpu(uid)).items()})
        print(f"iopub {nbytes / 1e6:.0f} MB: {rate:.1f} MB/s")
        if counts is not None:
            print(f"SSH packets per MB: {counts['sent'] / (nbytes / 1e6):.1f} sent, "
                  f"{counts['received'] / (nbytes / 1e6):.1f} received")
        for thread, seconds in sorted(used.items(), key=lambda kv: -kv[1]):
            print(f"  {thread:28s} {seconds / (nbytes / 1e6) * 1e3:8.2f} ms CPU per MB")

        if profiler is not None:
            stop_loop_profiler(profiler)
        client.stop_channels()
        km.shutdown_kernel(now=False)
    finally:
        bed.close()


async def adopted(kernel_name: str, requests: int, mb: int) -> None:
    """Round trips and a stream with the SSH layer in this asyncio loop, as in a jupyter_server."""
    from jupyter_client import AsyncKernelManager

    from jupyter_hpc.ssh.loop import adopt_loop

    adopt_loop(asyncio.get_running_loop())
    km = AsyncKernelManager(kernel_name=kernel_name)
    await km.start_kernel()
    client = km.client()
    client.start_channels()
    await client.wait_for_ready(timeout=60)
    try:
        for _ in range(50):
            await round_trip_async(client)
        before, start = thread_cpu(), time.perf_counter()
        samples = sorted([await round_trip_async(client) for _ in range(requests)]) or [0.0]
        wall = time.perf_counter() - start
        used = delta(before, thread_cpu())
        print(f"{requests} round trips: p50 {samples[len(samples) // 2] * 1e3:.3f} ms, wall {wall:.1f} s")
        for thread, seconds in sorted(used.items(), key=lambda kv: -kv[1]):
            print(f"  {thread:28s} {seconds / max(1, requests) * 1e6:8.0f} µs CPU per round trip")
        nbytes = mb * 1_000_000 // 65536 * 65536
        before = thread_cpu()
        rate = await iopub_throughput_async(client, nbytes, 65536)
        used = delta(before, thread_cpu())
        print(f"iopub {nbytes / 1e6:.0f} MB: {rate:.1f} MB/s")
        for thread, seconds in sorted(used.items(), key=lambda kv: -kv[1]):
            print(f"  {thread:28s} {seconds / (nbytes / 1e6) * 1e3:8.2f} ms CPU per MB")
    finally:
        client.stop_channels()
        await km.shutdown_kernel(now=False)


def count_packets() -> dict[str, int]:
    """Experiment only: count the packets asyncssh sends and receives on its connections."""
    import asyncssh.connection as connection

    counts = {"sent": 0, "received": 0}
    send, recv = connection.SSHConnection.send_packet, connection.SSHConnection._recv_packet

    def send_packet(self, *a, **kw):
        counts["sent"] += 1
        return send(self, *a, **kw)

    def recv_packet(self, *a, **kw):
        counts["received"] += 1
        return recv(self, *a, **kw)

    connection.SSHConnection.send_packet, connection.SSHConnection._recv_packet = send_packet, recv_packet
    return counts


def patch_max_pktsize(size: int) -> None:
    """Experiment only: forward channels accept SSH packets up to ``size`` (asyncssh: 32 KiB)."""
    import asyncssh

    cls = asyncssh.SSHClientConnection
    for name in ("create_connection", "create_unix_connection"):
        original = getattr(cls, name)

        def patched(self, *a, _original=original, **kw):
            kw.setdefault("max_pktsize", size)
            kw.setdefault("window", max(2 * 1024 * 1024, 8 * size))
            return _original(self, *a, **kw)

        setattr(cls, name, patched)


def patch_cipher(cipher: str) -> None:
    """Experiment only: prefer ``cipher`` in every asyncssh connection this process opens."""
    from jupyter_hpc.ssh import target

    original = target.SSHTarget.connect_options

    def connect_options(self):
        options = original(self)
        options["encryption_algs"] = [cipher]
        return options

    target.SSHTarget.connect_options = connect_options


def round_trips_elsewhere(info: dict, requests: int) -> None:
    """Round trips from a child process, so the SSH loop thread has this process's GIL alone."""
    import subprocess

    info = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in info.items()}
    code = (
        "import json, sys, time\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
        "from jupyter_client import BlockingKernelClient\n"
        "from transport import round_trip\n"
        "c = BlockingKernelClient(); c.load_connection_info(json.loads(sys.argv[1])); c.start_channels()\n"
        "[round_trip(c) for _ in range(50)]\n"
        "s = sorted(round_trip(c) for _ in range(int(sys.argv[2])))\n"
        "print(f'round trips from another process: p50 {s[len(s)//2]*1e3:.3f} ms')\n"
        "c.stop_channels()\n"
    )
    subprocess.run([sys.executable, "-c", code, json.dumps(info), str(requests)], check=True)


def start_loop_profiler():
    """A pyinstrument Profiler started inside the SSH loop's thread (it samples that thread)."""
    from pyinstrument import Profiler

    from jupyter_hpc.ssh import run_in_ssh_loop_sync

    profiler = Profiler(interval=0.0002, async_mode="disabled")

    async def start() -> None:
        profiler.start()

    run_in_ssh_loop_sync(start())
    return profiler


def stop_loop_profiler(profiler) -> None:
    from jupyter_hpc.ssh import run_in_ssh_loop_sync

    async def stop() -> None:
        profiler.stop()

    run_in_ssh_loop_sync(stop())
    print(profiler.output_text(unicode=True, color=False, show_all=True))


if __name__ == "__main__":
    main()
