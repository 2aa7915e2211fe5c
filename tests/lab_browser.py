"""A real JupyterLab in Debian's headless Chromium, for the browser tests (tests/test_lab_*.py
and whoever else needs one).

``Lab`` is ``python -m jupyter_server`` (JupyterLab is its server extension, as after a plain
install) on a free loopback port, with one server config dict written to its own
``jupyter_server_config.json``: sites, kernelspec manager, contents manager, whatever the test
needs. Everything the lab reads or writes (config, data, runtime, settings, workspaces) is
under the test's own directory, so no other test or earlier run leaks in. The JupyterLab
extension served is this checkout's built one (``jupyter_hpc/labextension``), not whatever an
earlier ``tests/run`` copied into the prefix: a rebuild is tested as soon as it is on disk.

Typical use, one lab and one browser per module (a lab takes seconds to start)::

    from lab_browser import Lab, browser, open_lab, run_cell   # noqa: F401 (browser: a fixture)

    @pytest.fixture(scope="module")
    def lab(tmp_path_factory, ...):
        with Lab.running(tmp_path_factory.mktemp("lab"), {"HPCSites": {"sites": ...}}) as lab:
            yield lab

    def test_x(lab, browser, artifacts):
        page = open_lab(browser, lab)
        ...
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import subprocess
import sys
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import pwd
import shutil
import struct

import pytest
import requests

from jupyter_rest import rest, wait_until_serving
from testbed.sshd import free_port

REPO = Path(__file__).resolve().parent.parent
BUILT_EXTENSION = REPO / "jupyter_hpc" / "labextension"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]
KERNEL_MANAGER = "jupyter_hpc.server.HPCMappingKernelManager"
SPEC_MANAGER = "jupyter_hpc.kernelspecs.RemoteKernelSpecManager"
CONTENTS_MANAGER = "jupyter_hpc.contents.SFTPContentsManager"
# JupyterLab's "receive Jupyter news?" toast would sit over the page in every screenshot.
DISABLED_PLUGINS = {"@jupyterlab/apputils-extension:announcements": True}


def merge(base: dict, extra: dict) -> dict:
    """``extra`` laid over ``base``, section by section (a nested dict merges, anything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def lab_config(sites: dict | None = None, *, remote_specs: bool = True, sftp: bool = False,
               include_local: bool = False, **sections: dict) -> dict:
    """The usual server config: ``c.HPCSites.sites``, RemoteKernelSpecManager (no local specs
    unless asked), SFTPContentsManager if ``sftp``; more sections (``ServerApp={...}``) merge in."""
    config: dict = {}
    if sites is not None:
        config["HPCSites"] = {"sites": sites}
    if remote_specs:
        config["ServerApp"] = {"kernel_spec_manager_class": SPEC_MANAGER}
        config["RemoteKernelSpecManager"] = {"include_local": include_local}
    if sftp:
        config.setdefault("ServerApp", {})["contents_manager_class"] = CONTENTS_MANAGER
    return merge(config, sections)


def cori_with_slurm(sshd, user: str, remote_python: str, **knl) -> dict:
    """The site "Cori" on ``sshd`` as ``user``: a login target, and a SLURM target "KNL node"
    on the test SLURM's debug partition whose compute node is reached through ``sshd`` (the
    one machine is login and compute node); ``knl`` adds to or overrides its settings."""
    return {
        "display_name": "Cori",
        **sshd.provisioner_config(user, remote_python=remote_python),
        "targets": {
            "login": {},
            "knl": {"provisioner": "hpc-slurm", "display_name": "KNL node", "partition": "debug",
                    "node_port": sshd.port, "poll_interval": 0.5, **knl},
        },
    }


class Lab:
    """One JupyterLab server process. ``config`` is laid over: HPCMappingKernelManager, the
    jupyter_hpc server extension, and the checkout's built JupyterLab extension."""

    def __init__(self, workdir: Path, config: dict | None = None, *args: str, name: str = "lab",
                 env: dict[str, str] | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.token = uuid.uuid4().hex
        self.log_path = self.workdir / f"{name}-{self.port}.log"
        self.root_dir = self.workdir / "files"
        self.root_dir.mkdir(exist_ok=True)
        config_dir = self.workdir / "config"
        (config_dir / "labconfig").mkdir(parents=True, exist_ok=True)
        (config_dir / "labconfig" / "page_config.json").write_text(json.dumps({"disabledExtensions": DISABLED_PLUGINS}))
        # The checkout's build, first in the extension path (the first copy of a name wins).
        extensions = self.workdir / "labextensions"
        extensions.mkdir(exist_ok=True)
        link = extensions / "jupyter-hpc"
        if not link.exists():
            link.symlink_to(BUILT_EXTENSION)
        defaults = {
            "ServerApp": {"kernel_manager_class": KERNEL_MANAGER, "jpserver_extensions": {"jupyter_hpc": True}},
            "LabApp": {"extra_labextensions_path": [str(extensions)]},
        }
        self.config = merge(defaults, config or {})
        (config_dir / "jupyter_server_config.json").write_text(json.dumps(self.config, indent=1))
        self.env = dict(os.environ)
        self.env.update({
            "JUPYTER_CONFIG_DIR": str(config_dir),
            "JUPYTER_DATA_DIR": str(self.workdir / "data"),
            "JUPYTER_RUNTIME_DIR": str(self.workdir / "runtime"),
            "JUPYTER_PATH": str(self.workdir / "jupyter"),  # no stray local kernelspecs
        })
        self.env.update(env or {})
        argv = [
            sys.executable, "-m", "jupyter_server", "--no-browser", "--ServerApp.allow_root=True",
            f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.root_dir={self.root_dir}",
            f"--LabApp.user_settings_dir={self.workdir / 'settings'}",
            f"--LabApp.workspaces_dir={self.workdir / 'workspaces'}",
            *args,
        ]
        # The token through the environment, never argv (ps shows argv to every user).
        self.env["JUPYTER_TOKEN"] = self.token
        self.started = time.monotonic()
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, cwd=self.workdir)
        self.ready_after = wait_until_serving(self.process, self.port, self.token, self.started, 90,
                                              "JupyterLab", lambda: self.log)

    @classmethod
    @contextlib.contextmanager
    def running(cls, workdir: Path, config: dict | None = None, *args: str, **kwargs) -> Iterator["Lab"]:
        """A lab for the ``with`` block; stopped after (its log tail shown if the block failed)."""
        lab = cls(workdir, config, *args, **kwargs)
        try:
            yield lab
        finally:
            lab.stop()

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, tree: str | None = None, workspace: str | None = None) -> str:
        """The page to open: /lab (or /lab/tree/<tree>), logged in by the token. With
        ``workspace``, that JupyterLab workspace, emptied first (a fresh page on a lab whose
        default workspace an earlier test left with notebooks open)."""
        path = "/lab" if workspace is None else f"/lab/workspaces/{workspace}"
        if tree is not None:
            path += f"/tree/{tree}"
        return f"{self.base}{path}?token={self.token}" + ("&reset" if workspace is not None else "")

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        """jupyter_server's /api/<path>, token in the header; an error status raises."""
        kwargs.setdefault("timeout", 120)
        return rest(self.port, self.token, method, path, **kwargs)

    def hpc(self, method: str, path: str, **kwargs) -> requests.Response:
        """The jupyter_hpc server extension's /jupyter-hpc/api/<path> (status not checked)."""
        kwargs.setdefault("timeout", 120)
        return requests.request(method, f"{self.base}/jupyter-hpc/api/{path}",
                                headers={"Authorization": f"token {self.token}"}, **kwargs)

    def kernel_ids(self) -> list[str]:
        return [kernel["id"] for kernel in self.api("GET", "kernels").json()]

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM (jupyter_server shuts its kernels down), SIGKILL if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


