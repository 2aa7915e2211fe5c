#!/usr/bin/env python
"""Kernel start to first execute_reply, and many kernels at once: local vs hpc-ssh vs the peers.

Every variant runs the same ipykernel (the test bed's venv python, run by the benchmark's own
user) against the same sshd, in one run, interleaved round by round. The sshd runs in a network
namespace of its own (``_netns.py``: 10.231.0.2 port 22, over a veth pair from 10.231.0.1), so
that no peer sees the remote host as local (``--loopback``: a loopback sshd, without peers):

* ``local``         LocalProvisioner: the floor.
* ``hpc-ssh cold``  its pooled connection is closed before each start: TCP connect, key exchange and
                    login are in the timing.
* ``hpc-ssh warm``  the pooled connection is kept: only the launch and the forwards.
* ``hpc-ssh pre-started`` with ``pool_size=2``: the kernel is already running when asked
                    for (the pool is given time to refill between rounds): only the attach.
* ``hpc-ssh pre-started, in a notebook's folder`` the same, started as jupyter_server starts a
                    notebook's kernel (``remote_cwd``, ``JPY_SESSION_NAME``): the attach moves the
                    kernel there and gives it the name, one request more.
* ``remote_ikernel``  remote_ikernel 0.4.6 ``--interface ssh`` with an OpenSSH config Host entry
                    (``_peers.py``): ``ssh`` into a login shell, the connection file ``echo``-ed,
                    then ``ssh -L`` for the five ports.
* ``gateway DistributedProvisioner``  gateway_provisioners 0.5.0, kernelspec from its
                    ``jupyter-ssh-spec install --remote-hosts 10.231.0.2``: paramiko runs the
                    launcher with ``nohup``, which answers over TCP to the response address.

The peers live in their own venv (``/opt/jupyter-hpc-bench/peers``, with this Python's
packages visible); the script re-executes itself with that venv's python. A peer that cannot
be installed or started becomes a row with its error.

One timing runs from ``AsyncKernelManager.start_kernel()`` to the first ``execute_reply`` of
``pass`` (no ``wait_for_ready``: its fixed 0.2 s iopub flush would hide the differences);
``start_kernel`` returning is reported as a split.

Fan-out starts 1, 10 and 30 kernels at once (``asyncio.gather``) and reports the wall time to
the last first-reply, this process's RSS growth, and the number of SSH connections in the
pool (and logins sshd accepted). The pool is closed before each hpc-ssh fan-out, so
concurrent first use is part of it.

Usage (as root): ``python benchmarks/kernel_start.py [--quick] [--rounds 7] [--fanout 1,10,30]
[--no-peers] [--loopback]``.
"""

from __future__ import annotations

import argparse
import contextlib
import asyncio
import os
import queue
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bed import Bed, quiet_logs, rss_mb, summarize, table  # noqa: E402


def pool_connections() -> int:
    from jupyter_hpc.ssh import get_pool, run_in_ssh_loop_sync

    async def count() -> int:
        return len(get_pool().connections())

    return run_in_ssh_loop_sync(count())


def drain_pools() -> None:
    from jupyter_hpc.provisioners.kernel_pool import KernelPool
    from jupyter_hpc.ssh import run_in_ssh_loop_sync

    try:
        run_in_ssh_loop_sync(KernelPool.drain_all(), timeout=30)
    except Exception as exc:  # noqa: BLE001 - reported, the bed is closed anyway
        print(f"kernel pool not drained: {exc}", file=sys.stderr)


def close_pool(known_hosts: str | None = None) -> None:
    """Close every pooled SSH connection, or only those verified against ``known_hosts``: the
    cold variant closes its own connection only, so the pre-started pool's kernels (on a
    connection of their own) are not orphaned and restarted during the cold start."""
    from jupyter_hpc.ssh import get_pool, run_in_ssh_loop_sync

    async def close() -> None:
        connections = get_pool().connections()
        if known_hosts is None:
            await get_pool().close()
        else:
            connections = [c for c in connections if c.target.known_hosts == known_hosts]
            for connection in connections:
                connection.conn.close()
        for connection in connections:
            await connection.wait_closed()

    run_in_ssh_loop_sync(close(), timeout=30)


PEERS = ("remote_ikernel", "gateway DistributedProvisioner")
NOTEBOOK_POOL = "hpc-ssh pre-started, in a notebook's folder"
QUIET = ("local", "remote_ikernel")  # a local process whose output would land in the table


# What jupyter_server passes to a notebook's kernel start (with SFTPContentsManager).
AS_A_NOTEBOOK = {"remote_cwd": "/tmp", "env": {"JPY_SESSION_NAME": "/tmp/analysis.ipynb"}}


