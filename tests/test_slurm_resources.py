"""The REST side of the resource dialog against the real SLURM, sshd and a jupyter_server
subprocess: the user's partitions and accounts with their limits, the chosen resources reaching
that kernel's job only, hostile values refused before anything is submitted, the queued state
with its Reason served from the provisioner's own poll (twenty pollers cost the scheduler no
more than one, by slurmctld's sdiag), and cancelling a queued start."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time

import pytest
import requests

from server_helpers import Server


def scontrol(*words: str) -> None:
    subprocess.run(["scontrol", *words], check=True, capture_output=True)


@pytest.fixture
def regular_limited(slurm):
    """The ``regular`` partition capped at one hour (restored after), so that limits show."""
    scontrol("update", "PartitionName=regular", "MaxTime=01:00:00")
    yield
    scontrol("update", "PartitionName=regular", "MaxTime=INFINITE", "State=UP")


@pytest.fixture
def server(tmp_path, slurm_spec, regular_limited):
    spec = slurm_spec("hpc-slurm-dialog", queue_timeout=90)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {"jupyter_hpc": True}}}))
    server = Server(tmp_path)
    server.spec = spec
    yield server
    server.stop()


def hpc(server: Server, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, f"http://127.0.0.1:{server.port}/jupyter-hpc/api/{path}",
                            headers={"Authorization": f"token {server.token}"}, timeout=120, **kwargs)


def start_session(server: Server, path: str) -> requests.Response:
    """What JupyterLab's launcher tile does: a session (and its kernel) for a new notebook."""
    return requests.post(f"http://127.0.0.1:{server.port}/api/sessions",
                         headers={"Authorization": f"token {server.token}"}, timeout=120,
                         json={"path": path, "name": path, "type": "notebook", "kernel": {"name": server.spec}})


def show_job(job_id: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", "--oneliner", job_id], capture_output=True, text=True,
                         check=True).stdout
    return dict(word.partition("=")[::2] for word in out.split() if "=" in word)


def slurm_kernels(server: Server) -> list[dict]:
    response = hpc(server, "GET", "slurm/kernels")
    response.raise_for_status()
    return response.json()["kernels"]


def running_status(server: Server, kernel_id: str, timeout: float = 60) -> dict:
    """The kernel's status once its job runs and the kernel is attached (the start request
    answers before: the queue wait holds no request)."""
    deadline = time.monotonic() + timeout
    while True:
        [status] = [k for k in slurm_kernels(server) if k["kernel_id"] == kernel_id]
        if status["phase"] == "running" or time.monotonic() > deadline:
            return status
        time.sleep(0.3)


def job_info_calls() -> int:
    """slurmctld's count of job-info RPCs (squeue) since the last ``sdiag --reset``."""
    out = subprocess.run(["sdiag"], capture_output=True, text=True, check=True).stdout
    _, _, by_type = out.partition("Remote Procedure Call statistics by message type")
    by_type, _, _ = by_type.partition("Remote Procedure Call statistics by user")
    counts = dict(re.findall(r"^\s+(REQUEST_JOB_INFO\S*)\s*\(\s*\d+\)\s+count:(\d+)", by_type, re.M))
    return sum(int(v) for v in counts.values())


