"""Issue 20 in the browser: JupyterLab's debugger on a cluster kernel whose listeners are private.

A real JupyterLab (RemoteKernelSpecManager, two sites on this module's own sshd and user) in
Debian's headless Chromium. On the site with the default ``debugger = 'private'`` the user
switches the debugger on in the notebook's toolbar, sets a breakpoint by clicking the gutter,
runs the cell, and sees it stop there with the function's locals in the Variables panel; then
continues. While it is stopped, another unix user connects to debugpy's ports and gets
nothing. On the site with ``debugger = 'off'`` the toolbar's bug is greyed out, saying the
kernel does not support debugging. Screenshots of each step go to test-artifacts/.
"""

from __future__ import annotations

import json
import pwd
import re
import shutil
from pathlib import Path

import pytest
import requests

from lab_browser import Lab, browser, close_page, lab_config, open_lab, screenshot  # noqa: F401 (browser: a fixture)
from test_listener_privacy import intrude, intruder_script, tcp_listeners_of  # noqa: F401 (a fixture)
from testbed.sshd import running_sshd
from testbed.users import ensure_user, run_as

USER = "hpcdbg"
CELL = "def add(a, b):\n    total = a + b\n    return total\n\nresult = add(2, 3)\nprint('result', result)"
NOT_SUPPORTED = "Select a kernel that supports debugging to enable debugger"
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def lab(tmp_path_factory, remote_python):
    """The user's kernelspec on the cluster is the one ``python -m ipykernel install --user`` writes
    (it says ``"debugger": true``, which is what JupyterLab goes by)."""
    user = ensure_user(USER)
    installed = Path(user.pw_dir) / ".local" / "share" / "jupyter" / "kernels" / "py"
    run_as(USER, [remote_python, "-m", "ipykernel", "install", "--user", "--name", "py", "--display-name", "Py"],
           check=True, capture_output=True)
    assert json.loads((installed / "kernel.json").read_text())["metadata"]["debugger"] is True
    try:
        with running_sshd([USER], "lab-debugger") as sshd:
            config = sshd.provisioner_config(USER, remote_python=remote_python)
            sites = {
                "cori": {"display_name": "Cori", **config},  # debugger: 'private', the default
                "strict": {"display_name": "Strict", **config, "debugger": "off"},
            }
            with Lab.running(tmp_path_factory.mktemp("lab-debugger"), lab_config(sites)) as lab:
                yield lab
    finally:
        shutil.rmtree(installed, ignore_errors=True)


def open_notebook(browser, lab: Lab, name: str, kernel: str):
    """A notebook holding CELL, its kernel the given cluster kernelspec, open and idle."""
    spec = lab.api("GET", f"kernelspecs/{kernel}").json()
    notebook = {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": kernel, "display_name": spec["spec"]["display_name"],
                                    "language": "python"}},
        "cells": [{"cell_type": "code", "id": "add", "source": CELL, "metadata": {}, "outputs": [],
                   "execution_count": None}],
    }
    (lab.root_dir / name).write_text(json.dumps(notebook))
    # A fresh workspace: not the previous test's tabs and debugger sidebar.
    requests.delete(f"{lab.base}/lab/api/workspaces/default", headers={"Authorization": f"token {lab.token}"},
                    timeout=30)
    page = open_lab(browser, lab, tree=name)
    page.locator(".jp-StatusBar-Widget", has_text=f"{spec['spec']['display_name']} | Idle").wait_for(timeout=120_000)
    return page


def bug_button(page):
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-NotebookPanel-toolbar .jp-DebuggerBugButton")


