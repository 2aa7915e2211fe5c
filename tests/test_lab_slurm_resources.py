"""Issue 19 in a real JupyterLab in Debian's headless Chromium, against the real SLURM and sshd.

A SLURM tile asks for resources (the test SLURM's partitions ``debug`` and ``regular``, their
limits in the form and enforced by it); the choice reaches that kernel's job (``scontrol show
job``); while the partition is held the status bar and the notebook toolbar show the job and its
Reason, with Cancel; then the walltime left, the offer to save, and the Cluster sidebar. A hostile value typed into
the form is refused by the server, its message in the form, and nothing is submitted. Twenty
pages open while a kernel is queued cost slurmctld no more job queries than one (``sdiag``).
Screenshots of each step go to test-artifacts/.

``regular`` is capped at one hour for the module (restored after); a job is held in the queue by
setting that partition DOWN (Reason ``PartitionDown``) and released by setting it UP again.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from lab_browser import (  # noqa: F401 (browser is a fixture)
    Lab, add_slurm_user, browser, cancel_jobs, close_page, cori_with_slurm, lab_config, launcher_tile, open_lab, png,
    remove_remote_kernels, run_cell, screenshot, show_job, squeue, write_remote_kernel,
)
from testbed.slurm import hold_regular
from testbed.sshd import running_sshd
from testbed.users import ensure_user
from testbed.waiting import wait_until

USER = "hpclab"
TILE = "Cori: My Env (KNL node)"
pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]


def scontrol(*words: str) -> None:
    subprocess.run(["scontrol", "update", *words], check=True, capture_output=True)


@pytest.fixture(scope="module")
def lab(tmp_path_factory, remote_python, slurm):
    user = ensure_user(USER)
    add_slurm_user(USER)
    write_remote_kernel(user, "myenv", "My Env", remote_python, logo=png(64, 64, (40, 90, 200)))
    scontrol("PartitionName=regular", "MaxTime=01:00:00")
    try:
        with running_sshd([USER], "lab-slurm") as sshd:
            site = cori_with_slurm(sshd, USER, remote_python, queue_timeout=300)
            with Lab.running(tmp_path_factory.mktemp("lab-slurm"), lab_config({"cori": site})) as lab:
                yield lab
    finally:
        cancel_jobs(USER)
        scontrol("PartitionName=regular", "MaxTime=INFINITE", "State=UP")
        remove_remote_kernels(user)


@pytest.fixture
def clean(lab):
    """Each test starts with no kernel and no job of the user, and leaves none, regular UP."""
    yield
    hold_regular(False)
    for kernel_id in lab.kernel_ids():
        lab.api("DELETE", f"kernels/{kernel_id}")
    cancel_jobs(USER)
    wait_until(lambda: not squeue(USER), "the user's jobs gone")


def job_info_calls() -> int:
    """slurmctld's count of job-info RPCs (squeue and friends) since the last ``sdiag --reset``."""
    out = subprocess.run(["sdiag"], capture_output=True, text=True, check=True).stdout
    _, _, by_type = out.partition("Remote Procedure Call statistics by message type")
    by_type, _, _ = by_type.partition("Remote Procedure Call statistics by user")
    return sum(int(n) for n in re.findall(r"^\s+REQUEST_JOB_INFO\S*\s*\(\s*\d+\)\s+count:(\d+)", by_type, re.M))


def saved_sources(lab: Lab, name: str) -> str:
    """The code of the notebook's cells as saved on disk ('' while a save is still writing it)."""
    try:
        return "".join("".join(cell["source"]) for cell in json.loads((lab.root_dir / name).read_text())["cells"])
    except (OSError, ValueError, KeyError):
        return ""


def pending_job() -> dict[str, str]:
    return wait_until(lambda: next((j for j in squeue(USER) if j["state"] == "PENDING"), None), "a pending job")


def status_bar(page):
    return page.locator(".jp-StatusBar-Widget .jp-hpc-StatusItem")


def toolbar_status(page):
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-NotebookPanel-toolbar .jp-hpc-ToolbarItem")


