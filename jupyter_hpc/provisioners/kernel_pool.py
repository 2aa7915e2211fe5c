"""Pre-started kernels, so that picking a kernel costs only the attach.

A kernel's own start (Python and its imports, often slow on a cluster's shared file system)
is the floor for a cold launch. A pool keeps a few kernels of one kernelspec already running
on the login node, each with its own signing key; a start takes one and the manager adopts its
key. Pools live in one server process, which belongs to one user, so kernels are never shared
between users; they are keyed by credential and host too. They are topped up in the
background after each take, stopped after ``idle_lifetime`` unused (and not replaced until the
next demand), and drained when the process exits. Everything here runs in the SSH loop.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import uuid
from collections.abc import Awaitable, Callable

from ..errors import HPCError
from ..launcher import RemoteKernel
from ..ssh import run_in_ssh_loop_sync
from ..ssh.loop import in_ssh_loop

log = logging.getLogger("jupyter_hpc.provisioners")

StartKernel = Callable[[str], Awaitable[RemoteKernel]]
REFILL_DELAY = 1.0  # seconds after a take before the pool starts a replacement


class KernelPool:
    """Ready kernels for one (credential, host, kernelspec launch request)."""

    _pools: dict[tuple, KernelPool] = {}

    def __init__(self, size: int, idle_lifetime: float, start: StartKernel) -> None:
        self.size = size
        self.idle_lifetime = idle_lifetime
        self._start = start
        self.ready: list[tuple[RemoteKernel, str, float]] = []  # kernel, its key, when it was ready
        self.starting = 0
        self.drained = False  # no more kernels: a refill scheduled before the drain does nothing
        self._expiry: asyncio.Task | None = None

    @classmethod
    def for_launch(cls, key: tuple, size: int, idle_lifetime: float, start: StartKernel) -> "KernelPool":
        pool = cls._pools.get(key)
        if pool is None:
            pool = cls._pools[key] = cls(size, idle_lifetime, start)
        pool.size, pool.idle_lifetime = size, idle_lifetime
        return pool

    def take(self) -> tuple[RemoteKernel, str] | None:
        """A running kernel and its signing key, or None; either way the pool refills."""
        taken = None
        while self.ready and taken is None:
            remote, key, _ = self.ready.pop(0)
            if remote.exit_status is None:
                taken = remote, key
        self.top_up_soon()
        return taken

    def top_up_soon(self) -> None:
        """Refill a moment later: a kernel starting now would compete with the kernel just
        taken or launched, while it answers its first requests, for the SSH loop and for the
        login node's CPU (on the benchmark's one machine, a pre-started kernel's first reply
        took 20-30 ms instead of 8 under a refill begun at once)."""
        asyncio.get_running_loop().call_later(REFILL_DELAY, self.top_up)

    def top_up(self) -> None:
        if self.drained:
            return
        for _ in range(self.size - len(self.ready) - self.starting):
            self.starting += 1
            asyncio.ensure_future(self._add())

    async def _add(self) -> None:
        key = str(uuid.uuid4())
        try:
            remote = await self._start(key)
        except (HPCError, OSError) as exc:
            log.warning("could not pre-start a kernel for the pool: %s", exc)
            return
        finally:
            self.starting -= 1
        if self.drained:  # drained while this one started
            await remote.cleanup()
            return
        loop = asyncio.get_running_loop()
        self.ready.append((remote, key, loop.time()))
        remote.done.add_done_callback(lambda _: loop.call_soon_threadsafe(self._replace, remote))
        if self._expiry is None or self._expiry.done():
            self._expiry = asyncio.ensure_future(self._expire())

    def _replace(self, remote: RemoteKernel) -> None:
        """A ready kernel died on its own (or with its connection): start another in its place."""
        entries = [entry for entry in self.ready if entry[0] is remote]
        if entries:
            self.ready.remove(entries[0])
            self.top_up()

    async def _expire(self) -> None:
        """Stop kernels nobody took within ``idle_lifetime``; demand brings them back."""
        loop = asyncio.get_running_loop()
        while self.ready:
            oldest = min(ready_at for _, _, ready_at in self.ready)
            await asyncio.sleep(max(0.05, oldest + self.idle_lifetime - loop.time()))
            now = loop.time()
            stale = [entry for entry in self.ready if now - entry[2] >= self.idle_lifetime]
            for entry in stale:
                self.ready.remove(entry)
                await entry[0].cleanup()

    async def drain(self) -> None:
        self.drained = True
        if self._expiry is not None:
            self._expiry.cancel()
        ready, self.ready = self.ready, []
        await asyncio.gather(*(remote.cleanup() for remote, _, _ in ready), return_exceptions=True)

    @classmethod
    async def drain_all(cls) -> None:
        pools, cls._pools = list(cls._pools.values()), {}
        await asyncio.gather(*(pool.drain() for pool in pools), return_exceptions=True)


def _drain_at_exit() -> None:
    if KernelPool._pools and not in_ssh_loop():
        try:
            run_in_ssh_loop_sync(KernelPool.drain_all(), timeout=15)
        except Exception as exc:  # exiting anyway; the kernels' lease ends them
            log.warning("kernel pool not drained at exit: %s", exc)


atexit.register(_drain_at_exit)