# -- the cluster side: a user's own kernelspec in their remote home ------------------------------

def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A plain one-colour PNG (no imaging library needed): a logo the page can be checked to show."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def write_remote_kernel(user: pwd.struct_passwd, name: str, display_name: str, python: str,
                        logo: bytes | None = None, env_line: str = "export MYENV=1") -> Path:
    """A kernelspec the user dropped into ``~/.ipython/kernels/<name>`` on the cluster: a wrapper
    script (``env_line`` then exec ipykernel) and, if given, ``logo-64x64.png``; owned by the user."""
    directory = Path(user.pw_dir) / ".ipython" / "kernels" / name
    directory.mkdir(parents=True, exist_ok=True)
    wrapper = directory / "wrapper.sh"
    wrapper.write_text(f"#!/bin/sh\n{env_line}\nexec {python} -m ipykernel_launcher \"$@\"\n")
    wrapper.chmod(0o755)
    if logo is not None:
        (directory / "logo-64x64.png").write_bytes(logo)
    (directory / "kernel.json").write_text(json.dumps({
        "argv": ["{resource_dir}/wrapper.sh", "-f", "{connection_file}"],
        "display_name": display_name, "language": "python"}))
    subprocess.run(["chown", "-R", f"{user.pw_name}:{user.pw_name}", str(Path(user.pw_dir) / ".ipython")], check=True)
    return directory


