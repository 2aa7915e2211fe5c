"""Which hosts a site's route may reach.

Always the login node's loopback (``127.0.0.1``, ``localhost``, ``::1``, as the login node
itself resolves them: the channel opens there, so the server's own host is never reached).
Then, by any name or address, the nodes of the user's running jobs on that site (SLURM's node
name, ``NodeAddr`` and ``NodeHostName``) and of the user's running kernels there (the
addresses the node reports: Dask names its scheduler by its default route's address), and the
site's ``proxy_hosts`` patterns. Anything else is refused with a message naming
``proxy_hosts``.

The queue is asked at most once per ``JOB_NODES_TTL`` per site, and only when a host is not
already known: a page full of dashboard requests costs no scheduler call. A decision to let a
host through is remembered, so that the next request to it costs one lookup: for as long as
the queue's answer it came from is trusted (a refresh forgets them all), and for
``DECISION_TTL`` where it came from the loopback or ``proxy_hosts``. A queue that does not
answer within ``QUERY_TIMEOUT`` (a site without SLURM, slurmctld down) is left alone for
``QUEUE_RETRY``, so that refusals there do not each wait for it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fnmatch
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from ..ssh import SSHTarget, get_pool, run_in_ssh_loop

log = logging.getLogger("jupyter_hpc.proxy")

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
JOB_NODES_TTL = 10.0  # seconds a site's job nodes are trusted before a miss asks the queue again
QUERY_TIMEOUT = 5.0  # seconds the queue may take to say which nodes your jobs run on
QUEUE_RETRY = 60.0  # seconds before a queue that did not answer is asked again
MISS_REFRESH = 2.0  # seconds: an unknown host asks the queue again at most this often
DECISION_TTL = 60.0  # seconds a loopback or proxy_hosts decision is reused
MAX_DECISIONS = 1024  # decisions remembered at most (a proxy_hosts pattern matches endless names)


class HostNotAllowed(Exception):
    """The host is not one this site's route may reach."""


def normal_host(host: str) -> str:
    """Lower case, IPv6 brackets off, an address in its canonical form."""
    host = host.strip().lower().strip("[]")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host.rstrip(".")


def is_loopback(host: str) -> bool:
    host = normal_host(host)
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def matches(host: str, patterns: Iterable[str]) -> bool:
    host = normal_host(host)
    return any(fnmatch.fnmatchcase(host, pattern.lower()) for pattern in patterns)


@dataclasses.dataclass
class _Known:
    names: set[str]
    at: float
    queue_failed: bool = False  # the queue did not answer (no SLURM there, slurmctld down)


async def job_node_names(target: SSHTarget) -> set[str]:
    """Every name and address of the nodes of the user's running jobs on the site (SLURM's
    node name, NodeAddr and NodeHostName), from :func:`jupyter_hpc.slurm.site.running_job_nodes`:
    squeue for the jobs' node lists, scontrol for the nodes, on the pooled connection."""
    from ..slurm.site import running_job_nodes

    async def go() -> set[str]:
        nodes = await running_job_nodes(await get_pool().connect(target))
        return {normal_host(n) for node in nodes for n in (node.name, node.address, node.hostname) if n}

    return await run_in_ssh_loop(asyncio.wait_for(go(), QUERY_TIMEOUT))


class AllowedHosts:
    """The hosts each site's route may reach, with the queue's answer cached per site."""

    def __init__(self, ttl: float = JOB_NODES_TTL) -> None:
        self.ttl = ttl
        self._known: dict[str, _Known] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # (site, host as asked, patterns) -> (until when, why allowed)
        self._decisions: dict[tuple, tuple[float, str]] = {}

    async def check(self, site: str, target: SSHTarget, host: str, patterns: Iterable[str] = (),
                    kernel_nodes: Callable[[], Awaitable[set[str]]] | None = None) -> str:
        """Return why ``host`` is allowed, or raise :class:`HostNotAllowed` with what to do.
        ``kernel_nodes`` gives the names and addresses of the nodes of the user's kernels there;
        it and the queue are asked only when ``host`` is not known already."""
        key = (site, host, patterns if isinstance(patterns, tuple) else tuple(patterns))
        decided = self._decisions.get(key)
        if decided is not None and decided[0] > time.monotonic():
            return decided[1]
        if is_loopback(host):
            return self._remember(key, time.monotonic() + DECISION_TTL, "the login node's loopback")
        if matches(host, patterns):
            return self._remember(key, time.monotonic() + DECISION_TTL, "proxy_hosts")
        wanted = normal_host(host)
        if self._needs_refresh(site, wanted):
            async with self._locks.setdefault(site, asyncio.Lock()):
                if self._needs_refresh(site, wanted):
                    names: set[str] = set()
                    failed = False
                    try:
                        names |= await job_node_names(target)
                    except Exception as exc:  # noqa: BLE001 - no queue answer: only the rest applies
                        log.info("Could not list the job nodes on %s for the proxy: %s", site, exc)
                        failed = True
                    if kernel_nodes is not None:
                        names |= await kernel_nodes()
                    self._known[site] = _Known(names, time.monotonic(), failed)
                    for stale in [k for k in self._decisions if k[0] == site]:
                        del self._decisions[stale]  # nodes may have left: decide anew
        known = self._known[site]
        if wanted in known.names:
            until = known.at + (QUEUE_RETRY if known.queue_failed else self.ttl)
            return self._remember(key, until, "a node of one of your running jobs or kernels")
        raise HostNotAllowed(
            f"The proxy of site {site!r} does not reach {host}: it is neither the login node's "
            "loopback (127.0.0.1, localhost) nor a node of one of your running jobs or kernels there. "
            f"If {host} is a host of the site you want to reach, an administrator can add a pattern "
            f"for it to the site's proxy_hosts (c.HPCSites.sites[{site!r}]['proxy_hosts'], e.g. "
            "[\"nid*\", \"*.cori.nersc.gov\"])."
        )

    def _remember(self, key: tuple, until: float, why: str) -> str:
        if len(self._decisions) >= MAX_DECISIONS:
            self._decisions.clear()
        self._decisions[key] = (until, why)
        return why

    def _needs_refresh(self, site: str, wanted: str) -> bool:
        """Ask again when the answer is older than ``ttl`` (a job may have ended), or when the
        host is unknown and the answer older than ``MISS_REFRESH`` (a job may have started)."""
        known = self._known.get(site)
        if known is None:
            return True
        age = time.monotonic() - known.at
        if known.queue_failed:  # a site without a queue that answers: do not wait on it per request
            return age > QUEUE_RETRY
        return age > self.ttl or (wanted not in known.names and age > MISS_REFRESH)