def start_from_tile(page, partition: str = "regular", time_limit: str = "00:05:00"):
    """Click the SLURM tile, choose in the dialog, Start; the dialog closes."""
    launcher_tile(page, TILE).click()
    dialog = page.locator(".jp-Dialog")
    form = dialog.locator(".jp-hpc-ResourceForm")
    form.wait_for()
    form.locator("select[name=partition]").select_option(partition)
    form.locator("[name=time]").fill(time_limit)
    dialog.locator(".jp-mod-accept").click()
    dialog.wait_for(state="detached")


def test_dialog_partitions_and_limits_the_choice_reaches_the_job_queued_with_reason_then_walltime_left(
        lab, browser, artifacts, clean):
    hold_regular(True)
    page = open_lab(browser, lab, workspace="dialog")
    try:
        launcher_tile(page, TILE).click()
        dialog = page.locator(".jp-Dialog")
        form = dialog.locator(".jp-hpc-ResourceForm")
        form.wait_for()
        partition = form.locator("select[name=partition]")
        assert partition.locator("option").evaluate_all("os => os.map(o => o.value)") == ["debug", "regular"]
        assert partition.input_value() == "debug"  # the kernelspec's own setting
        time_hint = form.locator(".jp-hpc-ResourceForm-row", has=page.locator("[name=time]")).locator(
            ".jp-hpc-ResourceForm-hint")
        assert time_hint.inner_text() == "no time limit"
        partition.select_option("regular")
        assert time_hint.inner_text() == "at most 60 min"  # regular's MaxTime, from sinfo
        start = dialog.locator(".jp-mod-accept")
        form.locator("[name=time]").fill("02:00:00")
        errors = form.locator(".jp-hpc-ResourceForm-errors")
        assert errors.inner_text() == "time: at most 60 min here"
        assert start.is_disabled()
        screenshot(page, artifacts, "lab-slurm-1-dialog-limit")
        form.locator("[name=time]").fill("00:05:00")
        assert errors.inner_text() == "" and start.is_enabled()
        screenshot(page, artifacts, "lab-slurm-2-dialog-choice")
        start.click()
        dialog.wait_for(state="detached")

        # Held in the queue: the status bar and the notebook's toolbar say so, with job and Reason.
        status_bar(page).locator("text=Reason: PartitionDown").wait_for(timeout=60_000)
        job = pending_job()
        expected = f"SLURM queued: job {job['id']}, Reason: PartitionDown"
        for view in (status_bar(page), toolbar_status(page)):
            assert view.locator(".jp-hpc-StatusView-text").inner_text().startswith(expected)
            assert view.locator(".jp-hpc-StatusView-cancel").is_visible()
        shown = show_job(job["id"])
        assert (shown["Partition"], shown["TimeLimit"], shown["JobState"], shown["Reason"]) == (
            "regular", "00:05:00", "PENDING", "PartitionDown")
        screenshot(page, artifacts, "lab-slurm-3-queued")

        # Released: the kernel starts in that job; the status bar counts its walltime down.
        hold_regular(False)
        page.locator(".jp-StatusBar-Widget", has_text=f"{TILE} | Idle").wait_for(timeout=180_000)
        text = run_cell(page, "import os; print('job', os.environ['SLURM_JOB_ID'])", "job ")
        assert text.split() == ["job", job["id"]], text
        shown = show_job(job["id"])
        assert (shown["Partition"], shown["TimeLimit"], shown["JobState"]) == ("regular", "00:05:00", "RUNNING")
        left = status_bar(page).locator(".jp-hpc-StatusView-text")
        wait_until(lambda: " left" in left.inner_text(), "the walltime left in the status bar")
        match = re.fullmatch(rf"SLURM job {job['id']} on (\S+): 0:0([0-4]):(\d\d) left", left.inner_text())
        assert match, left.inner_text()
        assert match.group(1) == shown["NodeList"]
        assert not status_bar(page).locator(".jp-hpc-StatusView-cancel").is_visible()  # running: no Cancel here

        # Five minutes is under ten: the offer to save came at once; "Save now" saves the notebook.
        offer = page.locator(".Toastify__toast", has_text=f"SLURM job {job['id']}")
        offer.wait_for()
        screenshot(page, artifacts, "lab-slurm-4-running-walltime")
        offer.get_by_role("button", name="Save now").click()
        [session] = lab.api("GET", "sessions").json()
        wait_until(lambda: "SLURM_JOB_ID" in saved_sources(lab, session["path"]), "the notebook saved with its cell")

        # The Cluster sidebar lists the job (the user's squeue on the site), marked as a kernel's; Cancel
        # there shuts the kernel down and ends the job.
        page.locator(".jp-SideBar [data-id='jupyter-hpc-cluster']").click()
        row = page.locator(f".jp-hpc-Cluster tr[data-job-id='{job['id']}']")
        row.wait_for()
        cells = row.locator("td").all_inner_texts()
        assert cells[0] == job["id"] and cells[1].endswith("(kernel)") and cells[2:4] == ["RUNNING", "regular"], cells
        assert cells[4].endswith("/ 0:05:00") and cells[5] == shown["NodeList"], cells
        assert "jp-hpc-mod-kernel" in row.get_attribute("class")
        screenshot(page, artifacts, "lab-slurm-5-cluster-sidebar")
        row.get_by_role("button", name=f"Cancel job {job['id']}").click()
        page.locator(".jp-Dialog", has_text=f"Cancel job {job['id']}?").locator(".jp-mod-warn").click()
        wait_until(lambda: not squeue(USER) and not lab.kernel_ids(), "the kernel and its job ended")
        row.wait_for(state="detached")
        assert not [e for e in page.errors if "jupyter-hpc" in e], page.errors
    finally:
        close_page(page)