def test_options_are_the_users_partitions_and_accounts_with_limits(server):
    response = hpc(server, "GET", f"slurm/{server.spec}/options")
    assert response.status_code == 200, response.text
    options = response.json()
    partitions = {p["name"]: p for p in options["partitions"]}
    assert set(partitions) == {"debug", "regular"}
    assert partitions["debug"]["default"] and not partitions["regular"]["default"]
    assert partitions["regular"]["max_time"] == 60 and partitions["debug"]["max_time"] is None
    assert partitions["debug"]["cpus_per_node"] >= 1 and partitions["debug"]["total_nodes"] == 1
    assert options["accounts"] == ["testbed"] and options["default_account"] == "testbed"
    assert "normal" in options["qos"]
    assert options["user"] == "hpcuser"

    # Not a SLURM kernelspec, or none at all: a 404 that says so.
    missing = hpc(server, "GET", "slurm/nosuchspec/options")
    assert missing.status_code == 404 and "nosuchspec" in missing.json()["message"]

    # Unauthenticated: refused, like every server handler.
    anonymous = requests.get(f"http://127.0.0.1:{server.port}/jupyter-hpc/api/slurm/{server.spec}/options")
    assert anonymous.status_code == 403
    # A browser logged in by cookie must send the XSRF token to change anything.
    with requests.Session() as browser:
        browser.get(f"http://127.0.0.1:{server.port}/login?token={server.token}").raise_for_status()
        url = f"http://127.0.0.1:{server.port}/jupyter-hpc/api/slurm/pending/{server.spec}"
        body = {"path": "x.ipynb", "resources": {"partition": "regular"}}
        assert browser.get(f"http://127.0.0.1:{server.port}/jupyter-hpc/api/slurm/kernels").status_code == 200
        assert browser.put(url, json=body).status_code == 403
        xsrf = browser.cookies.get("_xsrf")
        assert browser.put(url, json=body, headers={"X-XSRFToken": xsrf}).status_code == 200


def test_hostile_values_and_values_past_the_limits_are_refused_with_a_message_and_no_job(
        server, slurm, kernel_user, canary):
    for field in ("partition", "account", "qos", "time", "constraint", "reservation"):
        for value in (f"debug; touch {canary}", f"regular\ntouch {canary}", f"$(touch {canary})",
                      f"`touch {canary}`", "debug --uid=0"):
            response = hpc(server, "PUT", f"slurm/pending/{server.spec}",
                           json={"path": "evil.ipynb", "resources": {field: value}})
            assert response.status_code == 400, (field, value, response.text)
            message = response.json()["message"]
            assert field in message, message
    cases = {
        (("partition", "regular"), ("time", "02:00:00")): "60 minutes",
        (("partition", "nosuch"),): "debug, regular",
        (("account", "someoneelse"),): "testbed",
        (("nodes", 2),): "between 1 and 1",
        (("nodes", "two"),): "whole number",
        (("cpus_per_task", 999),): "cpus_per_task",
        (("gpus", 1),): "gpus",
        (("walltime", "1:00:00"),): "Unknown resource setting",
    }
    for resources, expected in cases.items():
        response = hpc(server, "PUT", f"slurm/pending/{server.spec}", json={"path": "a.ipynb", "resources": dict(resources)})
        assert response.status_code == 400, (resources, response.text)
        assert expected in response.json()["message"], (resources, response.json()["message"])
    assert slurm.jobs(kernel_user.pw_name) == []