async def start_one(kernel_name: str, local: bool, reply_timeout: float = 120,
                    tolerate_no_reply: bool = False, **start: Any) -> tuple[object, object, float, float | None]:
    """Start a kernel (``start``: start_kernel's keywords), send ``pass``, wait for the reply;
    return (km, client, t_started, t_reply)."""
    from jupyter_client import AsyncKernelManager

    start_time = time.perf_counter()
    km = AsyncKernelManager(kernel_name=kernel_name)
    kw = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL} if local else dict(start)
    await km.start_kernel(**kw)
    started = time.perf_counter() - start_time
    client = km.client()
    client.start_channels()
    msg_id = client.execute("pass", store_history=False)
    deadline = start_time + reply_timeout
    while True:
        try:
            msg = await client.get_shell_msg(timeout=max(0.1, deadline - time.perf_counter()))
        except queue.Empty:
            if not tolerate_no_reply:
                raise
            return km, client, started, None  # reported as a failed start
        if msg["parent_header"].get("msg_id") == msg_id:
            break
    return km, client, started, time.perf_counter() - start_time


async def stop(pairs) -> None:
    async def one(km, client) -> None:
        client.stop_channels()
        await km.shutdown_kernel(now=False)

    await asyncio.gather(*(one(km, client) for km, client in pairs))


async def pool_refilled(timeout: float = 60) -> None:
    """Wait until every kernel pool is full again and starts nothing. Before every variant's
    start, not only the pre-started ones': a refill (a kernel's whole start and warm-up, a
    second after each take) must not land in another variant's timing, nor is it timed."""
    from jupyter_hpc.provisioners.kernel_pool import KernelPool

    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        pools = list(KernelPool._pools.values())
        if all(len(pool.ready) >= pool.size and not pool.starting for pool in pools):
            if all(remote.exit_status is None for pool in pools for remote, _, _ in pool.ready):
                return
        await asyncio.sleep(0.05)


def peer_quiet_between_starts(variant: str):
    """gateway's ResponseManager blocks this process's event loop while it exists: only during
    gateway's own starts (see ``_peers.gateway_response_manager_only_while_starting``)."""
    if variant == "gateway DistributedProvisioner":
        import _peers

        return _peers.gateway_response_manager_only_while_starting()
    return contextlib.nullcontext()


async def single_starts(bed: Bed, names: dict[str, str], rounds: int,
                        errors: dict[str, str]) -> dict[str, dict[str, list[float]]]:
    # One untimed start each: imports, first connection, the OS's file cache. A peer that
    # fails here is reported with its error and left out of the rounds.
    for variant, kernel_name in list(names.items()):
        try:
            with peer_quiet_between_starts(variant):
                km, client, *_ = await asyncio.wait_for(start_one(kernel_name, variant in QUIET), 90)
                await stop([(km, client)])
        except Exception as exc:  # noqa: BLE001
            if variant not in PEERS:
                raise
            lines = str(exc).strip().splitlines() or [""]
            errors[variant] = f"start failed: {type(exc).__name__}: {lines[-1][:300]}"
            del names[variant]
    results = {variant: {"ready": [], "started": [], "logins": []} for variant in names}
    for _ in range(rounds):
        for variant, kernel_name in names.items():
            if variant == "hpc-ssh cold":
                close_pool(str(bed.sshd.known_hosts))
            elif variant == "hpc-ssh warm" and pool_connections() == 0:
                km, client, *_ = await start_one(kernel_name, False)  # reopen, untimed
                await stop([(km, client)])
            await pool_refilled()
            logins = bed.sshd.accepted_logins()
            with peer_quiet_between_starts(variant):
                km, client, started, ready = await start_one(
                    kernel_name, variant in QUIET, **(AS_A_NOTEBOOK if variant == NOTEBOOK_POOL else {}))
                results[variant]["logins"].append(bed.sshd.accepted_logins() - logins)
                await stop([(km, client)])
            results[variant]["ready"].append(ready)
            results[variant]["started"].append(started)
    return results


STOCK = "hpc-ssh, sshd MaxSessions 10"  # OpenSSH's default; the bench's sshd allows 200