def test_cancel_in_the_status_bar_cancels_the_queued_job_and_ends_the_start(lab, browser, artifacts, clean):
    hold_regular(True)
    page = open_lab(browser, lab, workspace="cancel")
    try:
        start_from_tile(page)
        status_bar(page).locator("text=Reason: PartitionDown").wait_for(timeout=60_000)
        job = pending_job()
        status_bar(page).locator(".jp-hpc-StatusView-cancel").click()
        confirm = page.locator(".jp-Dialog", has_text=f"Cancel job {job['id']}?")
        confirm.wait_for()
        screenshot(page, artifacts, "lab-slurm-6-cancel-confirm")
        confirm.get_by_role("button", name="Cancel job").click()

        wait_until(lambda: show_job(job["id"])["JobState"] == "CANCELLED", "the job cancelled")
        wait_until(lambda: not lab.hpc("GET", "slurm/kernels").json()["kernels"], "the start ended on the server")
        assert lab.kernel_ids() == [] and squeue(USER) == []
        # The start fails saying why, and the page no longer shows a job that is gone.
        page.locator(".jp-Dialog", has_text=f"Job {job['id']} was cancelled at your request before its kernel "
                     "started").wait_for()
        status_bar(page).wait_for(state="hidden")
        screenshot(page, artifacts, "lab-slurm-6-cancelled")
    finally:
        close_page(page)


