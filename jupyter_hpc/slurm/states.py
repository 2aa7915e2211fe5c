"""SLURM's job and node states, as sets every part compares against.

A job is *waiting* while it will still start (its kernel is not up yet), *running* while its
batch script runs, *ending* while SLURM cleans it up, and *finished* after. squeue lists
waiting, running and ending jobs; sacct and ``scontrol show job`` also finished ones (for a
while). ``GONE`` is ours: squeue no longer lists the job.
"""

from __future__ import annotations

import dataclasses

#: Every job state SLURM 20–24 prints (squeue ``%T``, sacct ``State``, scontrol ``JobState``).
JOB_STATES = (
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "COMPLETED", "SUSPENDED", "STOPPED",
    "PREEMPTED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "BOOT_FAIL", "DEADLINE",
    "OUT_OF_MEMORY", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "REVOKED",
    "SIGNALING", "SPECIAL_EXIT", "STAGE_OUT", "RESV_DEL_HOLD",
)
#: States in which a job will still start (or start again): its kernel is not up.
WAITING = frozenset({"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING",
                     "SUSPENDED", "RESV_DEL_HOLD"})
RUNNING = "RUNNING"
#: States of a job that holds (or is giving back) its allocation but will not start anew.
ENDING = frozenset({"COMPLETING", "SIGNALING", "STAGE_OUT", "STOPPED"})
#: A job in any of these has an allocation, or will: cancelling it frees something.
ACTIVE = WAITING | {RUNNING} | ENDING
#: Ours: the scheduler no longer lists the job.
GONE = "GONE"

#: Node states sinfo prints (lower case), for typed columns.
NODE_STATES = (
    "idle", "mixed", "allocated", "completing", "drained", "draining", "down", "fail",
    "failing", "future", "inval", "maint", "perfctrs", "planned", "power_down", "powered_down",
    "powering_down", "powering_up", "reboot_issued", "reboot_requested", "reserved", "unknown",
)
#: sinfo's one-character suffixes on a node state, e.g. ``idle*``.
NODE_STATE_SUFFIXES = {
    "*": "NOT_RESPONDING", "~": "POWERED_DOWN", "#": "POWERING_UP", "!": "POWERING_DOWN",
    "%": "POWERING_DOWN", "$": "MAINTENANCE", "@": "REBOOT_REQUESTED", "^": "REBOOT_ISSUED",
    "-": "PLANNED",
}


def base_state(text: str) -> str:
    """``CANCELLED by 1000`` (sacct) or ``RUNNING+`` → the state word alone."""
    return text.strip().split(" ", 1)[0].rstrip("+")


def is_waiting(state: str) -> bool:
    return base_state(state) in WAITING


def is_finished(state: str) -> bool:
    """True once the job will never run again (or the scheduler has forgotten it)."""
    return base_state(state) not in ACTIVE


@dataclasses.dataclass(frozen=True)
class JobState:
    """One job as the queue poll sees it; compared by the four fields that make a state change."""

    job_id: str
    state: str  # squeue's %T, or GONE once squeue no longer lists the job
    reason: str
    nodes: str  # the batch host once the job runs (squeue's %B)
    # Shown to users, not compared.
    partition: str = dataclasses.field(default="", compare=False)
    start: str = dataclasses.field(default="", compare=False)  # %S: expected start while pending, else actual
    time_left: str = dataclasses.field(default="", compare=False)  # %L, as of ``seen``
    time_limit: str = dataclasses.field(default="", compare=False)  # %l
    seen: float = dataclasses.field(default=0.0, compare=False)  # time.time() of the squeue call

    @property
    def waiting(self) -> bool:
        return self.state in WAITING

    @property
    def running(self) -> bool:
        return self.state == RUNNING
