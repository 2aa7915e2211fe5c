"""`jupyter hpc demo` end to end in Debian's headless Chromium, as a newcomer meets it.

Started as a non-root user exactly as the README says (here with ``--no-browser``), with a
real SLURM on the machine: the hub's login page takes the printed password and the current
one-time code; JupyterLab opens with the kernelspecs of Cori's home in the launcher (myenv
with its logo); a cell runs on the login node (``SSH_CONNECTION`` is only set there); the file
browser opens in Cori's home, the first click on a launcher tile makes a notebook there
whose cell runs, and the top level (one click up) shows home and scratch, where what the
launcher makes lands in home; a notebook saved in the browser is a file in Cori's
home with the edited content; the magics submit a job that ``%squeue`` shows. Then Ctrl-C
leaves no process, listening port or file of the demo's behind. A screenshot of each step is
kept under test-artifacts/.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pyotp
import pytest

from demo_helpers import DEMO_USER, Demo, ensure_demo_venv, home_files, tmp_entries
from lab_browser import add_slurm_user, browser, cancel_jobs, launcher_tile, run_cell, screenshot, squeue  # noqa: F401
from terminal_helpers import open_launcher_terminal
from testbed.users import ensure_user

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def demo_bin():
    ensure_user(DEMO_USER)
    return ensure_demo_venv()


def listening_ports(uid: int) -> list[str]:
    """TCP ports that processes of ``uid`` listen on (``ss`` shows each socket's owner)."""
    out = subprocess.run(["ss", "-Hltne"], capture_output=True, text=True, check=True).stdout
    return [line.split()[3] for line in out.splitlines() if f" uid:{uid} " in f" {line} "]


def ipykernel_logo(bin_dir, name: str) -> bytes:
    """The logo file ``name`` (logo-svg.svg, logo-64x64.png) that ipykernel ships."""
    found = subprocess.run([str(bin_dir / "python"), "-c", "import ipykernel, os; print(os.path.dirname(ipykernel.__file__))"],
                           capture_output=True, text=True, check=True).stdout.strip()
    return (Path(found) / "resources" / name).read_bytes()


def log_in(page, demo: Demo) -> str:
    name, (password, secret) = next(iter(demo.users.items()))
    page.goto(demo.url)
    page.locator("#username_input").fill(name)
    page.locator("#password_input").fill(password)
    page.locator("#otp_input").fill(pyotp.TOTP(secret).now())
    return name


@pytest.mark.timeout(600)
def test_the_whole_demo_in_chromium(demo_bin, slurm, browser, artifacts):  # noqa: F811
    add_slurm_user(DEMO_USER)  # an association in SLURM's accounting, as a cluster's users have
    entry = ensure_user(DEMO_USER)
    before = home_files(), tmp_entries()
    demo = Demo(demo_bin)
    try:
        run_the_demo(demo, entry, before, browser, artifacts, demo_bin)
    finally:
        demo.kill()  # a failed test's leftovers (after a passing one, nothing is left to kill)


def run_the_demo(demo: Demo, entry, before, browser, artifacts, demo_bin) -> None:  # noqa: F811
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(120_000)
    try:
        demo.wait_ready()
        assert demo.hub, demo.output
        assert "SLURM job" in demo.output  # a real SLURM answers, so the demo offers its target
        cluster_home = demo.state_dir() / "cluster" / "home"

        # 1. The hub's login page: password + one-time code.
        name = log_in(page, demo)
        assert name == DEMO_USER
        screenshot(page, artifacts, "demo-1-login")
        page.locator("#login_submit").click()

        # 2. JupyterLab opens in Cori's home/ (the top level one click up); the launcher shows
        #    the kernelspecs of Cori's home with ipykernel's logo, not JupyterLab's letter.
        page.locator(".jp-Launcher").first.wait_for(timeout=180_000)
        plain = launcher_tile(page, "Cori: Python 3 (login)")
        myenv = launcher_tile(page, "Cori: myenv (login)")
        plain.wait_for()
        myenv.wait_for()
        for tile, spec in ((plain, "cori-login-python"), (myenv, "cori-login-myenv")):
            logo = tile.locator("img")
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=logo.element_handle())
            source = logo.get_attribute("src")
            assert f"/kernelspecs/{spec}/logo-" in source, source
            served = page.request.get(page.url.split("/user/")[0] + source.split("?")[0] if source.startswith("/") else source)
            assert served.ok and served.body() == ipykernel_logo(demo_bin, source.rsplit("/", 1)[-1].split("?")[0])
        assert plain.locator(".jp-LauncherCard-noKernelIcon").count() == 0  # no fallback letter
        crumbs = page.locator(".jp-FileBrowser .jp-BreadCrumbs")
        crumbs.locator("span", has_text="home").first.wait_for()
        listing = page.locator(".jp-FileBrowser .jp-DirListing-content .jp-DirListing-itemName")
        assert "scratch" not in listing.all_inner_texts()  # inside home/, not at the top
        assert page.get_by_text("official Jupyter news").count() == 0  # the demo asks no news question
        screenshot(page, artifacts, "demo-2-launcher")

        # 3. The first click on a launcher tile: a notebook in home/, whose first cell runs
        #    there, on the login node (SSH_CONNECTION is only set over SSH).
        plain.first.click()
        page.locator(".jp-NotebookPanel-toolbar .jp-KernelName", has_text="Cori: Python 3 (login)").wait_for()
        page.locator(".jp-StatusBar-Widget", has_text="Cori: Python 3 (login) | Idle").wait_for()
        text = run_cell(page, "import os; print('as', os.getuid(), 'in', os.getcwd())", "as ")
        assert text.strip() == f"as {entry.pw_uid} in {cluster_home}", text
        assert (cluster_home / "Untitled.ipynb").exists()
        text = run_cell(page, "print('via ssh:', os.environ['SSH_CONNECTION'])", "via ssh:")
        assert text.strip().endswith(f"127.0.0.1 {demo.login_port()}"), text
        page.locator(".jp-DirListing-item[title^='Name: Untitled.ipynb']").wait_for()
        screenshot(page, artifacts, "demo-3-first-notebook")

        # 4. One click up: the top level holds home and scratch. What the launcher makes
        #    there lands in home/ and opens (a text file here).
        page.locator(".jp-FileBrowser .jp-BreadCrumbs-home").click()
        page.locator(".jp-DirListing-item[title^='Name: scratch']").wait_for()
        assert {"home", "scratch"} <= set(listing.all_inner_texts())
        page.locator(".jp-FileBrowser-toolbar [data-command='launcher:create']").click()
        launcher_tile(page, "Text File", category="Other").last.click()
        page.locator(".lm-TabBar-tab.jp-mod-current", has_text="untitled.txt").wait_for()
        assert (cluster_home / "untitled.txt").exists()
        # New Folder at the top: made in home/, the browser goes there to name it, no error box.
        page.locator(".jp-FileBrowser .jp-BreadCrumbs-home").click()
        page.locator(".jp-DirListing-item[title^='Name: scratch']").wait_for()
        page.locator(".jp-FileBrowser-toolbar [data-command='filebrowser:create-new-directory']").click()
        page.locator(".jp-DirListing-editor").wait_for()
        page.keyboard.type("results")
        page.keyboard.press("Enter")
        page.locator(".jp-DirListing-item[title^='Name: results']").wait_for()
        assert (cluster_home / "results").is_dir() and page.locator(".jp-Dialog").count() == 0
        crumbs.locator("span", has_text="home").first.wait_for()
        page.locator(".jp-FileBrowser .jp-BreadCrumbs-home").click()
        page.locator(".jp-DirListing-item[title^='Name: scratch']").dblclick()
        page.locator(".jp-DirListing-item[title^='Name: README.txt']").wait_for()
        screenshot(page, artifacts, "demo-4-scratch")

        # 4b. The SLURM tile asks for resources; Cancel there cancels quietly: no error box, the
        #     notebook open with no kernel, JupyterLab's kernel picker offered once, no job.
        page.locator(".jp-FileBrowser-toolbar [data-command='launcher:create']").click()
        launcher_tile(page, "Cori: Python 3 (SLURM job)").last.click()
        resources = page.locator(".jp-Dialog", has=page.locator(".jp-hpc-ResourceForm"))
        resources.wait_for()
        screenshot(page, artifacts, "demo-4b-resources")
        resources.locator(".jp-Dialog-button.jp-mod-reject").click()
        picker = page.locator(".jp-Dialog", has_text="Select Kernel")
        picker.wait_for()
        assert page.locator(".jp-Dialog").count() == 1  # the picker alone: no "Error Starting Kernel"
        screenshot(page, artifacts, "demo-4b-cancelled")
        picker.locator(".jp-Dialog-button.jp-mod-reject").click()  # keep no kernel
        page.locator(".jp-Dialog").wait_for(state="detached")
        page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-NotebookPanel-toolbar .jp-KernelName",
                     has_text="No Kernel").wait_for()
        page.wait_for_timeout(1500)  # an error box or a second picker would show by now
        assert page.locator(".jp-Dialog").count() == 0
        assert squeue(DEMO_USER) == []
        assert page.get_by_text("official Jupyter news").count() == 0  # nor later
        page.locator(".lm-TabBar-tab[title*='Path: home/Untitled.ipynb']").click()
        page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)").wait_for()

        # 5. The magics drive the real SLURM from the cell.
        run_cell(page, "%load_ext jupyter_hpc.magics\nprint('magics loaded')", "magics loaded")
        text = run_cell(page, "%%sbatch\n#!/bin/bash\nsleep 60", "Submitted batch job")
        job_id = re.search(r"Submitted batch job (\d+)", text).group(1)
        code = "jobs = %squeue\nprint('queued:', jobs.loc[jobs.JOBID == " + job_id + ", ['USER', 'STATE']].values.tolist())"
        text = run_cell(page, code, "queued:")  # the job's row in the typed DataFrame %squeue gave
        assert re.fullmatch(rf"queued: \[\['{DEMO_USER}', '(PENDING|RUNNING)'\]\]", text.strip()), text
        run_cell(page, "jobs", "JOBID")  # and the table itself, for the screenshot
        screenshot(page, artifacts, "demo-5-squeue")
        run_cell(page, f"%scancel {job_id}\nprint('cancel sent')", "cancel sent")

        # 6. Saved in the browser, the notebook is a file in Cori's home with the cells typed.
        page.keyboard.press("Control+s")
        rename = page.locator(".jp-Dialog input[type='text']")  # JupyterLab asks for a name on the first save
        rename.fill("cori-demo.ipynb")
        page.locator(".jp-Dialog .jp-mod-accept").click()
        saved = cluster_home / "cori-demo.ipynb"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if saved.exists() and "SSH_CONNECTION" in saved.read_text():
                break
            time.sleep(0.5)
        sources = ["".join(cell["source"]) for cell in json.loads(saved.read_text())["cells"]]
        assert "print('via ssh:', os.environ['SSH_CONNECTION'])" in sources
        assert saved.stat().st_uid == entry.pw_uid
        page.locator(".jp-FileBrowser .jp-BreadCrumbs-preferred").click()  # back home, one click
        page.locator(".jp-DirListing-item[title^='Name: cori-demo.ipynb']").wait_for()
        screenshot(page, artifacts, "demo-6-saved")

        # 6b. The launcher's Terminal: a login shell on Cori (the embedded login node), in Cori's
        #     home; closing its tab ends the shell.
        page.locator(".jp-FileBrowser-toolbar [data-command='launcher:create']").click()
        open_launcher_terminal(page, str(cluster_home))
        screenshot(page, artifacts, "demo-6b-terminal")
        page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current .lm-TabBar-tabCloseIcon").click()
    except BaseException:
        screenshot(page, artifacts, "demo-failed")
        raise
    finally:
        context.close()
        if demo.runuser.poll() is None:
            demo.interrupt()
            status = demo.wait(90)
        else:
            status = demo.runuser.returncode
        cancel_jobs(DEMO_USER)
    assert status == 0, demo.output

    # 7. Ctrl-C: nothing of the demo's is left, not even a listening port.
    deadline = time.monotonic() + 10
    while demo.processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert demo.processes() == {}
    assert listening_ports(entry.pw_uid) == []
    assert tmp_entries() - before[1] == set()
    assert home_files() - before[0] == set()