def test_hostile_values_typed_into_the_form_are_refused_by_the_server_in_the_form_and_nothing_runs(
        lab, browser, artifacts, canary, clean):
    page = open_lab(browser, lab, workspace="hostile")
    try:
        launcher_tile(page, TILE).click()
        dialog = page.locator(".jp-Dialog")
        form = dialog.locator(".jp-hpc-ResourceForm")
        errors = form.locator(".jp-hpc-ResourceForm-errors")
        start = dialog.locator(".jp-mod-accept")
        form.wait_for()
        # The time must be a walltime for the form to check it against the limit: refused as typed.
        form.locator("[name=time]").fill(f"00:05:00; touch {canary}")
        assert errors.inner_text() == "time: a walltime such as 00:30:00 or 1-00:00:00" and start.is_disabled()
        form.locator("[name=time]").fill("00:05:00")
        for field, value in (("constraint", f"knl$(touch {canary})"), ("reservation", f"r;touch {canary}"),
                             ("constraint", f"knl`touch {canary}`")):
            form.locator(f"[name={field}]").fill(value)
            assert start.is_enabled()  # what may reach sbatch is the server's decision
            start.click()
            # The server refused: the form is back, holding the values, with the server's message.
            message = f"Refused by the server: {field}={value!r} holds characters SLURM does not use there"
            form.locator(".jp-hpc-ResourceForm-errors", has_text=message).wait_for()
            assert form.locator(f"[name={field}]").input_value() == value
            screenshot(page, artifacts, f"lab-slurm-7-refused-{field}")
            form.locator(f"[name={field}]").fill("")
        dialog.locator(".jp-Dialog-button.jp-mod-reject").click()
        form.wait_for(state="detached")
        # Cancel ends the start quietly: no error box, only JupyterLab's kernel picker, once.
        picker = page.locator(".jp-Dialog", has_text="Select Kernel")
        picker.wait_for()
        assert page.locator(".jp-Dialog").count() == 1, page.locator(".jp-Dialog").all_inner_texts()
        screenshot(page, artifacts, "lab-slurm-7-cancelled")
        picker.locator(".jp-Dialog-button.jp-mod-reject").click()  # No Kernel
        page.locator(".jp-Dialog").wait_for(state="detached")
        page.wait_for_timeout(1500)  # an error box or a second picker would show by now
        assert page.locator(".jp-Dialog").count() == 0
        assert lab.kernel_ids() == [] and squeue(USER) == []
        assert not os.path.exists(canary)
        assert "holds characters SLURM does not use" in lab.log  # the server's 400s, one per Start
    finally:
        close_page(page)


def test_twenty_pages_on_a_queued_kernel_cost_slurmctld_no_more_job_queries_than_one(lab, browser, artifacts, clean):
    hold_regular(True)
    first = open_lab(browser, lab, workspace="tab0")
    context = first.context
    pages = [first]
    polls: dict[int, int] = {}

    def count_polls(index: int, page) -> None:
        polls[index] = 0
        page.on("request", lambda r: r.url.partition("?")[0].endswith("/jupyter-hpc/api/slurm/kernels") and
                polls.__setitem__(index, polls[index] + 1))

    def job_queries_in(seconds: float = 8.0) -> tuple[int, dict[int, int]]:
        for index in list(polls):
            polls[index] = 0
        subprocess.run(["sdiag", "--reset"], check=True, capture_output=True)
        first.wait_for_timeout(seconds * 1000)
        return job_info_calls(), dict(polls)

    try:
        count_polls(0, first)
        start_from_tile(first)
        status_bar(first).locator("text=Reason: PartitionDown").wait_for(timeout=60_000)
        one, one_polls = job_queries_in()
        # Nineteen more tabs of the same browser, each on its own workspace (no second start of the
        # notebook), each polling the kernels' state while one is queued.
        for index in range(1, 20):
            page = context.new_page()
            count_polls(index, page)
            page.goto(lab.url(workspace=f"tab{index}"))
            page.locator(".jp-Launcher").first.wait_for()
            pages.append(page)
        twenty, twenty_polls = job_queries_in()
        screenshot(pages[-1], artifacts, "lab-slurm-8-twentieth-tab")
        print(f"job-info RPCs in 8 s: one page {one} ({one_polls}), twenty pages {twenty} ({twenty_polls})")
        assert one_polls[0] >= 4  # the page polls the server about every second while a kernel waits
        assert len(twenty_polls) == 20 and min(twenty_polls.values()) >= 3, twenty_polls
        # slurmctld sees only the provisioner's own poll (every 0.5 s): as many queries either way,
        # give or take the one tick a window can catch.
        assert one >= 8, one
        assert twenty <= one + 2, (one, twenty)
        assert squeue(USER)[0]["state"] == "PENDING"
    finally:
        for page in pages[1:]:
            page.close()
        close_page(first)
