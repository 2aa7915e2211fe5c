"""Idle SLURM kernels give their nodes back: a per-target ``idle_timeout``, warned ahead.

A kernel in a SLURM job holds an allocation whether or not anyone uses it. A target's
``idle_timeout`` (SlurmProvisioner, default an hour) ends a kernel, and so its job, once no cell
has run in it for that long (jupyter_server's ``last_activity``: any message from the kernel,
a cell's output or its busy/idle status). ``idle_warning`` seconds before, the kernel's status
(``/jupyter-hpc/api/slurm/kernels``: ``idle_ends_in_seconds``) makes the notebook say so with
a "keep it" button (:meth:`IdleWatch.keep`); running a cell keeps it as well. A browser left
open does not keep a kernel: a forgotten tab is the case this is for. jupyter_server's own
``cull_idle_timeout`` still applies to every kernel, ours included.
"""

from __future__ import annotations

import asyncio
import datetime
from typing import Any


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class IdleWatch:
    """Watches the mapping's kernels whose provisioner has an ``idle_timeout``; one timer."""

    def __init__(self, mapping: Any) -> None:
        self.mapping = mapping
        self._watched: dict[str, Any] = {}
        self._warned: set[str] = set()
        self._task: asyncio.Task | None = None
        self.log = mapping.log  # the server's log: the line saying why a kernel ended goes there

    @staticmethod
    def limits(km: Any) -> tuple[float, float] | None:
        """(idle_timeout, idle_warning) of the kernel's target, or None if it has none."""
        provisioner = getattr(km, "provisioner", None)
        timeout = getattr(provisioner, "idle_timeout", None)
        if not timeout or timeout <= 0:
            return None
        warning = min(float(getattr(provisioner, "idle_warning", 300.0) or 0.0), timeout / 2)
        return float(timeout), warning

    def watch(self, kernel_id: str, km: Any) -> None:
        if self.limits(km) is None:
            return
        self._watched[kernel_id] = km
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    def forget(self, kernel_id: str) -> None:
        self._watched.pop(kernel_id, None)
        self._warned.discard(kernel_id)

    def idle_seconds(self, km: Any) -> float:
        if getattr(km, "execution_state", "") == "busy":
            return 0.0
        last = getattr(km, "last_activity", None)
        return max(0.0, (_now() - last).total_seconds()) if last is not None else 0.0

    def status(self, kernel_id: str, km: Any) -> dict[str, Any]:
        """For the REST status: the limit, how long the kernel has been idle, and, inside the
        warning period, the seconds until it ends."""
        limits = self.limits(km) if kernel_id in self._watched else None
        if limits is None:
            return {"idle_timeout": None, "idle_seconds": None, "idle_ends_in_seconds": None}
        timeout, warning = limits
        idle = self.idle_seconds(km)
        ends_in = timeout - idle
        return {"idle_timeout": timeout, "idle_seconds": round(idle),
                "idle_ends_in_seconds": max(0, round(ends_in)) if ends_in <= warning else None}

    def keep(self, kernel_id: str) -> bool:
        """The notebook's "keep it": the idle clock starts again."""
        km = self._watched.get(kernel_id)
        if km is None:
            return False
        km.last_activity = _now()
        self._warned.discard(kernel_id)
        self.log.info("Kernel %s kept by its user: its idle clock starts again", kernel_id)
        return True

    def _interval(self) -> float:
        limits = [lim for km in self._watched.values() if (lim := self.limits(km))]
        shortest = min((min(t - w, w) if w else t for t, w in limits), default=60.0)
        return max(1.0, min(15.0, shortest / 4))

    async def _run(self) -> None:
        while self._watched:
            await asyncio.sleep(self._interval())
            for kernel_id, km in list(self._watched.items()):
                try:
                    await self._check(kernel_id, km)
                except Exception:  # one kernel's trouble never stops the watch
                    self.log.exception("Idle check of kernel %s failed", kernel_id)

    async def _check(self, kernel_id: str, km: Any) -> None:
        if self.mapping._kernels.get(kernel_id) is not km:
            self.forget(kernel_id)
            return
        limits = self.limits(km)
        if limits is None or not km.ready.done():
            return
        timeout, warning = limits
        idle = self.idle_seconds(km)
        job = getattr(getattr(km, "provisioner", None), "queue_state", None)
        job_id = getattr(job, "job_id", None)
        what = f"kernel {kernel_id} ({km.kernel_name})" + (f" and its job {job_id}" if job_id else "")
        if idle >= timeout:
            self.log.warning("Ending %s: idle for %d s (idle_timeout %d s)", what, idle, timeout)
            self.forget(kernel_id)
            await self.mapping.shutdown_kernel(kernel_id)
        elif idle >= timeout - warning and kernel_id not in self._warned:
            self._warned.add(kernel_id)
            self.log.info("%s has been idle for %d s: it ends in %d s unless used", what, idle, timeout - idle)
        elif idle < timeout - warning:
            self._warned.discard(kernel_id)