def remove_remote_kernels(user: pwd.struct_passwd) -> None:
    shutil.rmtree(Path(user.pw_dir) / ".ipython" / "kernels", ignore_errors=True)


def add_slurm_user(name: str, account: str = "testbed") -> None:
    """Give ``name`` an association in the test SLURM's accounting (the bed adds only its own
    users), so that the resource dialog lists the account as on a real cluster."""
    shown = subprocess.run(["sacctmgr", "-n", "-P", "show", "assoc", f"user={name}", "format=account"],
                           capture_output=True, text=True)
    if account not in shown.stdout.split():
        subprocess.run(["sacctmgr", "-i", "add", "user", name, f"DefaultAccount={account}"], check=True,
                       capture_output=True)


def cancel_jobs(name: str) -> None:
    subprocess.run(["scancel", "-u", name], capture_output=True)


def squeue(name: str) -> list[dict[str, str]]:
    """The user's jobs as squeue shows them: id, partition, state, time limit, reason."""
    out = subprocess.run(["squeue", "-h", "-u", name, "-o", "%i|%P|%T|%l|%r"], capture_output=True, text=True,
                         check=True).stdout
    keys = ("id", "partition", "state", "time_limit", "reason")
    return [dict(zip(keys, line.split("|"))) for line in out.splitlines() if line.strip()]


def show_job(job_id: str) -> dict[str, str]:
    """``scontrol show job`` as a dict (Partition, TimeLimit, JobState, UserId, ...)."""
    out = subprocess.run(["scontrol", "show", "job", "--oneliner", job_id], capture_output=True, text=True,
                         check=True).stdout
    return dict(word.partition("=")[::2] for word in out.split() if "=" in word)


# -- the browser -----------------------------------------------------------------------------

@contextlib.contextmanager
def chromium():
    """Debian's Chromium under Playwright (never a downloaded browser)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (never a downloaded browser)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def browser():
    """One Chromium per test module (import this name into the module to use it)."""
    with chromium() as instance:
        yield instance


def open_lab(browser, lab: Lab, tree: str | None = None, width: int = 1400, height: int = 900,
             timeout: float = 90_000, workspace: str | None = None):
    """A new page (its own context: own cookies and localStorage) showing the lab, ready:
    the launcher is up (or, with ``tree``, that document). ``page.errors`` collects the page's
    uncaught exceptions and console errors, for a test to assert on or print. ``workspace``:
    see :meth:`Lab.url`."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(f"pageerror: {error}"))
    page.on("console", lambda message: message.type == "error" and page.errors.append(f"console: {message.text}"))
    page.set_default_timeout(timeout)
    page.goto(lab.url(tree, workspace))
    if tree is None:
        page.locator(".jp-Launcher").first.wait_for()
    else:
        page.locator(".jp-MainAreaWidget").first.wait_for()
    return page


def close_page(page) -> None:
    page.context.close()


def launcher_tile(page, text: str, category: str = "Notebook"):
    """The launcher card of ``category`` whose label is ``text``."""
    return page.locator(f".jp-LauncherCard[data-category='{category}']", has_text=text)


def run_cell(page, code: str, expect: str, timeout: float = 120_000) -> str:
    """Type ``code`` into the current notebook's last cell, run it (Shift+Enter), and return the
    text of the first output that contains ``expect``."""
    cell = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell .cm-content").last
    cell.click()
    page.keyboard.type(code)
    page.keyboard.press("Shift+Enter")
    output = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output", has_text=expect).first
    output.wait_for(timeout=timeout)
    return output.inner_text()


def screenshot(page, artifacts: Path, name: str) -> Path:
    """A full-page screenshot kept under test-artifacts/ (``name`` without .png)."""
    artifacts.mkdir(exist_ok=True)
    path = artifacts / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
