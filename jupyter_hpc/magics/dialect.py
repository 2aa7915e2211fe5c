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
import json
import re
from collections.abc import Callable, Sequence

from . import convert
from ..errors import SlurmError
from ..slurm_text import sbatch_job_id

SEP = "\x1f"
EPOCH_ENV = {"SLURM_TIME_FORMAT": "%s"}


@dataclasses.dataclass
class Query:
    """One command to run and the parser for its standard output."""

    argv: list[str]
    parse: Callable[[str], "object"]
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    input: str | None = None
    fallback: "Query | None" = None  # run instead when this dialect's option is unknown


@dataclasses.dataclass
class JobStatus:
    """What ``scontrol show job`` says about one job."""

    job_id: int
    state: str
    reason: str
    run_time: str
    exit_code: int | None
    signal: int | None
    stdout_path: str

    @property
    def finished(self) -> bool:
        return self.state not in {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED",
                                  "REQUEUED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED"}


# squeue: (header, -o field, converter); one row per job (``-r``: array tasks expanded).
SQUEUE_FIELDS = (
    ("JOBID", "%A", convert.integers),
    ("ARRAY_JOB_ID", "%F", convert.integers),
    ("ARRAY_TASK_ID", "%K", convert.integers),
    ("NAME", "%j", convert.text),
    ("USER", "%u", convert.text),
    ("ACCOUNT", "%a", lambda v: convert.text(v, convert.MISSING)),
    ("PARTITION", "%P", convert.text),
    ("STATE", "%T", lambda v: convert.category(v, convert.JOB_STATES)),
    ("REASON", "%r", lambda v: convert.text(v, {"None"})),
    ("TIME", "%M", convert.durations),
    ("TIME_LIMIT", "%l", convert.durations),
    ("SUBMIT_TIME", "%V", convert.timestamps),
    ("START_TIME", "%S", convert.timestamps),
    ("END_TIME", "%e", convert.timestamps),
    ("NODES", "%D", convert.integers),
    ("CPUS", "%C", convert.integers),
    ("PRIORITY", "%Q", convert.integers),
    ("NODELIST", "%N", lambda v: convert.text(v, {""})),
)

# sacct: field names as sacct spells them; converters by name, so a captured
# ``--parsable2`` text with any of these columns parses the same way.
SACCT_FIELDS = (
    "JobIDRaw", "JobName", "User", "Account", "Partition", "State", "ExitCode", "Submit",
    "Start", "End", "Elapsed", "Timelimit", "NNodes", "NCPUS", "NodeList", "Reason", "WorkDir",
)
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
_NODE_SUFFIX = {"*": "NOT_RESPONDING", "~": "POWERED_DOWN", "#": "POWERING_UP", "!": "POWERING_DOWN",
                "%": "POWERING_DOWN", "$": "MAINTENANCE", "@": "REBOOT_REQUESTED", "^": "REBOOT_ISSUED",
                "-": "PLANNED"}

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


def _rows(text: str, sep: str) -> list[list[str]]:
    return [line.split(sep) for line in text.splitlines() if line]


def _frame(columns: dict):
    import pandas as pd

    return pd.DataFrame(columns)


