"""`jupyter hpc demo` in a real JupyterLab, in Debian's headless Chromium driven by Playwright.

The newcomer's path: start the demo (as a non-root user), open the one URL it prints, click
"Cori (demo)" in the launcher, run a cell. The cell prints ``SSH_CONNECTION``, which only the
SSH path sets (the embedded login node sets it for its sessions, as OpenSSH does), so the
output seen in the page proves the kernel runs through SSH. A screenshot is kept.
"""

from __future__ import annotations

import os
import shutil

import pytest

from demo_helpers import DEMO_USER, Demo, ensure_demo_venv
from testbed.users import ensure_user

playwright_sync = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def demo_bin():
    ensure_user(DEMO_USER)
    return ensure_demo_venv()


@pytest.fixture
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (never a downloaded browser)")
    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def test_cori_kernel_in_jupyterlab(demo_bin, browser, artifacts):
    demo = Demo(demo_bin).wait_ready()
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        page.goto(demo.url)
        tile = page.locator(".jp-LauncherCard[data-category='Notebook']", has_text="Cori (demo)")
        tile.click(timeout=60_000)
        # The kernel is up when the status bar says so.
        page.locator(".jp-StatusBar-Widget", has_text="Cori (demo) | Idle").wait_for(timeout=60_000)
        cell = page.locator(".jp-Notebook .jp-Cell .cm-content").first
        cell.click()
        page.keyboard.type("import os; print('via ssh:', os.environ['SSH_CONNECTION'])")
        page.keyboard.press("Shift+Enter")
        output = page.locator(".jp-OutputArea-output", has_text="via ssh: 127.0.0.1")
        output.wait_for(timeout=60_000)
        text = output.inner_text()
        assert text.strip().endswith(f"127.0.0.1 {demo.login_port()}"), text
    finally:
        artifacts.mkdir(exist_ok=True)
        page.screenshot(path=str(artifacts / "demo-cori-kernel.png"), full_page=True)
        page.close()
        if demo.runuser.poll() is None:
            demo.interrupt()
            demo.wait(60)
        demo.kill()
    state_dir = demo.marks[1]
    assert not os.path.exists(state_dir)
    assert demo.processes() == {}
    shutil.rmtree(artifacts / "unused", ignore_errors=True)
