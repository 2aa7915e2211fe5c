"""A SLURM kernel through a server restart, in a real JupyterLab in Debian's headless Chromium.

The notebook's job waits behind a held partition; the page is closed and the server SIGKILLed
meanwhile. The next server lists the kernel at once; a page opened later finds the notebook's
kernel still queued (status bar: Reason PartitionDown). The partition comes back: the job runs,
the notebook attaches under the same kernel id, a cell runs in the job, the walltime warning
comes (5-minute limit, reattached kernel), and the idle warning offers "Keep it". Screenshots
go to test-artifacts/.
"""

from __future__ import annotations

import signal

import pytest

from lab_browser import (  # noqa: F401 (browser is a fixture)
    Lab, add_slurm_user, browser, cancel_jobs, close_page, cori_with_slurm, lab_config, launcher_tile, open_lab,
    remove_remote_kernels, run_cell, screenshot, squeue, write_remote_kernel,
)
from testbed.slurm import hold_regular
from testbed.sshd import running_sshd
from testbed.users import ensure_user

USER = "hpcowned"
TILE = "Cori: My Env (KNL node)"
pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]


def status_bar(page):
    return page.locator(".jp-StatusBar-Widget .jp-hpc-StatusItem")


def test_a_notebook_queued_through_a_killed_server_is_found_attached_warned_and_kept(
        tmp_path, slurm, remote_python, browser, artifacts):
    user = ensure_user(USER)
    add_slurm_user(USER)
    write_remote_kernel(user, "myenv", "My Env", remote_python)
    hold_regular(True)
    labs: list[Lab] = []
    try:
        with running_sshd([USER], "lab-owned") as sshd:
            site = cori_with_slurm(sshd, USER, remote_python, idle_timeout=40, idle_warning=25)
            # Sessions in a file, so the notebook's session (and its kernel id) outlives the server too.
            config = lab_config({"cori": site}, SessionManager={"database_filepath": str(tmp_path / "sessions.db")})
            labs.append(Lab(tmp_path, config, name="lab1"))
            page = open_lab(browser, labs[0], workspace="owned")
            launcher_tile(page, TILE).click()
            dialog = page.locator(".jp-Dialog")
            form = dialog.locator(".jp-hpc-ResourceForm")
            form.wait_for()
            form.locator("select[name=partition]").select_option("regular")
            form.locator("[name=time]").fill("00:05:00")
            dialog.locator(".jp-mod-accept").click()
            status_bar(page).locator("text=Reason: PartitionDown").wait_for(timeout=60_000)
            [kernel_id] = labs[0].kernel_ids()
            [job] = squeue(USER)
            [session] = labs[0].api("GET", "sessions").json()
            notebook = session["path"]
            close_page(page)  # the browser goes away during the wait...
            labs[0].process.send_signal(signal.SIGKILL)  # ...and so does the server
            labs[0].process.wait(10)

            labs.append(Lab(tmp_path, config, name="lab2"))
            assert labs[1].kernel_ids() == [kernel_id]  # listed at once, still queued
            page = open_lab(browser, labs[1], tree=notebook)
            status_bar(page).locator(f"text=queued: job {job['id']}, Reason: PartitionDown").wait_for(timeout=60_000)
            screenshot(page, artifacts, "lab-owned-1-queued-after-restart")

            hold_regular(False)
            out = run_cell(page, "import os; print('job', os.environ['SLURM_JOB_ID'])", f"job {job['id']}")
            assert out.strip() == f"job {job['id']}"
            assert labs[1].kernel_ids() == [kernel_id]
            walltime = page.locator(".Toastify__toast", has_text=f"SLURM job {job['id']}")
            walltime.wait_for(timeout=30_000)
            assert "ends in" in walltime.inner_text()
            screenshot(page, artifacts, "lab-owned-2-walltime-warning")

            idle = page.locator(".Toastify__toast", has_text="Idle for")
            idle.wait_for(timeout=45_000)
            assert f"job {job['id']}" in idle.inner_text()
            screenshot(page, artifacts, "lab-owned-3-idle-warning")
            idle.get_by_role("button", name="Keep it").click()
            idle.wait_for(state="detached", timeout=30_000)
            status = next(k for k in labs[1].hpc("GET", "slurm/kernels").json()["kernels"] if k["kernel_id"] == kernel_id)
            assert status["idle_ends_in_seconds"] is None and status["idle_seconds"] < 15, status
            assert f"Kernel {kernel_id} kept by its user" in labs[1].log
            close_page(page)
    finally:
        for lab in labs:
            lab.stop()
        hold_regular(False)
        cancel_jobs(USER)
        remove_remote_kernels(user)