class Slurm:
    """SLURM through delimiter-separated output: works on every SLURM version."""

    name = "delimited"

    # -- commands -------------------------------------------------------------------------
    def squeue(self, args: Sequence[str]) -> Query:
        fmt = SEP.join(field for _, field, _ in SQUEUE_FIELDS)
        return Query(["squeue", "--noheader", "--array", "-o", fmt, *args], self.parse_squeue, dict(EPOCH_ENV))

    def sacct(self, args: Sequence[str]) -> Query:
        argv = ["sacct", "--parsable2", f"--delimiter={SEP}", "--format=" + ",".join(SACCT_FIELDS), *args]
        return Query(argv, self.parse_sacct, dict(EPOCH_ENV))

    def sinfo(self, args: Sequence[str]) -> Query:
        fmt = SEP.join(("%P", "%N", "%T", "%c", "%C", "%m", "%e", "%O", "%E"))
        return Query(["sinfo", "--noheader", "-N", "-o", fmt, *args], self.parse_sinfo, dict(EPOCH_ENV))

    def sbatch(self, args: Sequence[str], script: str) -> Query:
        return Query(["sbatch", "--parsable", *args], self.parse_sbatch, input=script)

    def scancel(self, args: Sequence[str]) -> Query:
        return Query(["scancel", *args], lambda text: None)

    def job_status(self, job_id: int) -> Query:
        return Query(["scontrol", "show", "job", str(job_id)], self.parse_job_status)

    # -- parsers --------------------------------------------------------------------------
    @reads("squeue")
    def parse_squeue(self, text: str):
        rows = _rows(text, SEP)
        width = len(SQUEUE_FIELDS)
        rows = [row if len(row) == width else _repair(row, width, SQUEUE_FIELDS) for row in rows]
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
                out["State"] = convert.category([w[0] for w in words], convert.JOB_STATES)
                out["CancelledBy"] = convert.integers(
                    [w[1][3:] if len(w) > 1 and w[1].startswith("by ") else None for w in words])
            elif name == "ExitCode":
                out["ExitCode"], out["Signal"] = convert.split_exit_code(values)
            else:
                out[name] = _SACCT_CONVERT.get(name, convert.text)(values)
        return _frame(out)

    @reads("sinfo")
    def parse_sinfo(self, text: str):
        records = []
        for row in _rows(text, SEP):
            row = row + [""] * (8 - len(row))  # a short row (an older sinfo, a cut line): blanks
            partition, node, state, cpus, aiot, memory, free, load, reason = row[:8] + [SEP.join(row[8:])]
            base, flags = state, []
            while base and base[-1] in _NODE_SUFFIX:
                flags.append(_NODE_SUFFIX[base[-1]])
                base = base[:-1]
            alloc, idle, _other, _total = (aiot.split("/") + ["", "", "", ""])[:4]
            records.append((partition.rstrip("*"), node, base, ",".join(flags), cpus, alloc, idle,
                            memory, free, load, reason))
        return self._sinfo_frame(records)

    def _sinfo_frame(self, records: list[tuple]):
        columns = list(zip(*records)) if records else [()] * len(SINFO_COLUMNS)
        data = dict(zip(SINFO_COLUMNS, columns))
        return _frame({
            "PARTITION": convert.text(data["PARTITION"]),
            "NODE": convert.text(data["NODE"]),
            "STATE": convert.category(data["STATE"], convert.NODE_STATES),
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
        return int(sbatch_job_id(text))

    @staticmethod
    @reads("scontrol show job")
    def parse_job_status(text: str) -> JobStatus:
        """Read keys from ``scontrol show job``'s multi-line form. Keys are matched at the start
        of a line, so a job name such as ``x JobState=COMPLETED`` (on the first line, after
        ``JobName=``) cannot pose as the state."""

        def first_key(key: str) -> str:
            for line in text.splitlines():
                stripped = line.strip()
                if stripped.startswith(key + "="):
                    value = stripped[len(key) + 1:]
                    return value if key in ("StdOut", "JobName") else value.split(" ", 1)[0]
            return ""

        def key_on_state_line(key: str) -> str:
            for line in text.splitlines():
                if line.strip().startswith("JobState="):
                    match = re.search(rf"(?:^|\s){key}=(\S*)", line)
                    return match.group(1) if match else ""
            return ""

        def key_anywhere_at_line(key: str) -> str:
            for line in text.splitlines():
                if line.strip().startswith(("Requeue=", "RunTime=")):
                    match = re.search(rf"(?:^|\s){key}=(\S*)", line)
                    if match:
                        return match.group(1)
            return ""

        exit_text = key_anywhere_at_line("ExitCode")
        status, _, signal = exit_text.partition(":")
        return JobStatus(
            job_id=int(re.match(r"\s*JobId=(\d+)", text).group(1)) if re.match(r"\s*JobId=(\d+)", text) else 0,
            state=first_key("JobState"),
            reason=key_on_state_line("Reason"),
            run_time=key_anywhere_at_line("RunTime"),
            exit_code=int(status) if status.isdigit() else None,
            signal=int(signal) if signal.isdigit() else None,
            stdout_path=first_key("StdOut"),
        )


def _repair(row: list[str], width: int, fields) -> list[str]:
    """A row with a stray separator inside the job name: put the surplus back into NAME."""
    name_at = [name for name, _, _ in fields].index("NAME")
    extra = len(row) - width
    if extra <= 0:
        return row + [""] * (width - len(row))
    return row[:name_at] + [SEP.join(row[name_at:name_at + extra + 1])] + row[name_at + extra + 1:]


class SlurmJSON(Slurm):
    """SLURM 21.08+ (``--json``): ``sinfo`` without filters reads JSON; the rest as in
    :class:`Slurm` (see the module docstring for why ``squeue`` does not)."""

    name = "json"

    def sinfo(self, args: Sequence[str]) -> Query:
        delimited = super().sinfo(args)
        if args:  # 22.05's --json ignores filters: let sinfo do the filtering
            return delimited
        return Query(["sinfo", "--json"], self.parse_sinfo_json, fallback=delimited)

    @reads("sinfo --json")
    def parse_sinfo_json(self, text: str):
        records = []
        for node in json.loads(text).get("nodes", []):
            state = str(node.get("state", "")).lower()
            flags = ",".join(map(str, node.get("state_flags") or []))
            load = node.get("cpu_load")
            load = load if isinstance(load, (int, float)) else None
            for partition in node.get("partitions") or [""]:
                records.append((
                    partition, node.get("name", ""), state, flags, node.get("cpus"),
                    node.get("alloc_cpus"), node.get("idle_cpus"), node.get("real_memory"),
                    node.get("free_memory"), None if load is None else load / 100,
                    node.get("reason") or "",
                ))
        return self._sinfo_frame(records)


DIALECTS = {cls.name: cls for cls in (Slurm, SlurmJSON)}
