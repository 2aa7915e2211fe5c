"""Parsers of SLURM's output: plain Python values, standard library only.

Each reads one command's output as built by :mod:`.commands`: delimited text (the unit
separator, :data:`.commands.SEP`), ``--parsable2``, ``scontrol``'s ``Key=Value`` words, or
``--json``. Durations and times go through :mod:`.times`; states are :mod:`.states`' words.
The magics turn these values into typed DataFrames; the provisioner and the REST handlers use
them as they are.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from ..errors import SlurmError
from .commands import SEP, WATCH_FIELDS
from .states import NODE_STATE_SUFFIXES, JobState, base_state
from .times import MISSING, UNLIMITED, duration_minutes


def sbatch_job_id(stdout: str) -> str:
    """The job id from ``sbatch --parsable``: ``<id>`` or ``<id>;<cluster>`` on the last line
    (a site's wrapper may print warnings before it)."""
    lines = stdout.strip().splitlines()
    job_id = lines[-1].split(";", 1)[0].strip() if lines else ""
    if not (job_id.isascii() and job_id.isdigit()):
        raise SlurmError(f"sbatch answered {stdout.strip()!r} instead of a job id")
    return job_id


def watch_states(stdout: str, seen: float = 0.0) -> dict[str, JobState]:
    """:func:`.commands.watch_argv`'s output: each listed job's state, by job id."""
    states = {}
    for line in stdout.splitlines():
        fields = line.split(SEP)
        if len(fields) == len(WATCH_FIELDS):
            states[fields[0]] = JobState(*fields, seen=seen)
    return states


def delimited_rows(text: str, width: int, spill_at: int | None = None) -> list[list[str]]:
    """Rows of ``width`` fields; a row with surplus separators (one inside a job name) puts the
    surplus back into field ``spill_at``, a short row is padded with blanks."""
    rows = []
    for line in text.splitlines():
        if not line:
            continue
        row = line.split(SEP)
        extra = len(row) - width
        if extra > 0 and spill_at is not None:
            row = row[:spill_at] + [SEP.join(row[spill_at:spill_at + extra + 1])] + row[spill_at + extra + 1:]
        elif extra < 0:
            row = row + [""] * -extra
        rows.append(row[:width] if extra > 0 and spill_at is None else row)
    return rows


_KEY = re.compile(r"(?:^|(?<=\s))([A-Za-z][A-Za-z0-9_:/.]*)=")


def scontrol_words(line: str) -> dict[str, str]:
    """One ``Key=Value Key=Value`` line of scontrol; a value runs to the next key, so values
    with spaces (``OS=Linux 6.1 #1 SMP``) stay whole. Values are stripped."""
    keys = list(_KEY.finditer(line))
    out: dict[str, str] = {}
    for index, match in enumerate(keys):
        end = keys[index + 1].start() if index + 1 < len(keys) else len(line)
        out.setdefault(match.group(1), line[match.end():end].strip())
    return out


#: Keys of ``scontrol show job`` that sit alone on a line and may hold spaces.
_WHOLE_LINE_KEYS = ("StdOut", "StdErr", "StdIn", "WorkDir", "Command", "Comment", "AdminComment")


def scontrol_job(text: str) -> dict[str, str]:
    """``scontrol show job ID``'s multi-line form as a dict. Keys are matched at their own line's
    words, the job name only as the rest of the first line: a job named
    ``x JobState=COMPLETED`` cannot pose as the state."""
    out: dict[str, str] = {}
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return out
    first = re.match(r"JobId=(\S+)(?:\s+(?:ArrayJobId|HetJobId)=\S+)*(?:.*?\s)?JobName=(.*)$", lines[0])
    if first:
        out["JobId"], out["JobName"] = first.group(1), first.group(2)
    for line in lines[1:]:
        whole = next((k for k in _WHOLE_LINE_KEYS if line.startswith(k + "=")), None)
        if whole:
            out.setdefault(whole, line[len(whole) + 1:])
            continue
        for key, value in re.findall(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/]*)=(\S*)", line):
            out.setdefault(key, value)
    return out


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
    end_time: str = ""  # EndTime: the expected end while it runs (the cluster's local time)
    time_limit: str = ""
    batch_host: str = ""

    @property
    def finished(self) -> bool:
        from .states import is_finished

        return is_finished(self.state)


def job_status(text: str) -> JobStatus:
    fields = scontrol_job(text)
    status, _, signal = fields.get("ExitCode", "").partition(":")
    job_id = fields.get("JobId", "")
    return JobStatus(
        job_id=int(job_id) if job_id.isdigit() else 0,
        state=base_state(fields.get("JobState", "")),
        reason=fields.get("Reason", ""),
        run_time=fields.get("RunTime", ""),
        exit_code=int(status) if status.isdigit() else None,
        signal=int(signal) if signal.isdigit() else None,
        stdout_path=fields.get("StdOut", ""),
        end_time=fields.get("EndTime", ""),
        time_limit=fields.get("TimeLimit", ""),
        batch_host=fields.get("BatchHost", ""),
    )


# -- nodes ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Node:
    """A node by every name the proxy and the provisioner may meet it by."""

    name: str
    address: str  # NodeAddr: what SLURM itself connects to
    hostname: str  # NodeHostName


def nodes(text: str) -> list[Node]:
    """``scontrol show node --oneliner``: one node a line."""
    out = []
    for line in text.splitlines():
        fields = scontrol_words(line)
        if fields.get("NodeName"):
            name = fields["NodeName"]
            out.append(Node(name, fields.get("NodeAddr") or name, fields.get("NodeHostName") or name))
    return out