async def fan_out(bed: Bed, names: dict[str, str], counts: list[int]) -> list[list[str]]:
    rows = []
    single: dict[str, float] = {}
    local_wall: dict[int, float] = {}
    for count in counts:
        for variant in ("local", "hpc-ssh", STOCK):
            kernel_name = names[{"local": "local", "hpc-ssh": "hpc-ssh warm"}.get(variant, variant)]
            sshd = bed.sshd_stock if variant == STOCK else bed.sshd
            if variant != "local":
                close_pool()
            logins = sshd.accepted_logins()
            rss_before = rss_mb()
            start = time.perf_counter()
            outcomes = await asyncio.gather(*(start_one(kernel_name, variant == "local", 60, True) for _ in range(count)))
            wall = time.perf_counter() - start
            failed = sum(1 for *_, ready in outcomes if ready is None)
            rss_after = rss_mb()
            connections = pool_connections() if variant != "local" else 0
            logins = sshd.accepted_logins() - logins
            await stop([(km, client) for km, client, *_ in outcomes])
            single.setdefault(variant, wall)
            if variant == "local":
                local_wall[count] = wall
            per_kernel = sorted(ready for *_, ready in outcomes if ready is not None) or [float("nan")]
            launched = sorted(started for _, _, started, _ in outcomes)
            rows.append([
                variant, str(count), f"{wall:.2f}", f"{wall / single[variant]:.2f}×",
                f"{wall / local_wall[count]:.2f}×",
                f"{launched[0]:.2f}–{launched[-1]:.2f}", f"{per_kernel[0]:.2f}–{per_kernel[-1]:.2f}",
                f"{rss_after - rss_before:+.1f}", f"{rss_after:.0f}",
                str(connections) if variant != "local" else "–",
                str(logins) if variant != "local" else "–",
                str(failed),
            ])
    return rows


def peer_specs(bed: Bed, names: dict[str, str], errors: dict[str, str], peers_error: str | None) -> None:
    """Add the peers' kernelspecs to ``names`` (or their setup error to ``errors``)."""
    import _peers

    if peers_error:
        for variant in PEERS:
            errors[variant] = f"not installed: {peers_error}"
        return
    from _bed import free_port

    os.environ["HOME"] = str(_peers.private_home(bed))  # paramiko reads only ~/.ssh
    os.environ.update(GP_REMOTE_USER=bed.user.pw_name, GP_SSH_PORT=str(bed.sshd.port),
                      GP_RESPONSE_IP=_netns_host_addr(), GP_RESPONSE_PORT=str(free_port(_netns_host_addr())))
    for variant, make in zip(PEERS, (_peers.remote_ikernel_spec, _peers.gateway_spec)):
        try:
            names[variant] = make(bed)
        except Exception as exc:  # noqa: BLE001
            detail = getattr(exc, "stderr", "") or str(exc)
            errors[variant] = f"setup failed: {type(exc).__name__}: {str(detail).strip()[-300:]}"


def _netns_host_addr() -> str:
    from _netns import HOST_ADDR

    return HOST_ADDR


async def run(args) -> None:
    bed = Bed(namespace=not args.loopback, stock_sessions_sshd=True)
    errors: dict[str, str] = {}
    try:
        names = {
            "local": bed.kernelspec("bench-local"),
            "hpc-ssh cold": bed.kernelspec("bench-ssh", bed.ssh_config()),
            # known_hosts of its own too: cold's closing leaves it open, so each warm start finds
            # the launcher the previous warm start left on standby, as the README says
            "hpc-ssh warm": bed.kernelspec("bench-ssh-warm", bed.ssh_config(
                known_hosts=str(shutil.copy(bed.sshd.known_hosts, bed.root / "known_hosts.warm")))),
            # known_hosts of its own: its own pooled connection, which the cold variant leaves open
            "hpc-ssh pre-started": bed.kernelspec("bench-ssh-pool", bed.ssh_config(
                pool_size=2, known_hosts=str(shutil.copy(bed.sshd.known_hosts, bed.root / "known_hosts.pool")))),
            NOTEBOOK_POOL: bed.kernelspec("bench-ssh-pool-nb", bed.ssh_config(
                pool_size=2, known_hosts=str(shutil.copy(bed.sshd.known_hosts, bed.root / "known_hosts.pool-nb")))),
        }
        fan_out_only = {STOCK: bed.kernelspec("bench-ssh-stock", bed.ssh_config(bed.sshd_stock))}
        if args.peers and not args.loopback:
            peer_specs(bed, names, errors, args.peers_error)
        t0 = time.perf_counter()
        first = {}
        if args.first_rounds:
            import _first_kernel

            first = await asyncio.to_thread(
                _first_kernel.rounds, bed, names["local"], "bench-ssh", bed.ssh_config(), args.first_rounds)
        results = await single_starts(bed, names, args.rounds, errors)
        drain_pools()  # before fan-out closes every connection (their kernels would wait out the lease)
        fan_rows = await fan_out(bed, {**names, **fan_out_only}, args.fanout)
        elapsed = time.perf_counter() - t0
    except BaseException:
        print(bed.log_tail(), file=sys.stderr)
        raise
    finally:
        drain_pools()  # while the sshd and the namespace still exist (atexit would be too late)
        close_pool()
        leftovers = bed.leftover_processes()
        bed.close()

    local = summarize(results["local"]["ready"])
    rows = []
    for variant, data in results.items():
        s, split = summarize(data["ready"]), summarize(data["started"])
        logins = sorted(set(data["logins"]))
        rows.append([
            variant, f"{s['p50']:.3f}", f"{s['p90']:.3f}", f"{s['min']:.3f}–{s['max']:.3f}",
            f"{s['p50'] / local['p50']:.2f}×", f"{s['p50'] - local['p50']:+.3f}", f"{split['p50']:.3f}",
            "–" if variant == "local" else "/".join(map(str, logins)),
        ])
    for variant, error in errors.items():
        rows.append([variant, "–", "–", "–", "–", "–", "–", f"ERROR {error}"])
    versions = []
    for package in ("remote_ikernel", "gateway_provisioners", "paramiko"):
        try:
            from importlib.metadata import version

            versions.append(f"{package} {version(package)}")
        except Exception:  # noqa: BLE001 - not installed: its row says so
            pass
    if versions:
        print(f"\nPeers: {', '.join(versions)} (venv {sys.prefix})")
    where = "loopback sshd" if args.loopback else f"sshd in a network namespace at {bed.sshd.host}:{bed.sshd.port}"
    print(f"\n#### Kernel start → first execute_reply, {args.rounds} rounds, interleaved ({where})\n")
    print(table(["variant", "p50 s", "p90 s", "min–max s", "ratio", "minus local s", "start_kernel p50 s",
                 "sshd logins per start"], rows))
    if first:
        print(f"\n#### First kernel of a fresh process, {args.first_rounds} rounds, interleaved ({where})\n")
        print(table(["first kernel of", "local p50 s", "hpc-ssh p50 s", "local min–max s", "hpc-ssh min–max s",
                     "hpc-ssh minus local s", "target"], first_kernel_rows(first)))
    print("\n#### Fan-out: kernels started at once (asyncio.gather), to the last first execute_reply\n")
    print(table(
        ["variant", "kernels", "wall s", "vs 1 kernel", "vs local", "start_kernel s (min–max)", "first reply s (min–max)", "RSS Δ MB", "RSS MB",
         "SSH connections", "sshd logins", "no reply in 60 s"],
        fan_rows,
    ))
    if leftovers:
        print("\nStill running as the bed's user after every kernel had been shut down (then ended): "
              + "; ".join(f"`{line}`" for line in leftovers))
    print(f"\n(whole run {elapsed:.0f} s)")


