"""The seam where another batch system plugs in.

What the provisioner, the REST handlers and the proxy ask of a scheduler is
:class:`BatchScheduler`: the argv of a submission, of a queue poll, of the cancel sequence and
of the node lookups, and the parsers of their output. :class:`Slurm` is the one built. A PBS
Pro or LSF port is a subclass that overrides these methods only (``qsub``/``qstat -F json``/
``qdel``; ``bsub``/``bjobs -json``/``bkill``), mapping its states onto :mod:`.states`' sets,
and registers itself in :data:`SCHEDULERS`; none exists yet.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping

from . import commands, parse
from .states import JobState


class BatchScheduler(abc.ABC):
    """A batch system as the server speaks to it: argv out, plain values back."""

    name: str = ""

    @abc.abstractmethod
    def submit_argv(self, options: Mapping[str, object], job_name: str) -> list[str]:
        """Submit the script given on standard input; prints the job id (:meth:`parse_submit`)."""

    @abc.abstractmethod
    def parse_submit(self, stdout: str) -> str:
        """The job id the submission printed."""

    @abc.abstractmethod
    def watch_argv(self, job_ids: Iterable[str]) -> list[str]:
        """One poll of several jobs' states."""

    @abc.abstractmethod
    def parse_watch(self, stdout: str, seen: float) -> dict[str, JobState]:
        """Each job the poll listed; a job absent from the result has left the queue."""

    @abc.abstractmethod
    def cancel_sequence(self, job_id: str, running: bool) -> list[list[str]]:
        """The commands that end a job, gentlest first; the caller waits between them while
        the job is still listed."""

    @abc.abstractmethod
    def running_nodes_argv(self, user: str) -> list[str]:
        """The user's running jobs with their node lists."""

    @abc.abstractmethod
    def parse_running_nodes(self, stdout: str) -> list[tuple[str, str]]:
        """(job id, node list) pairs."""

    @abc.abstractmethod
    def nodes_argv(self, nodes: Iterable[str]) -> list[str]:
        """Details of nodes: their names and addresses."""

    @abc.abstractmethod
    def parse_nodes(self, stdout: str) -> list[parse.Node]:
        """Each node's name, address and host name."""


class Slurm(BatchScheduler):
    name = "slurm"

    def submit_argv(self, options: Mapping[str, object], job_name: str) -> list[str]:
        return commands.sbatch_argv(options, job_name)

    def parse_submit(self, stdout: str) -> str:
        return parse.sbatch_job_id(stdout)

    def watch_argv(self, job_ids: Iterable[str]) -> list[str]:
        return commands.watch_argv(job_ids)

    def parse_watch(self, stdout: str, seen: float) -> dict[str, JobState]:
        return parse.watch_states(stdout, seen)

    def cancel_sequence(self, job_id: str, running: bool) -> list[list[str]]:
        # A waiting job has no step a signal could reach: cancel it at once.
        first = [commands.signal_argv(job_id, "TERM")] if running else []
        return [*first, commands.cancel_argv(job_id)]

    def running_nodes_argv(self, user: str) -> list[str]:
        return commands.running_nodes_argv(user)

    def parse_running_nodes(self, stdout: str) -> list[tuple[str, str]]:
        return parse.running_jobs(stdout)

    def nodes_argv(self, nodes: Iterable[str]) -> list[str]:
        return commands.nodes_argv(nodes)

    def parse_nodes(self, stdout: str) -> list[parse.Node]:
        return parse.nodes(stdout)


SLURM = Slurm()
#: Scheduler by name; a PBS or LSF port adds itself here.
SCHEDULERS: dict[str, BatchScheduler] = {SLURM.name: SLURM}