def running_jobs(text: str) -> list[tuple[str, str]]:
    """:func:`.commands.running_nodes_argv`'s output: (job id, node list expression) pairs."""
    return [(row[0], row[1]) for row in delimited_rows(text, 2) if row[0] and row[1]]


def first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else ""


# -- partitions, accounts ---------------------------------------------------------------------

def count(value: str) -> int | None:
    """A count field: None for ``UNLIMITED``, blanks and words."""
    value = value.strip()
    if value in UNLIMITED or value in MISSING or value.upper() == "UNLIMITED":
        return None
    return int(value) if value.isascii() and value.isdigit() else None


def names(value: str) -> list[str] | None:
    """``AllowAccounts=a,b`` as a list; None for ``ALL``."""
    value = value.strip()
    return None if value.upper() in ("ALL", "") else [v for v in value.split(",") if v]


@dataclasses.dataclass
class Partition:
    name: str
    default: bool = False
    state: str = "UP"
    max_time: int | None = None  # minutes; None: no limit
    default_time: int | None = None
    max_nodes: int | None = None
    total_nodes: int = 0
    cpus_per_node: int = 0  # the largest node's
    gpus_per_node: int = 0
    features: list[str] = dataclasses.field(default_factory=list)
    allow_accounts: list[str] | None = None  # None: all
    deny_accounts: list[str] = dataclasses.field(default_factory=list)
    allow_qos: list[str] | None = None
    allow_groups: list[str] | None = None


@dataclasses.dataclass
class Association:
    account: str
    partition: str  # "" for every partition
    qos: list[str]
    default_qos: str
    max_time: int | None  # minutes
    max_nodes: int | None


def partitions(text: str) -> list[Partition]:
    """``scontrol show partition --oneliner``: one partition a line."""
    out = []
    for line in text.splitlines():
        fields = scontrol_words(line)
        if "PartitionName" not in fields:
            continue
        out.append(Partition(
            name=fields["PartitionName"],
            default=fields.get("Default", "NO") == "YES",
            state=fields.get("State", "UP"),
            max_time=duration_minutes(fields.get("MaxTime", "UNLIMITED")),
            default_time=duration_minutes(fields.get("DefaultTime", "NONE")),
            max_nodes=count(fields.get("MaxNodes", "UNLIMITED")),
            total_nodes=count(fields.get("TotalNodes", "0")) or 0,
            allow_accounts=names(fields.get("AllowAccounts", "ALL")),
            deny_accounts=names(fields.get("DenyAccounts", "")) or [],
            allow_qos=names(fields.get("AllowQos", "ALL")),
            allow_groups=names(fields.get("AllowGroups", "ALL")),
        ))
    return out


def gres_gpus(gres: str) -> int:
    """GPUs in a node's gres, e.g. ``gpu:4``, ``gpu:a100:4(S:0-1)``, ``gpu:2,shard:8``."""
    total = 0
    for item in gres.split(","):
        parts = re.sub(r"\(.*\)", "", item).split(":")
        if parts[0] == "gpu" and len(parts) > 1 and parts[-1].isdigit():
            total += int(parts[-1])
    return total


def add_node_facts(parts: list[Partition], sinfo_json: str) -> None:
    """CPUs, GPUs and features of each partition's nodes, from ``sinfo --json`` (whose 22.05
    form lists nodes, each naming its partitions)."""
    by_name = {p.name: p for p in parts}
    for node in json.loads(sinfo_json).get("nodes") or []:
        features = [f for f in str(node.get("active_features") or node.get("features") or "").split(",") if f]
        for name in node.get("partitions") or []:
            part = by_name.get(name)
            if part is None:
                continue
            part.cpus_per_node = max(part.cpus_per_node, int(node.get("cpus") or 0))
            part.gpus_per_node = max(part.gpus_per_node, gres_gpus(str(node.get("gres") or "")))
            part.features = sorted(set(part.features) | set(features))


def associations(text: str) -> list[Association]:
    """:func:`.commands.associations_argv`'s ``--parsable2`` output."""
    out = []
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) < 6 or not fields[0]:
            continue
        account, partition, qos, default_qos, max_wall, max_nodes = fields[:6]
        out.append(Association(account, partition, [q for q in qos.split(",") if q], default_qos,
                               duration_minutes(max_wall), count(max_nodes)))
    return out


# -- sinfo ------------------------------------------------------------------------------------

def sinfo_rows(text: str) -> list[tuple[Any, ...]]:
    """:func:`.commands.sinfo_argv`'s output as (partition, node, state, flags, cpus, alloc, idle,
    memory, free memory, load, reason) tuples of text."""
    records = []
    for row in text.splitlines():
        if not row:
            continue
        row_fields = row.split(SEP)
        row_fields = row_fields + [""] * (8 - len(row_fields))
        partition, node, state, cpus, aiot, memory, free, load = row_fields[:8]
        reason = SEP.join(row_fields[8:])
        base, flags = state, []
        while base and base[-1] in NODE_STATE_SUFFIXES:
            flags.append(NODE_STATE_SUFFIXES[base[-1]])
            base = base[:-1]
        alloc, idle, _other, _total = (aiot.split("/") + ["", "", "", ""])[:4]
        records.append((partition.rstrip("*"), node, base, ",".join(flags), cpus, alloc, idle,
                        memory, free, load, reason))
    return records


def sinfo_json_rows(text: str) -> list[tuple[Any, ...]]:
    """``sinfo --json`` as the same tuples as :func:`sinfo_rows` (numbers as numbers)."""
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
    return records