FIRST_TARGETS = {"script": 0.25, "server with sites": 0.1, "server with an installed kernelspec": 0.1}


def first_kernel_rows(first: dict[str, dict[str, list[float]]]) -> list[list[str]]:
    rows = []
    for setup, data in first.items():
        local, ssh = summarize(data["local"]), summarize(data["hpc-ssh"])
        rows.append([
            {"script": "a fresh script (blocking KernelManager)"}.get(setup, f"a fresh {setup}"),
            f"{local['p50']:.3f}", f"{ssh['p50']:.3f}", f"{local['min']:.3f}–{local['max']:.3f}",
            f"{ssh['min']:.3f}–{ssh['max']:.3f}", f"{ssh['p50'] - local['p50']:+.3f}",
            f"≤ +{FIRST_TARGETS[setup]:.2f}",
        ])
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, fan-out 1 and 10")
    parser.add_argument("--rounds", type=int, help="timed starts per variant (default 7, quick 3)")
    parser.add_argument("--fanout", help="comma-separated kernel counts (default 1,10,30; quick 1,10)")
    parser.add_argument("--no-peers", dest="peers", action="store_false", help="leave out remote_ikernel and gateway")
    parser.add_argument("--loopback", action="store_true", help="sshd on 127.0.0.1, no namespace (and no peers)")
    parser.add_argument("--first-rounds", type=int,
                        help="rounds of first kernels in fresh processes (script, servers; default 5, quick 2; 0: none)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    args.peers_error = None
    if args.peers and not args.loopback:
        import _peers

        args.peers_error = _peers.peers_importable()
        if args.peers_error and os.environ.get("JUPYTER_HPC_BENCH_REEXEC") != "1":
            try:
                python = _peers.ensure_peers_venv()
            except Exception as exc:  # noqa: BLE001 - reported in the table
                args.peers_error = f"pip install {' '.join(_peers.PEER_PACKAGES)} failed: {exc}"
            else:
                os.environ["JUPYTER_HPC_BENCH_REEXEC"] = "1"
                os.execv(str(python), [str(python), str(Path(__file__).resolve()), *(sys.argv[1:] if argv is None else argv)])
    args.rounds = args.rounds or (3 if args.quick else 7)
    if args.first_rounds is None:
        args.first_rounds = 2 if args.quick else 5
    args.fanout = [int(n) for n in (args.fanout or ("1,10" if args.quick else "1,10,30")).split(",")]
    quiet_logs(args.verbose)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
