"""SLURM as the provisioners need it: submit a kernel's job, watch the queue, cancel.

Everything runs in the SSH loop over the login node's pooled connection. One
:class:`SlurmQueue` per connection asks squeue about all of its watched jobs in one call per
poll interval, however many kernels wait; running kernels cost no polling at all (their
monitor channel reports their end).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shlex
import time
import unicodedata
import weakref
from collections.abc import AsyncIterator, Sequence

from ..ssh.quiet_import import asyncssh
import jinja2

from ..errors import RemoteCommandError, SlurmError
from ..slurm_text import sbatch_job_id
from ..ssh import SiteConnection

log = logging.getLogger("jupyter_hpc.slurm")

DEFAULT_BATCH_TEMPLATE = """\
#!/bin/bash
#SBATCH --job-name={{ job_name }}
#SBATCH --output={{ output }}
{% for directive in extra_directives %}#SBATCH {{ directive }}
{% endfor %}
exec {{ remote_python | q }} {{ launcher | q }} --batch {{ request_file | q }} {{ answer_file | q }}
"""

# squeue states in which a job will still start, or runs
WAITING = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SUSPENDED"}
RUNNING = "RUNNING"


@dataclasses.dataclass(frozen=True)
class JobState:
    job_id: str
    state: str  # squeue's %T, or "GONE" once squeue no longer lists the job
    reason: str
    nodes: str  # the batch host once the job runs (squeue's %B)
    # Shown to users, not compared: a state change is one of the four above.
    partition: str = dataclasses.field(default="", compare=False)
    start: str = dataclasses.field(default="", compare=False)  # %S: expected start while pending, else actual
    time_left: str = dataclasses.field(default="", compare=False)  # %L, as of ``seen``
    time_limit: str = dataclasses.field(default="", compare=False)  # %l
    seen: float = dataclasses.field(default=0.0, compare=False)  # time.time() of the squeue call


def checked_value(name: str, value: object) -> str:
    """A scheduler setting as text, refused if it could break out of its one argument/line."""
    text = str(value)
    if not text or any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in text):
        raise ValueError(f"{name}={text!r} is empty or holds control characters; give a plain value")
    return text


def directive_word(name: str, value: object) -> str:
    """A value the template puts into an ``#SBATCH`` line itself: sbatch splits those lines at
    whitespace, so a space would add options of its own."""
    text = checked_value(name, value)
    if any(c.isspace() for c in text):
        raise ValueError(f"{name}={text!r} holds whitespace, which sbatch would read as more options")
    return text


def sbatch_argv(options: dict[str, object], job_name: str) -> list[str]:
    """``sbatch --parsable --name=value …``: each setting one argv element, never shell text."""
    argv = ["sbatch", "--parsable", f"--job-name={checked_value('job_name', job_name)}"]
    for name, value in options.items():
        if value is None or value == "" or value == 0:
            continue
        argv.append(f"--{name.replace('_', '-')}={checked_value(name, value)}")
    return argv


def render_batch_script(template: str, **values: object) -> str:
    directives = values.get("extra_directives") or []
    for directive in directives:
        checked_value("extra_directives", directive)
    for name in ("job_name", "output"):
        if name in values:
            directive_word(name, values[name])
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    environment.filters["q"] = lambda value: shlex.quote(str(value))
    return environment.from_string(template).render(**values)


async def submit(connection: SiteConnection, argv: Sequence[str], script: str) -> str:
    try:
        result = await connection.run(argv, input=script)
    except RemoteCommandError as exc:
        raise SlurmError(
            f"sbatch refused the kernel's job on {connection.target.host}: {exc.stderr or exc.message}",
            argv=exc.argv, exit_status=exc.exit_status, stderr=exc.stderr,
        ) from exc
    return sbatch_job_id(str(result.stdout))


async def node_address(connection: SiteConnection, node: str) -> str:
    """The address SLURM itself uses for ``node`` (its NodeAddr), falling back to the name."""
    result = await connection.run(["sinfo", "-h", "-N", "-n", node, "-O", "NodeAddr:256"], check=False)
    lines = [line.strip() for line in str(result.stdout).splitlines() if line.strip()]
    return lines[0] if result.exit_status == 0 and lines else node


async def cancel(connection: SiteConnection, job_id: str, grace: float = 5.0) -> None:
    """Ask the job to end (SIGTERM to its steps), then cancel it outright if it is still there.

    Never raises: it runs while something else already failed (or is being cancelled), and a
    scheduler that cannot be asked still gets the plain ``scancel``.
    """
    queue = SlurmQueue.of(connection)
    try:
        state = (await queue.query([job_id])).get(job_id)
        if state is None:
            return
        if state.state not in WAITING:  # a pending job has nothing a signal could reach
            await connection.run(["scancel", "--signal=TERM", "--full", job_id], check=False)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                if (await queue.query([job_id])).get(job_id) is None:
                    return
                await asyncio.sleep(0.5)
    except (SlurmError, asyncssh.Error, OSError) as exc:
        log.warning("job %s: %s; cancelling it outright", job_id, exc)
    try:
        await connection.run(["scancel", job_id], check=False)
    except (asyncssh.Error, OSError) as exc:
        log.error("job %s could not be cancelled (%s); its lease will end its kernel", job_id, exc)


class SlurmQueue:
    """One squeue per poll interval for all jobs watched on one login connection."""

    _instances: weakref.WeakKeyDictionary[SiteConnection, SlurmQueue] = weakref.WeakKeyDictionary()

    def __init__(self, connection: SiteConnection) -> None:
        self.connection = connection
        self.poll_interval = 1.0
        self.queries = 0
        self._watchers: dict[str, list[asyncio.Queue[JobState]]] = {}
        self._task: asyncio.Task | None = None
        self.latest: dict[str, JobState] = {}  # each watched job's last state, for the REST status

    @classmethod
    def of(cls, connection: SiteConnection) -> "SlurmQueue":
        if connection not in cls._instances:
            cls._instances[connection] = cls(connection)
        return cls._instances[connection]

    async def query(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        """States of ``job_ids``; a job squeue no longer lists is absent from the result."""
        self.queries += 1
        argv = ["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i\x1f%T\x1f%r\x1f%B\x1f%P\x1f%S\x1f%L\x1f%l"]
        seen = time.time()
        result = await self.connection.run(argv, check=False)
        states = {}
        for line in str(result.stdout).splitlines():
            fields = line.split("\x1f")
            if len(fields) == 8:
                states[fields[0]] = JobState(*fields, seen=seen)
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
                state = states.get(job_id) or JobState(job_id, "GONE", "", "")
                self.latest[job_id] = state
                for updates in self._watchers.get(job_id, []):
                    updates.put_nowait(state)
            await asyncio.sleep(self.poll_interval)