def test_the_debugger_stops_at_a_breakpoint_and_shows_the_variables(lab, browser, artifacts, neighbour_user,
                                                                     intruder_script, remote_python, canary):
    specs = lab.api("GET", "kernelspecs").json()["kernelspecs"]
    assert {"cori-login-py", "strict-login-py"} <= set(specs)  # beside the cluster's own (R, the venv's)
    assert specs["cori-login-py"]["spec"]["metadata"]["debugger"] is True  # as the user's spec says
    assert specs["strict-login-py"]["spec"]["metadata"]["debugger"] is False  # the site's debugger = 'off'
    page = open_notebook(browser, lab, "debug-private.ipynb", "cori-login-py")
    try:
        button = bug_button(page)
        button.wait_for()
        # JupyterLab enables the switch for a kernelspec whose metadata says "debugger": true.
        page.wait_for_function("el => el.getAttribute('aria-disabled') === 'false'", arg=button.element_handle())
        assert button.get_attribute("aria-pressed") == "false"
        button.click()
        page.wait_for_function("el => el.getAttribute('aria-pressed') === 'true'", arg=button.element_handle())
        sidebar = page.locator(".jp-DebuggerSidebar")
        if not sidebar.is_visible():
            page.locator(".lm-TabBar-tab[title^='Debugger']").first.click()
        sidebar.wait_for()

        # A breakpoint on "total = a + b": a click in the cell's breakpoint gutter, level with line 2.
        cell = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").first
        gutter = cell.locator("div.cm-gutter.cm-breakpoint-gutter")
        gutter.wait_for()
        line = cell.locator(".cm-line").nth(1)
        assert line.inner_text() == "    total = a + b"
        gutter_box, line_box = gutter.bounding_box(), line.bounding_box()
        page.mouse.click(gutter_box["x"] + gutter_box["width"] / 2, line_box["y"] + line_box["height"] / 2)
        # The Breakpoints panel lists it, at line 2 of the cell's dumped source.
        listed = page.locator(".jp-DebuggerSidebar .jp-DebuggerBreakpoint")
        listed.first.wait_for(timeout=30_000)
        assert listed.count() == 1
        assert listed.locator(".jp-DebuggerBreakpoint-line").inner_text().strip() == "2"
        screenshot(page, artifacts, "lab-debugger-breakpoint-set")

        cell.click()
        page.keyboard.press("Shift+Enter")
        # Stopped: the line is highlighted in the cell, the call stack's top frame is add() at line 2.
        highlighted = cell.locator(".cm-line.jp-DebuggerEditor-highlight")
        highlighted.wait_for(timeout=60_000)
        assert highlighted.inner_text() == "    total = a + b"
        frame = page.locator(".jp-DebuggerCallstackFrame").first
        frame.wait_for()
        assert frame.locator(".jp-DebuggerCallstackFrame-name").inner_text() == "add"
        location = frame.locator(".jp-DebuggerCallstackFrame-location").inner_text()
        # The cell as dumped on the cluster, in the kernel's own 0700 directory (not /tmp/ipykernel_<pid>).
        assert re.fullmatch(r"/home/hpcdbg/\.jupyter-hpc/run/[^/]+/cells/\d+\.py:2", location.replace("\n", "")), location
        values = variables(page, {"a", "b"})
        assert values == {"a": "2", "b": "3"}, values
        screenshot(page, artifacts, "lab-debugger-stopped-with-variables")
        # Not finished yet: no output while stopped.
        assert page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output").count() == 0

        # Meanwhile another user of the login node goes for debugpy's two ports (the kernel has
        # none): connected, then closed before a byte; nothing runs (canary), and the session lives on.
        listeners = tcp_listeners_of(pwd.getpwnam(USER).pw_uid)
        assert len(listeners) == 2 and len(set(listeners.values())) == 1, listeners
        report = intrude(intruder_script, remote_python, list(listeners), [], canary)
        assert sorted(report["connected"]) == sorted(listeners) and report["received"] == ""

        page.locator(".jp-DebuggerSidebar jp-button[title^='Continue'], "
                     ".jp-DebuggerSidebar button[title^='Continue']").first.click()
        output = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output", has_text="result 5")
        output.wait_for(timeout=60_000)
        assert output.inner_text().strip() == "result 5"
        assert highlighted.count() == 0
        screenshot(page, artifacts, "lab-debugger-continued")
        assert not [e for e in page.errors if "debug" in e.lower()], page.errors
    finally:
        close_page(page)


def variables(page, names: set[str]) -> dict[str, str]:
    """The Variables panel's rows for ``names`` once all of them show: name -> value as displayed."""
    panel = page.locator(".jp-DebuggerVariables")
    panel.wait_for()
    found: dict[str, str] = {}
    for name in sorted(names):
        row = panel.locator(".jp-DebuggerVariables-name", has_text=re.compile(rf"^{re.escape(name)}$")).first
        row.wait_for(timeout=30_000)
        detail = row.locator("xpath=following-sibling::*[contains(@class, 'jp-DebuggerVariables-detail')]").first
        found[name] = detail.inner_text().strip()
    return found


def test_debugger_off_on_a_site_shows_the_switch_greyed_out(lab, browser, artifacts):
    """``debugger = 'off'``: the kernel's kernel_info lists no "debugger" feature, and JupyterLab says so."""
    page = open_notebook(browser, lab, "debug-off.ipynb", "strict-login-py")
    try:
        kernel = next(k for k in lab.api("GET", "kernels").json() if k["name"] == "strict-login-py")
        assert kernel["execution_state"] == "idle"
        button = bug_button(page)
        button.wait_for()
        assert button.get_attribute("aria-disabled") == "true"
        assert button.get_attribute("aria-label") == NOT_SUPPORTED
        assert button.get_attribute("aria-pressed") == "false"
        button.click(force=True)  # a click on the greyed switch does nothing
        assert button.get_attribute("aria-pressed") == "false"
        assert page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .cm-breakpoint-gutter").count() == 0
        button.hover(force=True)
        screenshot(page, artifacts, "lab-debugger-off-on-this-site")
    finally:
        close_page(page)