def test_chosen_partition_and_time_reach_that_kernels_job_only(server, slurm, kernel_user):
    chosen = hpc(server, "PUT", f"slurm/pending/{server.spec}",
                 json={"path": "work.ipynb", "resources": {"partition": "regular", "time": "00:05:00"}})
    assert chosen.status_code == 200, chosen.text
    assert chosen.json()["resources"] == {"partition": "regular", "time": "00:05:00"}
    session = start_session(server, "work.ipynb")
    assert session.status_code == 201, session.text + server.log[-3000:]
    kernel_id = session.json()["kernel"]["id"]
    status = running_status(server, kernel_id)
    assert status["phase"] == "running" and status["partition"] == "regular"
    assert status["path"] == "work.ipynb" and status["node"] == slurm.node
    assert 0 < status["time_left_seconds"] <= 300
    job = show_job(status["job_id"])
    assert job["Partition"] == "regular" and job["TimeLimit"] == "00:05:00"

    # The Cluster sidebar's list: the user's jobs per site, this kernel's job marked as such.
    [site] = hpc(server, "GET", "slurm/jobs").json()["sites"]
    assert site["error"] == "", site
    [listed] = [j for j in site["jobs"] if str(j["JOBID"]) == status["job_id"]]
    assert listed["kernel_id"] == kernel_id and listed["PARTITION"] == "regular" and listed["TIME_LIMIT"] == 300
    assert listed["STATE"] == "RUNNING" and listed["USER"] == "hpcuser"

    # The next start of the same kernelspec, with no choice made, gets the kernelspec's settings.
    other = start_session(server, "other.ipynb")
    assert other.status_code == 201, other.text
    other_id = other.json()["kernel"]["id"]
    status = running_status(server, other_id)
    job = show_job(status["job_id"])
    assert job["Partition"] == "debug" and job["TimeLimit"] != "00:05:00"

    # Cancel from the sidebar: scancel of that job; its kernel dies with it.
    bad = hpc(server, "DELETE", f"slurm/jobs/{site['site']}/1;true")
    assert bad.status_code == 400 and "not a SLURM job id" in bad.json()["message"]
    done = hpc(server, "DELETE", f"slurm/jobs/{site['site']}/{status['job_id']}")
    assert done.status_code == 200, done.text
    deadline = time.monotonic() + 30
    while status["job_id"] in slurm.jobs(kernel_user.pw_name) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert status["job_id"] not in slurm.jobs(kernel_user.pw_name)
    while other_id in server.kernel_ids() and time.monotonic() < deadline:  # shut down in the background
        time.sleep(0.2)
    assert other_id not in server.kernel_ids() and kernel_id in server.kernel_ids()


def test_queued_kernel_shows_job_and_reason_twenty_pollers_cost_no_more_squeue_and_cancel_ends_the_start(
        server, slurm, kernel_user):
    scontrol("update", "PartitionName=regular", "State=DOWN")  # jobs there pend: Reason PartitionDown
    chosen = hpc(server, "PUT", f"slurm/pending/{server.spec}",
                 json={"path": "queued.ipynb", "resources": {"partition": "regular", "time": "00:05:00"}})
    assert chosen.status_code == 200, chosen.text
    started = time.monotonic()
    response = start_session(server, "queued.ipynb")  # answers at once: the queue wait holds no request
    assert response.status_code == 201 and time.monotonic() - started < 5, response.text

    deadline = time.monotonic() + 30
    queued = None
    while time.monotonic() < deadline:
        queued = next((k for k in slurm_kernels(server) if k["path"] == "queued.ipynb" and k["phase"] == "queued"
                       and k["reason"]), None)
        if queued is not None:
            break
        time.sleep(0.3)
    assert queued is not None, slurm_kernels(server)
    assert queued["job_id"] in slurm.jobs(kernel_user.pw_name)
    assert queued["reason"] == "PartitionDown" and queued["partition"] == "regular"
    assert queued["resources"] == {"partition": "regular", "time": "00:05:00"}

    def squeue_calls_with(clients: int, seconds: float = 4.0) -> int:
        stop = time.monotonic() + seconds
        subprocess.run(["sdiag", "--reset"], check=True, capture_output=True)

        def poll():
            with requests.Session() as browser:
                while time.monotonic() < stop:
                    browser.get(f"http://127.0.0.1:{server.port}/jupyter-hpc/api/slurm/kernels",
                                headers={"Authorization": f"token {server.token}"}, timeout=30).raise_for_status()
                    time.sleep(0.25)

        threads = [threading.Thread(target=poll) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return job_info_calls()

    one = squeue_calls_with(1)
    twenty = squeue_calls_with(20)
    # The provisioner's poll (every 0.5 s) is the only caller; a window may catch one more tick.
    assert one >= 4, one
    assert twenty <= one + 2, (one, twenty)

    cancelled = hpc(server, "DELETE", f"slurm/kernels/{queued['kernel_id']}")
    assert cancelled.status_code == 200, cancelled.text
    assert slurm.jobs(kernel_user.pw_name) == []
    deadline = time.monotonic() + 15
    while queued["kernel_id"] in server.kernel_ids() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert queued["kernel_id"] not in server.kernel_ids()
    assert slurm_kernels(server) == []
    assert f"Job {queued['job_id']} was cancelled at your request" in server.log
