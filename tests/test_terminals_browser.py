"""Issue 27 in Debian's headless Chromium: with two sites the launcher shows a terminal tile per
site ("Cori terminal", "Hopper terminal"), each opening JupyterLab's own terminal on a shell on
that site's login node; ``pwd`` there shows the home on the cluster; closing the tab ends the
shell. Screenshots under test-artifacts/.
"""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest

from lab_browser import Lab, browser, close_page, lab_config, launcher_tile, open_lab, screenshot  # noqa: F401
from terminal_helpers import TermClient
from testbed.sshd import running_sshd
from testbed.users import ensure_user

USER = "hpcterm"
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def two_sites_lab(tmp_path_factory, remote_python):
    ensure_user(USER)
    with running_sshd([USER], "tb-cori") as cori, running_sshd([USER], "tb-hopper") as hopper:
        sites = {
            "cori": {"display_name": "Cori", **cori.provisioner_config(USER, remote_python=remote_python)},
            "hopper": {"display_name": "Hopper", **hopper.provisioner_config(USER, remote_python=remote_python)},
        }
        with Lab.running(tmp_path_factory.mktemp("terminal-tiles"), lab_config(sites, remote_specs=False)) as lab:
            lab.sshd_ports = {"cori": cori.port, "hopper": hopper.port}
            yield lab


def type_in_terminal(page, text: str) -> None:
    page.locator(".jp-Terminal:visible .xterm-helper-textarea").focus()
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def test_a_tile_per_site_opens_a_shell_there_and_closing_the_tab_ends_it(two_sites_lab, browser, artifacts):  # noqa: F811
    lab = two_sites_lab
    home = os.path.expanduser(f"~{USER}")
    page = open_lab(browser, lab)
    try:
        cori, hopper = launcher_tile(page, "Cori terminal", "Other"), launcher_tile(page, "Hopper terminal", "Other")
        cori.wait_for()
        hopper.wait_for()
        screenshot(page, artifacts, "terminals-1-tiles")
        # The Kernel menu offers a terminal on the current kernel's job node (none here: greyed).
        page.locator(".lm-MenuBar-itemLabel", has_text="Kernel").click()
        item = page.locator(".lm-Menu-item", has_text="Terminal on this job's node")
        item.wait_for()
        assert "lm-mod-disabled" in (item.get_attribute("class") or "")
        page.keyboard.press("Escape")
        for site, tile in (("hopper", hopper), ("cori", cori)):
            before = {t["name"] for t in lab.api("GET", "terminals").json()}
            if site == "cori":  # back to the launcher for the second tile
                page.locator(".jp-FileBrowser-toolbar [data-command='launcher:create']").click()
                tile = launcher_tile(page, "Cori terminal", "Other").last
            tile.click()
            page.locator(".jp-Terminal:visible .xterm-helper-textarea").wait_for()
            (name,) = {t["name"] for t in lab.api("GET", "terminals").json()} - before
            type_in_terminal(page, 'pwd; echo "site port ${SSH_CONNECTION##* }"')
            # What the browser's terminal shows, read back through a second attachment's replay.
            watcher = TermClient(lab.port, lab.token, name)
            watcher.wait_for(rf"{home}\r\nsite port {lab.sshd_ports[site]}\r\n")
            watcher.close()
            screenshot(page, artifacts, f"terminals-2-{site}-pwd")
        # Closing the tab ends the shell: the terminal is gone from the server.
        names = {t["name"] for t in lab.api("GET", "terminals").json()}
        page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current .lm-TabBar-tabCloseIcon").click()
        deadline = time.monotonic() + 20
        while len({t["name"] for t in lab.api("GET", "terminals").json()}) == len(names) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert len(lab.api("GET", "terminals").json()) == len(names) - 1
        assert not [e for e in page.errors if "terminal" in e.lower()], page.errors
    except BaseException:
        screenshot(page, artifacts, "terminals-failed")
        raise
    finally:
        close_page(page)


@pytest.fixture(scope="module")
def slurm_lab(tmp_path_factory, remote_python, slurm):
    from lab_browser import add_slurm_user, cancel_jobs, cori_with_slurm, remove_remote_kernels, write_remote_kernel

    entry = ensure_user(USER)
    add_slurm_user(USER)
    write_remote_kernel(entry, "termjob", "Term Job", remote_python)
    with running_sshd([USER], "tb-slurm") as sshd:
        site = cori_with_slurm(sshd, USER, remote_python, queue_timeout=90)
        with Lab.running(tmp_path_factory.mktemp("terminal-job"), lab_config({"cori": site})) as lab:
            yield lab
    cancel_jobs(USER)
    remove_remote_kernels(entry)


