"""Scheduler dialects: which argv each magic runs, and how its output becomes a DataFrame.

A dialect overrides only commands and parsers (as batchspawner's per-scheduler classes do,
without their shell strings). :class:`Slurm` reads delimiter-separated text, which every
SLURM has; :class:`SlurmJSON` reads ``--json`` where it is both available and complete.

Why ``%squeue`` reads delimited text even on SLURM 22.05, which has ``squeue --json``: there,
``--json`` ignores every filter (``-u``, ``-j``, ``-t``, ``-p``, ``--me``: checked on 22.05.8)
and carries no elapsed time; so the JSON dialect uses it only for ``sinfo`` without
filters. The delimiter is ASCII's unit separator (0x1f), which no job name or reason
contains in practice, rather than ``|``, which they may; times are asked for as epoch seconds
(``SLURM_TIME_FORMAT=%s``) so that timestamps come out in UTC whatever the cluster's zone.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Sequence

from . import convert
from ..errors import SlurmError
from ..slurm import commands, parse
from ..slurm.commands import EPOCH_ENV, SACCT_FIELDS, SEP
from ..slurm.parse import JobStatus
from ..slurm.states import JOB_STATES, NODE_STATES


@dataclasses.dataclass
class Query:
    """One command to run and the parser for its standard output."""

    argv: list[str]
    parse: Callable[[str], "object"]
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    input: str | None = None
    fallback: "Query | None" = None  # run instead when this dialect's option is unknown


# squeue: (header, -o field, converter); one row per job (``-r``: array tasks expanded).
_SQUEUE_CONVERT = {
    "JOBID": convert.integers, "ARRAY_JOB_ID": convert.integers, "ARRAY_TASK_ID": convert.integers,
    "NAME": convert.text, "USER": convert.text, "ACCOUNT": lambda v: convert.text(v, convert.MISSING),
    "PARTITION": convert.text, "STATE": lambda v: convert.category(v, JOB_STATES),
    "REASON": lambda v: convert.text(v, {"None"}), "TIME": convert.durations, "TIME_LIMIT": convert.durations,
    "SUBMIT_TIME": convert.timestamps, "START_TIME": convert.timestamps, "END_TIME": convert.timestamps,
    "NODES": convert.integers, "CPUS": convert.integers, "PRIORITY": convert.integers,
    "NODELIST": lambda v: convert.text(v, {""}),
}
SQUEUE_FIELDS = tuple((name, field, _SQUEUE_CONVERT[name]) for name, field in commands.SQUEUE_FIELDS)

# sacct: converters by field name, so a captured ``--parsable2`` text with any of these
# columns parses the same way.
_SACCT_CONVERT = {
    "JobName": convert.text, "User": lambda v: convert.text(v, {""}),
    "Account": lambda v: convert.text(v, {""}), "Partition": lambda v: convert.text(v, {""}),
    "Submit": convert.timestamps, "Start": convert.timestamps, "End": convert.timestamps,
    "Eligible": convert.timestamps, "Elapsed": convert.durations, "Timelimit": convert.durations,
    "CPUTime": convert.durations, "TotalCPU": convert.durations, "NNodes": convert.integers,
    "NCPUS": convert.integers, "NTasks": convert.integers, "AllocCPUS": convert.integers,
    "Priority": convert.integers, "NodeList": lambda v: convert.text(v, convert.MISSING),
    "Reason": lambda v: convert.text(v, convert.MISSING), "WorkDir": convert.text,
}

# sinfo: one row per (partition, node), from JSON or from ``sinfo -N -o``.
SINFO_COLUMNS = ("PARTITION", "NODE", "STATE", "STATE_FLAGS", "CPUS", "CPUS_ALLOC", "CPUS_IDLE",
                 "MEMORY", "FREE_MEMORY", "CPU_LOAD", "REASON")

_FORMAT_OPTIONS = re.compile(r"^(-o|-O|--format|--Format)(=|$)|^-[oO].")


def reads(command: str):
    """Mark a parser of ``command``'s output: output it cannot make sense of (a SLURM that
    prints something else, a wrapper script's chatter) becomes a :class:`SlurmError` that
    quotes it, instead of a traceback from deep inside the parser."""

    def wrap(parse):
        @functools.wraps(parse)
        def parse_or_explain(*args, **kwargs):
            try:
                return parse(*args, **kwargs)
            except (ValueError, TypeError, AttributeError, KeyError, IndexError, OverflowError, RecursionError) as exc:
                text = next((a for a in args if isinstance(a, str)), "")
                raise SlurmError(
                    f"Could not read what {command} printed ({type(exc).__name__}: {exc}): {text[:300]!r}",
                    argv=[command.split()[0]], stderr=text[:2000],
                ) from exc

        return parse_or_explain

    return wrap


def has_format_option(args: Sequence[str]) -> bool:
    return any(_FORMAT_OPTIONS.match(arg) for arg in args)


def _frame(columns: dict):
    import pandas as pd

    return pd.DataFrame(columns)


class Slurm:
    """SLURM through delimiter-separated output: works on every SLURM version."""

    name = "delimited"

    # -- commands -------------------------------------------------------------------------
    def squeue(self, args: Sequence[str]) -> Query:
        return Query(commands.squeue_argv(args), self.parse_squeue, dict(EPOCH_ENV))

    def sacct(self, args: Sequence[str]) -> Query:
        return Query(commands.sacct_argv(args), self.parse_sacct, dict(EPOCH_ENV))

    def sinfo(self, args: Sequence[str]) -> Query:
        return Query(commands.sinfo_argv(args), self.parse_sinfo, dict(EPOCH_ENV))

    def sbatch(self, args: Sequence[str], script: str) -> Query:
        return Query(commands.sbatch_user_argv(args), self.parse_sbatch, input=script)

    def scancel(self, args: Sequence[str]) -> Query:
        return Query(commands.scancel_user_argv(args), lambda text: None)

    def job_status(self, job_id: int) -> Query:
        return Query(commands.job_argv(job_id), self.parse_job_status)

    # -- parsers --------------------------------------------------------------------------
    @reads("squeue")
    def parse_squeue(self, text: str):
        width = len(SQUEUE_FIELDS)
        rows = parse.delimited_rows(text, width, spill_at=[name for name, _, _ in SQUEUE_FIELDS].index("NAME"))
        columns = list(zip(*rows)) if rows else [()] * width
        return _frame({name: conv(values) for (name, _, conv), values in zip(SQUEUE_FIELDS, columns)})

    @reads("sacct")
    def parse_sacct(self, text: str, sep: str = SEP):
        lines = [line for line in text.splitlines() if line]
        if not lines:
            return _frame({name: convert.text([]) for name in ("JobID", "Step", *SACCT_FIELDS[1:])})
        header, *rows = (line.split(sep) for line in lines)
        columns = dict(zip(header, zip(*rows))) if rows else {name: () for name in header}
        out: dict = {}
        for name, values in columns.items():
            if name in ("JobIDRaw", "JobID"):
                job, _, step = zip(*(value.partition(".") for value in values)) if values else ((), (), ())
                key = "JobID"
                if name == "JobID" and any("_" in j or "+" in j for j in job):
                    out["JobID"] = convert.text(values)  # array/het display ids: keep as text
                    continue
                out[key] = convert.integers(job)
                out["Step"] = convert.text(step, {""})
            elif name == "State":
                words = [value.split(" ", 1) for value in values]
                out["State"] = convert.category([w[0] for w in words], JOB_STATES)
                out["CancelledBy"] = convert.integers(
                    [w[1][3:] if len(w) > 1 and w[1].startswith("by ") else None for w in words])
            elif name == "ExitCode":
                out["ExitCode"], out["Signal"] = convert.split_exit_code(values)
            else:
                out[name] = _SACCT_CONVERT.get(name, convert.text)(values)
        return _frame(out)

    @reads("sinfo")
    def parse_sinfo(self, text: str):
        return self._sinfo_frame(parse.sinfo_rows(text))

    def _sinfo_frame(self, records: list[tuple]):
        columns = list(zip(*records)) if records else [()] * len(SINFO_COLUMNS)
        data = dict(zip(SINFO_COLUMNS, columns))
        return _frame({
            "PARTITION": convert.text(data["PARTITION"]),
            "NODE": convert.text(data["NODE"]),
            "STATE": convert.category(data["STATE"], NODE_STATES),
            "STATE_FLAGS": convert.text(data["STATE_FLAGS"]),
            "CPUS": convert.integers(data["CPUS"]),
            "CPUS_ALLOC": convert.integers(data["CPUS_ALLOC"]),
            "CPUS_IDLE": convert.integers(data["CPUS_IDLE"]),
            "MEMORY": convert.integers(data["MEMORY"]),
            "FREE_MEMORY": convert.integers(data["FREE_MEMORY"]),
            "CPU_LOAD": convert.floats(data["CPU_LOAD"]),
            "REASON": convert.text(data["REASON"], convert.MISSING),
        })

    @staticmethod
    @reads("sbatch --parsable")
    def parse_sbatch(text: str) -> int:
        """``--parsable`` prints ``<id>`` or ``<id>;<cluster>``."""
        return int(parse.sbatch_job_id(text))

    @staticmethod
    @reads("scontrol show job")
    def parse_job_status(text: str) -> JobStatus:
        """Keys of ``scontrol show job``'s multi-line form (see :func:`jupyter_hpc.slurm.parse.scontrol_job`)."""
        return parse.job_status(text)


class SlurmJSON(Slurm):
    """SLURM 21.08+ (``--json``): ``sinfo`` without filters reads JSON; the rest as in
    :class:`Slurm` (see the module docstring for why ``squeue`` does not)."""

    name = "json"

    def sinfo(self, args: Sequence[str]) -> Query:
        delimited = super().sinfo(args)
        if args:  # 22.05's --json ignores filters: let sinfo do the filtering
            return delimited
        return Query(commands.sinfo_json_argv(), self.parse_sinfo_json, fallback=delimited)

    @reads("sinfo --json")
    def parse_sinfo_json(self, text: str):
        return self._sinfo_frame(parse.sinfo_json_rows(text))


DIALECTS = {cls.name: cls for cls in (Slurm, SlurmJSON)}
