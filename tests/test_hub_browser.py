"""The hub's login and a notebook in a real browser (issue 21): Debian's headless Chromium at
a real JupyterHub, password + one-time code in the login form, the spawn, the launcher's
discovered Cori tile, a cell on the cluster. Screenshots of the login page and the notebook.

Its own bed, with hour-long certificates: tests/test_hub.py's bed lasts 60 s a login, shorter
than a browser takes to load JupyterLab on a busy CI machine.
"""

from __future__ import annotations

import pwd

import pyotp
import pytest

from demo_helpers import ensure_demo_venv
from hub_helpers import HubBed
from lab_browser import chromium, launcher_tile, run_cell, screenshot
from terminal_helpers import open_launcher_terminal

pytestmark = [pytest.mark.timeout(300), pytest.mark.browser]

ERIN = "hpcerin"


@pytest.fixture(scope="module")
def bed(remote_python):
    hub = HubBed(ensure_demo_venv(), remote_python, [ERIN], lifetime=3600, margin=60)
    yield hub
    hub.stop()
    hub.cleanup()


def test_login_in_chromium_with_screenshots(bed, artifacts):
    """A user's whole path in a real browser: the login form with its code field, the spawn, the
    launcher's Cori tile, a cell that prints the cluster uid."""
    password, secret = bed.users[ERIN]
    with chromium() as chrome:
        context = chrome.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.set_default_timeout(90_000)
        try:
            page.goto(f"{bed.url}/hub/login")
            page.fill("#username_input", ERIN)
            page.fill("#password_input", password)
            page.fill("#otp_input", pyotp.TOTP(secret).now())
            screenshot(page, artifacts, "hub-login")
            page.click("#login_submit")
            page.locator(".jp-Launcher").first.wait_for()
            assert f"/user/{ERIN}/lab" in page.url, page.url  # JupyterLab in Erin's own server
            launcher_tile(page, "Cori: Python 3 (login)").first.click()
            # The kernel is up on the cluster (status bar: Idle) before the cell is typed and run.
            page.locator(".jp-StatusBar-Widget", has_text="Cori: Python 3 (login) | Idle").wait_for(timeout=120_000)
            text = run_cell(page, "import os; print('uid', os.getuid())", "uid ")
            assert text.strip() == f"uid {pwd.getpwnam(ERIN).pw_uid}", text
            # Issue 27: the launcher's Terminal is a login shell on Cori, in Erin's home there.
            page.locator(".jp-FileBrowser-toolbar [data-command='launcher:create']").click()
            open_launcher_terminal(page, pwd.getpwnam(ERIN).pw_dir)
            screenshot(page, artifacts, "hub-terminal")
        finally:
            screenshot(page, artifacts, "hub-notebook")
            context.close()