@pytest.mark.timeout(600)  # the SLURM fixture may wait for another session's SLURM tests
def test_kernel_menu_opens_a_terminal_in_the_kernels_job_that_ends_with_it(slurm_lab, browser, artifacts):  # noqa: F811
    from lab_browser import squeue
    from terminal_helpers import page_terminal_names, page_terminal_screen

    lab = slurm_lab
    page = open_lab(browser, lab)
    try:
        launcher_tile(page, "Cori: Term Job (KNL node)").click()
        page.locator(".jp-Dialog .jp-hpc-ResourceForm").wait_for()  # the SLURM resource dialog
        page.locator(".jp-Dialog .jp-mod-accept").click()
        page.locator(".jp-StatusBar-Widget", has_text="Cori: Term Job (KNL node) | Idle").wait_for(timeout=150_000)
        [job] = squeue(USER)
        page.locator(".lm-MenuBar-itemLabel", has_text="Kernel").click()
        page.locator(".lm-Menu-item:not(.lm-mod-disabled)", has_text="Terminal on this job's node").click()
        page.locator(".jp-Terminal:visible .xterm-helper-textarea").wait_for()
        (name,) = page_terminal_names(page)
        model = lab.api("GET", f"terminals/{name}").json()["jupyter_hpc"]
        assert model["job"] == job["id"] and model["title"] == f"Cori, job {job['id']}", model
        page.locator(".jp-Terminal:visible .xterm-helper-textarea").focus()
        # The kernel is reached by SSH through the login node (node_access "jump"): so is its
        # job's shell, over the kernel's own node connection: a login, not a job step.
        page.keyboard.type('echo "in job $SLURM_JOB_ID on $(hostname) step ${SLURM_STEP_ID:-none}"')
        page.keyboard.press("Enter")
        deadline = time.monotonic() + 60
        while f"in job {job['id']} on " not in (screen := page_terminal_screen(page, name)):
            assert time.monotonic() < deadline, screen[-2000:]
        assert re.search(rf"in job {job['id']} on \S+ step none\r\n", screen), screen[-2000:]
        screenshot(page, artifacts, "terminals-3-job-node")
        # The Cluster sidebar's row of the running job has a Terminal button too: the same shell.
        page.locator(".jp-SideBar .lm-TabBar-tab[data-id='jupyter-hpc-cluster']").click()
        row = page.locator(f".jp-hpc-Cluster-jobs tr[data-job-id='{job['id']}']")
        row.locator("button", has_text="Terminal").click()
        while not (added := set(page_terminal_names(page)) - {name}):
            assert time.monotonic() < deadline, "the sidebar's Terminal made no terminal"
            time.sleep(0.3)
        (second,) = added
        page.locator(".jp-Terminal:visible .xterm-helper-textarea").wait_for()
        page.locator(".jp-Terminal:visible .xterm-helper-textarea").focus()
        # A job as such (no kernel to say how its node is reached): a job step, srun --pty.
        page.keyboard.type('echo "sidebar job $SLURM_JOB_ID step ${SLURM_STEP_ID:-none}"')
        page.keyboard.press("Enter")
        while not re.search(rf"sidebar job {job['id']} step \d+\r\n", screen := page_terminal_screen(page, second)):
            assert time.monotonic() < deadline, screen[-2000:]
        screenshot(page, artifacts, "terminals-3b-sidebar-job-node")
        subprocess.run(["scancel", job["id"]], check=True)
        for ended in (name, second):  # the SSH login (closed by the job's watch) and the job step
            while f"[Job {job['id']} ended" not in (screen := page_terminal_screen(page, ended)):
                assert time.monotonic() < deadline + 60, screen[-2000:]
        screenshot(page, artifacts, "terminals-4-job-ended")
        assert lab.api("GET", f"terminals/{name}").json()["jupyter_hpc"]["state"] == "ended"  # the tab stays
        # A kernel this server does not run has no job node.
        assert lab.hpc("POST", "terminals", json={"kernel_id": "nope"}).status_code == 404
    except BaseException:
        screenshot(page, artifacts, "terminals-job-failed")
        raise
    finally:
        close_page(page)
