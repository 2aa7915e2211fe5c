"""SLURM on a site's pooled SSH connection: submit, watch the queue, cancel, find job nodes.

Everything runs in the SSH loop. One :class:`SlurmQueue` per connection asks squeue about all of
its watched jobs in one call per poll interval, however many kernels wait; running kernels cost
no polling at all (their monitor channel reports their end). The server side only: this module
imports asyncssh, the rest of the package does not.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import weakref
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ..ssh.quiet_import import asyncssh

from ..errors import HPCError, RemoteCommandError, SlurmError
from ..ssh import SiteConnection
from . import commands, parse
from .scheduler import SLURM, BatchScheduler
from .states import GONE, WAITING, JobState

log = logging.getLogger("jupyter_hpc.slurm")


async def submit(connection: SiteConnection, argv: Sequence[str], script: str,
                 scheduler: BatchScheduler = SLURM) -> str:
    """Submit ``script`` (standard input of ``argv``); the job id, or a SlurmError with sbatch's words."""
    try:
        result = await connection.run(argv, input=script)
    except RemoteCommandError as exc:
        raise SlurmError(
            f"sbatch refused the kernel's job on {connection.target.host}: {exc.stderr or exc.message}",
            argv=exc.argv, exit_status=exc.exit_status, stderr=exc.stderr,
        ) from exc
    return scheduler.parse_submit(str(result.stdout))


async def node_address(connection: SiteConnection, node: str) -> str:
    """The address SLURM itself uses for ``node`` (its NodeAddr), falling back to the name."""
    result = await connection.run(commands.node_address_argv(node), check=False)
    line = parse.first_line(str(result.stdout))
    return line if result.exit_status == 0 and line else node


@dataclasses.dataclass(frozen=True)
class JobNode:
    """One node of one of the user's running jobs, by every name SLURM knows it by."""

    job_id: str
    name: str
    address: str  # NodeAddr
    hostname: str  # NodeHostName


async def running_job_nodes(connection: SiteConnection, user: str | None = None,
                            scheduler: BatchScheduler = SLURM) -> list[JobNode]:
    """The nodes of ``user``'s running jobs on the connection's site (default: the connection's
    own user), with NodeAddr: two commands (squeue, then scontrol show node for them all)."""
    user = user or connection.conn.get_extra_info("username") or connection.target.username or ""
    listed = await connection.run(scheduler.running_nodes_argv(user), check=False)
    if listed.exit_status != 0:
        raise SlurmError.from_command(scheduler.running_nodes_argv(user), listed.exit_status,
                                      str(listed.stderr), connection.target.host)
    jobs = scheduler.parse_running_nodes(str(listed.stdout))
    if not jobs:
        return []
    shown = await connection.run(scheduler.nodes_argv(sorted({nodes for _, nodes in jobs})), check=False)
    if shown.exit_status != 0:
        raise SlurmError.from_command(scheduler.nodes_argv([n for _, n in jobs]), shown.exit_status,
                                      str(shown.stderr), connection.target.host)
    by_name = {node.name: node for node in scheduler.parse_nodes(str(shown.stdout))}
    out = []
    for job_id, expression in jobs:
        names = await _expand(connection, expression, by_name)
        out.extend(JobNode(job_id, n, by_name[n].address, by_name[n].hostname) for n in names if n in by_name)
    return out


async def _expand(connection: SiteConnection, expression: str, known: dict[str, parse.Node]) -> list[str]:
    """A node list expression (``nid[001-003]``) as names; no round trip for a single name."""
    if expression in known or not any(c in expression for c in "[],"):
        return [expression]
    result = await connection.run(["scontrol", "show", "hostnames", expression], check=False)
    return str(result.stdout).split() if result.exit_status == 0 else []


