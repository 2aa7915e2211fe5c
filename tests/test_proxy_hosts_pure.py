"""The cluster proxy's host decisions are remembered (a page of dashboard requests costs one
lookup each), but never beyond the answer they came from: a node whose job ended is refused
again as soon as the route would have refused it without the memory.

The queue (squeue and scontrol on the site, tested for real in test_proxy_dask.py) is replaced
here by a set the test changes, through the one seam ``hosts.job_node_names``.
"""

from __future__ import annotations

import asyncio

import pytest

from jupyter_hpc.proxy import hosts
from jupyter_hpc.proxy.hosts import AllowedHosts, HostNotAllowed
from jupyter_hpc.ssh import SSHTarget

TARGET = SSHTarget("login.cori.example")


@pytest.fixture
def queue(monkeypatch) -> dict:
    """The job nodes the queue names (``nodes``) and how often it was asked (``asked``)."""
    state = {"nodes": set(), "asked": 0}

    async def job_node_names(target: SSHTarget) -> set[str]:
        state["asked"] += 1
        return set(state["nodes"])

    monkeypatch.setattr(hosts, "job_node_names", job_node_names)
    monkeypatch.setattr(hosts, "MISS_REFRESH", 0.2)
    return state


async def test_a_remembered_node_is_refused_once_its_job_ends(queue):
    allowed = AllowedHosts()
    queue["nodes"] = {"nid00001"}
    for _ in range(3):
        assert "job" in await allowed.check("cori", TARGET, "nid00001")
    assert queue["asked"] == 1  # remembered

    # nid00001's job ends and nid00002's starts: once the queue is asked again (an unknown
    # host, after MISS_REFRESH), the remembered nid00001 goes with the old answer.
    queue["nodes"] = {"nid00002"}
    await asyncio.sleep(0.3)
    assert "job" in await allowed.check("cori", TARGET, "nid00002")
    assert queue["asked"] == 2
    with pytest.raises(HostNotAllowed, match="proxy_hosts"):
        await allowed.check("cori", TARGET, "nid00001")


async def test_a_remembered_node_lasts_no_longer_than_the_queue_answer(queue, monkeypatch):
    monkeypatch.setattr(hosts, "MISS_REFRESH", 30.0)  # only the answer's age makes it ask again
    allowed = AllowedHosts(ttl=0.3)
    queue["nodes"] = {"nid00003"}
    assert "job" in await allowed.check("cori", TARGET, "nid00003")
    queue["nodes"] = set()
    await asyncio.sleep(0.35)
    with pytest.raises(HostNotAllowed):
        await allowed.check("cori", TARGET, "nid00003")
    # loopback and proxy_hosts need no queue; refusals are not remembered
    asked = queue["asked"]
    assert await allowed.check("cori", TARGET, "127.0.0.1") == "the login node's loopback"
    assert await allowed.check("cori", TARGET, "n1.cori.example", ("*.cori.example",)) == "proxy_hosts"
    with pytest.raises(HostNotAllowed):  # the same host, without the pattern on this site
        await allowed.check("cori", TARGET, "n1.cori.example")
    assert queue["asked"] == asked
