"""What a user may ask SLURM for at a kernel's start, and the choice waiting for that start.

The resource dialog of the JupyterLab extension is filled from :func:`fetch_site_options`: the
partitions this user may submit to, each with its limits, and the user's accounts and QOS, read
on the site's pooled connection (``sinfo --json``, ``scontrol show partition --oneliner``,
``sacctmgr show assoc``) and cached for a minute per site, so many open dialogs cost the
scheduler one look. The form is only a convenience: :func:`validate_resources` checks every
value again on the server, against the same live options, and every value passes
:func:`~jupyter_hpc.slurm.commands.checked_value` as the provisioner's own settings do.

JupyterLab's kernel start request carries only a kernelspec name and a path, so a choice cannot
travel with it. The front end puts the checked choice here first (:class:`PendingResources`,
keyed by kernelspec and session path, for one start, for a short while); the kernel manager
takes it out when that start arrives and hands it to that kernel's provisioner only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import posixpath
import re
import time
from collections.abc import Mapping
from typing import Any

from ..errors import HPCError, SlurmError
from ..slurm import commands, parse
from ..slurm.commands import checked_value
from ..slurm.parse import Association, Partition, add_node_facts
from ..slurm.times import TIME_SYNTAX, duration_minutes
from ..ssh import SiteConnection

OPTIONS_TTL = 60.0  # seconds a site's options are reused
PENDING_TTL = 120.0  # seconds a choice waits for its kernel's start
#: The SlurmProvisioner settings a user may choose per kernel (and nothing else).
RESOURCE_SETTINGS = ("partition", "account", "qos", "time", "nodes", "cpus_per_task", "gpus",
                     "constraint", "reservation")
NAME_WORD = re.compile(r"^[A-Za-z0-9_.+-]+$")  # partition, account, QOS, reservation names
CONSTRAINT = re.compile(r"^[A-Za-z0-9_.,&|\[\]*:-]+$")  # SLURM's feature expression syntax, no more


class ResourceError(HPCError, ValueError):
    """A chosen resource is not one this user may ask for; the message names it and the choices."""


@dataclasses.dataclass
class SiteOptions:
    """Everything the dialog offers for one site and user, as of ``fetched_at``."""

    user: str
    partitions: list[Partition]
    associations: list[Association]
    default_account: str
    fetched_at: float

    def partition(self, name: str) -> Partition | None:
        return next((p for p in self.partitions if p.name == name), None)

    def default_partition(self) -> Partition | None:
        return next((p for p in self.partitions if p.default), self.partitions[0] if self.partitions else None)

    def accounts(self, partition: str | None = None) -> list[str]:
        names = [a.account for a in self.associations if not partition or a.partition in ("", partition)]
        part = self.partition(partition) if partition else None
        if part is not None:
            names = [n for n in names if (part.allow_accounts is None or n in part.allow_accounts)
                     and n not in part.deny_accounts]
        return sorted(set(names))

    def qos(self, account: str | None = None, partition: str | None = None) -> list[str]:
        names = {q for a in self.associations
                 if (not account or a.account == account) and (not partition or a.partition in ("", partition))
                 for q in a.qos}
        part = self.partition(partition) if partition else None
        if part is not None and part.allow_qos is not None:
            names &= set(part.allow_qos)
        return sorted(names)

    def to_json(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "partitions": [dataclasses.asdict(p) for p in self.partitions],
            "accounts": self.accounts(),
            "default_account": self.default_account,
            "qos": self.qos(),
            "associations": [dataclasses.asdict(a) for a in self.associations],
            "fetched_at": self.fetched_at,
        }


# -- reading the site -----------------------------------------------------------------------

async def fetch_site_options(connection: SiteConnection) -> SiteOptions:
    """The partitions, accounts and QOS the connection's user may use: five small commands,
    run at once on the one connection."""
    user = connection.conn.get_extra_info("username") or connection.target.username or ""
    partitions_run, nodes_run, assoc_run, user_run, groups_run = await asyncio.gather(
        connection.run(commands.partitions_argv(), check=False),
        connection.run(commands.sinfo_json_argv(), check=False),
        connection.run(commands.associations_argv(user), check=False),
        connection.run(commands.default_account_argv(user), check=False),
        connection.run(["id", "-Gn"], check=False),
    )
    if partitions_run.exit_status != 0:
        raise SlurmError(
            f"SLURM did not list its partitions on {connection.target.host}: "
            f"{str(partitions_run.stderr).strip() or 'scontrol failed'}. Is SLURM on this login node's PATH?",
        )
    partitions = parse.partitions(str(partitions_run.stdout))
    if nodes_run.exit_status == 0:
        try:
            add_node_facts(partitions, str(nodes_run.stdout))
        except (ValueError, TypeError, AttributeError):
            pass  # an older or odd sinfo: the limits below still hold, only node sizes are unknown
    groups = set(str(groups_run.stdout).split())
    partitions = [p for p in partitions if p.allow_groups is None or groups & set(p.allow_groups)]
    associations = parse.associations(str(assoc_run.stdout)) if assoc_run.exit_status == 0 else []
    default_account = parse.first_line(str(user_run.stdout))
    if associations:  # with accounting, only partitions some association of the user's reaches
        partitions = [p for p in partitions if any(a.partition in ("", p.name) and
                      (p.allow_accounts is None or a.account in p.allow_accounts) and
                      a.account not in p.deny_accounts for a in associations)]
    return SiteOptions(user=user, partitions=partitions, associations=associations,
                       default_account=default_account, fetched_at=time.time())


class OptionsCache:
    """A site's options for ``ttl`` seconds, keyed by connection target; concurrent askers for
    the same site share one fetch. Lives in the SSH loop."""

    def __init__(self, ttl: float = OPTIONS_TTL) -> None:
        self.ttl = ttl
        self.fetches = 0
        self._entries: dict[tuple, tuple[float, asyncio.Future[SiteOptions]]] = {}

    async def get(self, connection: SiteConnection) -> SiteOptions:
        key = connection.target.pool_key()
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and now - entry[0] < self.ttl:
            future = entry[1]
            if not (future.done() and future.exception() is not None):
                return await asyncio.shield(future)
        self.fetches += 1
        future = asyncio.ensure_future(fetch_site_options(connection))
        self._entries[key] = (now, future)
        try:
            return await asyncio.shield(future)
        except BaseException:
            if self._entries.get(key, (0, None))[1] is future:
                del self._entries[key]  # a failure is not cached: the next dialog asks again
            raise


# -- checking a choice ------------------------------------------------------------------------

def _word(name: str, value: Any, pattern: re.Pattern = NAME_WORD, what: str = "letters, digits and . _ + -") -> str:
    try:
        text = checked_value(name, value)
    except ValueError as exc:
        raise ResourceError(str(exc).replace("give a plain value", f"use only {what}")) from None
    if not pattern.match(text):
        raise ResourceError(f"{name}={text!r} holds characters SLURM does not use there; use only {what}")
    return text


def _integer(name: str, value: Any, low: int, high: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ResourceError(f"{name} must be a whole number, not {value!r}")
    try:
        number = int(checked_value(name, value))
    except ValueError:
        raise ResourceError(f"{name} must be a whole number, not {value!r}") from None
    if number < low or (high is not None and number > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ResourceError(f"{name}={number} is out of range: it must be {bound} here")
    return number


def _one_of(name: str, value: str, allowed: list[str], where: str) -> str:
    if allowed and value not in allowed:
        raise ResourceError(f"{name} {value!r} is not one you may use {where}; choose one of: {', '.join(allowed)}")
    return value


def validate_resources(choice: Mapping[str, Any], options: SiteOptions) -> dict[str, Any]:
    """The choice as SlurmProvisioner settings, each value checked against what this user may
    use on the site now; a ResourceError names the first value that is not."""
    if not isinstance(choice, Mapping):
        raise ResourceError("The resources must be a JSON object of setting: value")
    unknown = sorted(set(choice) - set(RESOURCE_SETTINGS))
    if unknown:
        raise ResourceError(f"Unknown resource setting(s) {', '.join(map(repr, unknown))}; "
                            f"known: {', '.join(RESOURCE_SETTINGS)}")
    given = {k: v for k, v in choice.items() if v not in (None, "")}
    out: dict[str, Any] = {}
    part = options.default_partition()
    if "partition" in given:
        name = _word("partition", given["partition"])
        _one_of("partition", name, [p.name for p in options.partitions], "on this site")
        part = options.partition(name)
        out["partition"] = name
    where = f"in partition {part.name!r}" if part else "on this site"
    if "account" in given:
        account = _word("account", given["account"])
        out["account"] = _one_of("account", account, options.accounts(part.name if part else None), where)
    account = out.get("account") or options.default_account or None
    if "qos" in given:
        qos = _word("qos", given["qos"])
        out["qos"] = _one_of("qos", qos, options.qos(account, part.name if part else None), where)
    if "time" in given:
        text = _word("time", given["time"], TIME_SYNTAX, "digits, ':' and '-', as in 01:30:00 or 1-00:00:00")
        minutes = duration_minutes(text)
        if minutes is None or minutes <= 0:
            raise ResourceError(f"time={text!r} asks for no time at all; give e.g. 00:30:00")
        limits = [m for m in (part.max_time if part else None,
                              *(a.max_time for a in options.associations
                                if a.account == account and a.partition in ("", part.name if part else ""))) if m]
        if limits and minutes > min(limits):
            raise ResourceError(f"time={text!r} is longer than the {min(limits)} minutes allowed {where}")
        out["time"] = text
    if "nodes" in given:
        high = [n for n in (part.max_nodes if part else None, part.total_nodes if part else None) if n]
        out["nodes"] = _integer("nodes", given["nodes"], 1, min(high) if high else None)
    if "cpus_per_task" in given:
        out["cpus_per_task"] = _integer("cpus_per_task", given["cpus_per_task"], 0,
                                        part.cpus_per_node if part and part.cpus_per_node else None)
    if "gpus" in given:
        most = part.gpus_per_node * out.get("nodes", 1) if part else None
        out["gpus"] = _integer("gpus", given["gpus"], 0, most)
    if "constraint" in given:
        out["constraint"] = _word("constraint", given["constraint"], CONSTRAINT,
                                  "feature names joined by & | , and brackets, as in knl&quad")
    if "reservation" in given:
        out["reservation"] = _word("reservation", given["reservation"])
    return out


# -- a choice waiting for its kernel ----------------------------------------------------------

@dataclasses.dataclass
class Pending:
    kernel_name: str
    path: str  # the session's API path, e.g. 'work/run.ipynb'
    resources: dict[str, Any]
    until: float


class PendingResources:
    """Checked choices, each for the next start of one kernelspec from one session path."""

    def __init__(self, ttl: float = PENDING_TTL) -> None:
        self.ttl = ttl
        self._entries: dict[tuple[str, str], Pending] = {}

    def put(self, kernel_name: str, path: str, resources: dict[str, Any]) -> Pending:
        self._expire()
        entry = Pending(kernel_name, path.strip("/"), dict(resources), time.monotonic() + self.ttl)
        self._entries[(kernel_name, entry.path)] = entry
        return entry

    def take(self, kernel_name: str, path: str | None = None, session_name: str | None = None) -> dict[str, Any] | None:
        """The choice for this start, removed; matched by the session's file (jupyter_server's
        ``JPY_SESSION_NAME`` ends with it), else its directory (the kernel's path)."""
        self._expire()
        mine = [e for e in self._entries.values() if e.kernel_name == kernel_name]
        directory = (path or "").strip("/")
        match = (
            next((e for e in mine if session_name and e.path and
                  (session_name == e.path or session_name.endswith("/" + e.path))), None)
            or next((e for e in mine if e.path == directory), None)
            or next((e for e in mine if posixpath.dirname(e.path) == directory), None)
        )
        if match is None:
            return None
        del self._entries[(match.kernel_name, match.path)]
        return match.resources

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, e in self._entries.items() if e.until < now]:
            del self._entries[key]