async def cancel(connection: SiteConnection, job_id: str, grace: float = 5.0,
                 scheduler: BatchScheduler = SLURM) -> Any:
    """End the job by the scheduler's cancel sequence: for a running job ``scancel --signal=TERM
    --full`` (its kernel ends as on SIGTERM), then, if it is still listed after ``grace``
    seconds, a plain ``scancel``; a waiting job gets the plain one at once.

    Returns the last command's result (None when the job had already left the queue), so a
    caller can tell the user why SLURM refused (another user's job). Never raises: it runs while
    something else already failed (or is being cancelled), and a scheduler that cannot be asked
    still gets the plain ``scancel``.
    """
    queue = SlurmQueue.of(connection, scheduler)
    steps = scheduler.cancel_sequence(job_id, running=False)
    try:
        state = (await queue.query([job_id])).get(job_id)
        if state is None:
            return None
        steps = scheduler.cancel_sequence(job_id, running=state.state not in WAITING)
        for step in steps[:-1]:
            if (await connection.run(step, check=False)).exit_status != 0:
                break  # refused: the last step says why
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                if (await queue.query([job_id])).get(job_id) is None:
                    return None
                await asyncio.sleep(0.5)
    except (HPCError, asyncssh.Error, OSError) as exc:
        log.warning("job %s: %s; cancelling it outright", job_id, exc)
    try:
        return await connection.run(steps[-1], check=False)
    except (asyncssh.Error, OSError) as exc:
        log.error("job %s could not be cancelled (%s); its lease will end its kernel", job_id, exc)
        return None


class SlurmQueue:
    """One squeue per poll interval for all jobs watched on one login connection."""

    _instances: weakref.WeakKeyDictionary[SiteConnection, SlurmQueue] = weakref.WeakKeyDictionary()

    def __init__(self, connection: SiteConnection, scheduler: BatchScheduler = SLURM) -> None:
        self.connection = connection
        self.scheduler = scheduler
        self.poll_interval = 1.0
        self.queries = 0
        self._watchers: dict[str, list[asyncio.Queue[JobState]]] = {}
        self._task: asyncio.Task | None = None
        self.latest: dict[str, JobState] = {}  # each watched job's last state, for the REST status

    @classmethod
    def of(cls, connection: SiteConnection, scheduler: BatchScheduler = SLURM) -> "SlurmQueue":
        if connection not in cls._instances:
            cls._instances[connection] = cls(connection, scheduler)
        return cls._instances[connection]

    async def query(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        """States of ``job_ids``; a job squeue no longer lists is absent from the result."""
        self.queries += 1
        seen = time.time()
        result = await self.connection.run(self.scheduler.watch_argv(job_ids), check=False)
        states = self.scheduler.parse_watch(str(result.stdout), seen)
        if result.exit_status != 0 and "Invalid job id" not in str(result.stderr):
            log.warning("squeue failed on %s: %s", self.connection.target.host, str(result.stderr).strip())
            raise SlurmError(f"squeue failed: {str(result.stderr).strip()}")
        return states

    async def watch(self, job_id: str, poll_interval: float) -> AsyncIterator[JobState]:
        """Yield the job's state each time it changes, until it runs or is gone."""
        updates: asyncio.Queue[JobState] = asyncio.Queue()
        self._watchers.setdefault(job_id, []).append(updates)
        self.poll_interval = min(self.poll_interval, poll_interval) if self._task else poll_interval
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._poll())
        last = None
        try:
            while True:
                state = await updates.get()
                if state != last:
                    last = state
                    yield state
                if state.state not in WAITING:
                    return
        finally:
            self._watchers[job_id].remove(updates)
            if not self._watchers[job_id]:
                del self._watchers[job_id]
                self.latest.pop(job_id, None)

    async def _poll(self) -> None:
        failures = 0
        while self._watchers:
            job_ids = list(self._watchers)
            try:
                states = await self.query(job_ids)
                failures = 0
            except (SlurmError, OSError) as exc:
                failures += 1
                if failures >= 5:
                    states = {job_id: JobState(job_id, "UNKNOWN", str(exc), "") for job_id in job_ids}
                else:
                    await asyncio.sleep(self.poll_interval)
                    continue
            for job_id in job_ids:
                state = states.get(job_id) or JobState(job_id, GONE, "", "")
                self.latest[job_id] = state
                for updates in self._watchers.get(job_id, []):
                    updates.put_nowait(state)
            await asyncio.sleep(self.poll_interval)
