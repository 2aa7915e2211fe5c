"""Issue 16 end to end: a kernelspec the user dropped into their home on the cluster shows in a
real JupyterLab's launcher, in Debian's headless Chromium, as a login tile and a SLURM tile,
each with the remote logo; the SLURM tile runs its cell inside a job.

The server is configured only with ``c.HPCSites.sites`` and RemoteKernelSpecManager (no local
kernelspec). The user ``hpclab`` and the sshd are this module's own; the SLURM is the bed's.
"""

from __future__ import annotations

import pytest

from lab_browser import (  # noqa: F401 (browser is a fixture)
    Lab, add_slurm_user, browser, cancel_jobs, close_page, cori_with_slurm, lab_config, launcher_tile, open_lab, png,
    remove_remote_kernels, run_cell, screenshot, show_job, squeue, write_remote_kernel,
)
from testbed.sshd import running_sshd
from testbed.users import ensure_user

USER = "hpclab"
LOGO = png(64, 64, (214, 40, 40))
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def lab_user():
    return ensure_user(USER)


@pytest.fixture(scope="module")
def lab(tmp_path_factory, lab_user, remote_python, slurm):
    add_slurm_user(USER)
    write_remote_kernel(lab_user, "myenv", "My Env", remote_python, logo=LOGO)
    with running_sshd([USER], "lab-launcher") as sshd:
        site = cori_with_slurm(sshd, USER, remote_python, queue_timeout=90)
        with Lab.running(tmp_path_factory.mktemp("lab-launcher"), lab_config({"cori": site})) as lab:
            yield lab
    cancel_jobs(USER)
    remove_remote_kernels(lab_user)


def test_launcher_tiles_with_the_remote_logo_and_the_slurm_tile_runs_in_a_job(lab, browser, artifacts):
    # Its own two, among the cluster's own (Debian's R kernel, the venv's) that discovery lists too.
    assert {"cori-knl-myenv", "cori-login-myenv"} <= set(lab.api("GET", "kernelspecs").json()["kernelspecs"])
    page = open_lab(browser, lab)
    try:
        for label in ("Cori: My Env (login)", "Cori: My Env (KNL node)"):
            tile = launcher_tile(page, label)
            tile.wait_for()
            logo = tile.locator("img")
            # Loaded and decoded in the page: the remote 64x64 logo, byte for byte.
            logo.wait_for()
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=logo.element_handle())
            assert logo.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [64, 64]
            assert page.request.get(logo.evaluate("img => img.src")).body() == LOGO
        screenshot(page, artifacts, "lab-launcher-tiles")

        launcher_tile(page, "Cori: My Env (KNL node)").click()
        # A SLURM tile asks for resources first (issue 19's dialog); the kernelspec's own settings are the default.
        form = page.locator(".jp-Dialog .jp-hpc-ResourceForm")
        form.wait_for()
        assert form.locator("select[name=partition]").input_value() == "debug"
        page.locator(".jp-Dialog .jp-mod-accept").click()
        page.locator(".jp-StatusBar-Widget", has_text="Cori: My Env (KNL node) | Idle").wait_for(timeout=120_000)
        text = run_cell(page, "import os, getpass; print('job', os.environ['SLURM_JOB_ID'], os.environ['MYENV'], "
                              "getpass.getuser())", "job ")
        [job] = squeue(USER)
        assert text.split() == ["job", job["id"], "1", USER], text
        assert job["state"] == "RUNNING" and job["partition"] == "debug"
        assert show_job(job["id"])["UserId"].startswith(USER)
        screenshot(page, artifacts, "lab-launcher-slurm-cell")
        assert not [e for e in page.errors if "jupyter-hpc" in e], page.errors
    finally:
        close_page(page)
