"""Issue 27 in Debian's headless Chromium: with two sites the launcher shows a terminal tile per
site ("Cori terminal", "Hopper terminal"), each opening JupyterLab's own terminal on a shell on
that site's login node; ``pwd`` there shows the home on the cluster; closing the tab ends the
shell. Screenshots under test-artifacts/.
"""

from __future__ import annotations

import os
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
