"""A SLURM kernel's job is owned from sbatch on: recorded while queued, taken back or cancelled by
the next server, ended by its own lease when no server comes, and ended when idle.

Real jupyter_server processes (SIGKILLed), the real SLURM and sshd. A job waits in the queue
because its partition ``regular`` is held DOWN (Reason ``PartitionDown``) and runs once it is UP.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import requests

from demo_helpers import KernelSocket
from server_helpers import Server, record_path
from testbed.slurm import hold_regular
from testbed.waiting import wait_until

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def held(slurm):
    hold_regular(True)
    yield
    hold_regular(False)


@pytest.fixture
def servers(tmp_path):
    """Servers with jupyter_hpc's REST handlers, in the test's directory; stopped at the end."""
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {"jupyter_hpc": True}}}))
    started: list[Server] = []

    def start(*args: str, name: str = "") -> Server:
        server = Server(tmp_path, *args, name=name or f"server{len(started) + 1}")
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def hpc(server: Server, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, f"http://127.0.0.1:{server.port}/jupyter-hpc/api/{path}",
                            headers={"Authorization": f"token {server.token}"}, timeout=60, **kwargs)


def slurm_status(server: Server, kernel_id: str) -> dict | None:
    kernels = hpc(server, "GET", "slurm/kernels").json()["kernels"]
    return next((k for k in kernels if k["kernel_id"] == kernel_id), None)


def kernel_model(server: Server, kernel_id: str) -> dict | None:
    return next((k for k in server.api("GET", "kernels").json() if k["id"] == kernel_id), None)


def start_session(server: Server, spec: str, path: str) -> tuple[str, float]:
    """POST /api/sessions as JupyterLab does; the kernel id and how long the request took."""
    started = time.monotonic()
    response = server.api("POST", "sessions", json={"path": path, "name": path, "type": "notebook",
                                                     "kernel": {"name": spec}})
    elapsed = time.monotonic() - started
    assert response.status_code == 201, response.text
    return response.json()["kernel"]["id"], elapsed


def recorded(record: str = "") -> dict:
    path = record_path() if not record else record_path().with_name(record)
    return json.loads(path.read_text())["kernels"] if path.exists() else {}


def queued_job(kernel_id: str, record: str = "") -> str:
    """The job id recorded for a kernel while its job waits (written as sbatch answered)."""
    entry = wait_until(lambda: recorded(record).get(kernel_id), f"kernel {kernel_id} in the record", 30)
    job = entry["provisioner_info"].get("queued_job")
    assert job, entry
    return job["job_id"]


def test_queued_job_outlives_a_killed_server_and_the_next_one_attaches_keeps_and_idles_it_out(
        slurm, slurm_spec, kernel_user, held, servers):
    spec = slurm_spec("hpc-slurm-owned", partition="regular", time="00:05:00", lease=60,
                      idle_timeout=24, idle_warning=12)
    first = servers()
    kernel_id, elapsed = start_session(first, spec, "owned.ipynb")
    assert elapsed < 5, f"POST /api/sessions took {elapsed:.1f} s while the job waits"
    job_id = queued_job(kernel_id)
    assert slurm.jobs(kernel_user.pw_name) == [job_id]
    assert kernel_model(first, kernel_id)["execution_state"] == "starting"
    status = wait_until(lambda: (s := slurm_status(first, kernel_id)) and s["reason"] and s, "the queue state")
    assert (status["phase"], status["job_id"], status["reason"]) == ("queued", job_id, "PartitionDown")

    first.kill()  # SIGKILL: nothing is shut down, the job stays queued
    second = servers()
    assert kernel_model(second, kernel_id) is not None, "the queued kernel is listed at once after the restart"
    status = wait_until(lambda: (s := slurm_status(second, kernel_id)) and s["reason"] and s, "the queue state again")
    assert (status["phase"], status["job_id"]) == ("queued", job_id)

    hold_regular(False)
    wait_until(lambda: slurm_status(second, kernel_id)["phase"] == "running", "the job's kernel attached", 90)
    ws = KernelSocket(second, kernel_id)
    try:
        ran = ws.execute("import os; print(os.environ['SLURM_JOB_ID'])")
        assert ran["error"] is None and ran["stdout"].strip() == job_id, ran
        status = slurm_status(second, kernel_id)
        assert status["phase"] == "running" and 0 < status["time_left_seconds"] <= 300, status
        assert recorded()[kernel_id]["provisioner_info"]["job_id"] == job_id  # the record follows the attach

        # idle_timeout: the warning comes idle_warning seconds ahead; a cell keeps the kernel
        warned = wait_until(lambda: slurm_status(second, kernel_id)["idle_ends_in_seconds"] is not None,
                            "the idle warning", 30)
        assert warned
        assert ws.execute("x = 1")["error"] is None
        assert slurm_status(second, kernel_id)["idle_ends_in_seconds"] is None
    finally:
        ws.close()
    wait_until(lambda: kernel_model(second, kernel_id) is None, "the idle kernel ended", 60)
    wait_until(lambda: slurm.jobs(kernel_user.pw_name) == [], "its job gone", 30)
    assert f"Ending kernel {kernel_id}" in second.log and f"its job {job_id}: idle for" in second.log


def test_queued_jobs_cancelled_by_request_or_by_the_next_server_and_an_unowned_one_ends_with_its_lease(
        slurm, slurm_spec, kernel_user, held, servers):
    spec = slurm_spec("hpc-slurm-leased", partition="regular", lease=20)
    kept = servers(name="kept")  # its record: the default file
    lone = servers("--HPCMappingKernelManager.record_file=" + str(record_path().with_name("lone.json")), name="lone")

    cancelled_id, _ = start_session(kept, spec, "cancelled.ipynb")
    cancelled_job = queued_job(cancelled_id)
    started = time.monotonic()
    assert kept.api("DELETE", f"kernels/{cancelled_id}").status_code == 204
    wait_until(lambda: cancelled_job not in slurm.jobs(kernel_user.pw_name), "the cancelled job gone", 15)
    assert time.monotonic() - started < 15

    left_id, _ = start_session(kept, spec, "left.ipynb")
    left_job = queued_job(left_id)
    lone_id, _ = start_session(lone, spec, "lone.ipynb")
    lone_job = queued_job(lone_id, "lone.json")
    kept.kill()
    lone.kill()

    again = servers("--HPCMappingKernelManager.reattach_queued=cancel", name="again")
    wait_until(lambda: left_job not in slurm.jobs(kernel_user.pw_name), "the left job cancelled", 30)
    # The server unlists the kernel once it has also removed the job's staged request (one
    # more round trip to the login node after scancel).
    wait_until(lambda: kernel_model(again, left_id) is None, "the cancelled job's kernel unlisted", 10)
    assert left_id not in recorded()

    hold_regular(False)  # the lone server's job runs, and no server ever comes for it
    ran_at = wait_until(lambda: subprocess.run(["squeue", "-h", "-j", lone_job, "-t", "RUNNING", "-o", "%i"],
                                               capture_output=True, text=True).stdout.strip() and time.monotonic(),
                        "the unowned job running", 60)
    wait_until(lambda: lone_job not in slurm.jobs(kernel_user.pw_name), "the unowned job ended by its lease", 20 + 30)
    ended_after = time.monotonic() - ran_at
    assert ended_after < 20 + 30, ended_after
    assert processes_of_job(lone_job) == [], "the unowned job's kernel still runs"


def test_cull_idle_timeout_ends_ssh_and_slurm_kernels_and_the_job(slurm, slurm_spec, ssh_spec, kernel_user, servers):
    """jupyter_server's own culler still ends our kernels, a SLURM kernel's job with it."""
    culling = servers("--MappingKernelManager.cull_idle_timeout=6", "--MappingKernelManager.cull_interval=2")
    on_login = culling.api("POST", "kernels", json={"name": ssh_spec("hpc-ssh-culled")}).json()["id"]
    in_job = culling.api("POST", "kernels", json={"name": slurm_spec("hpc-slurm-culled", idle_timeout=None)}).json()["id"]
    job_id = wait_until(lambda: (s := slurm_status(culling, in_job)) and s["phase"] == "running" and s["job_id"],
                        "the SLURM kernel running", 60)
    wait_until(lambda: culling.kernel_ids() == [], "both kernels culled", 60)
    wait_until(lambda: job_id not in slurm.jobs(kernel_user.pw_name), "the culled kernel's job gone", 30)
    for kernel_id in (on_login, in_job):
        assert any("Culling" in line and kernel_id in line for line in culling.log.splitlines()), kernel_id


def processes_of_job(job_id: str) -> list[int]:
    """Processes (any user's: the test runs as root) whose environment names the job."""
    from pathlib import Path

    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if f"SLURM_JOB_ID={job_id}\0".encode() in (proc / "environ").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def test_a_stopped_server_ends_its_running_and_queued_jobs(slurm, slurm_spec, kernel_user, held, servers):
    """What the hub's idle culler does to a user's server (SIGTERM): every kernel is shut down,
    a job still in the queue cancelled rather than waited for."""
    server = servers()
    running, _ = start_session(server, slurm_spec("hpc-slurm-stopped"), "running.ipynb")
    queued, _ = start_session(server, slurm_spec("hpc-slurm-stopped-queued", partition="regular"), "queued.ipynb")
    wait_until(lambda: slurm_status(server, running)["phase"] == "running", "one kernel running", 60)
    try:
        queued_job(queued)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{server.log[-4000:]}") from None
    assert len(slurm.jobs(kernel_user.pw_name)) == 2
    started = time.monotonic()
    server.stop(timeout=60)
    assert server.process.returncode is not None and time.monotonic() - started < 60
    wait_until(lambda: slurm.jobs(kernel_user.pw_name) == [], "both jobs gone", 30)
    assert recorded() == {}
