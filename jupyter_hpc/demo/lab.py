"""JupyterLab as the demo's child process, confined to the demo's state directory.

JupyterLab runs in a process (and session) of its own so that a Ctrl-C at the terminal reaches
only the demo, which then stops JupyterLab in order: ``/api/shutdown`` makes jupyter_server
shut its kernels down (our provisioner asks each remote launcher to end its kernel and remove
its files) before it exits. Every Jupyter directory (config, data, runtime, the notebooks' root)
points into the state directory, so nothing JupyterLab writes outlives the demo. The token
travels in the environment, never on a command line that other users could read with ``ps``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path

from .child import ChildServer, ChildStartError
from .login_node import write_private


def write_quiet_lab_settings(user_settings_dir: Path) -> Path:
    """JupyterLab user settings for the demo's (temporary) users: no news prompt, whose answer
    would be forgotten with the demo anyway. Returns ``user_settings_dir``."""
    plugin = user_settings_dir / "@jupyterlab" / "apputils-extension"
    plugin.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private(plugin / "notification.jupyterlab-settings", json.dumps({"fetchNews": "false"}))
    return user_settings_dir


class LabStartError(ChildStartError):
    """JupyterLab did not come up; the message carries the end of its log."""


class JupyterLab(ChildServer):
    """One JupyterLab server: :meth:`start` returns once it answers; :meth:`stop` ends it."""

    name = "JupyterLab"
    start_error = LabStartError

    def __init__(
        self,
        state_dir: Path,
        *,
        jupyter_path: Path | None = None,
        default_kernel: str | None = None,
        server_config: dict | None = None,
        port: int = 0,
        python: str = sys.executable,
        show_log: bool = False,
    ) -> None:
        super().__init__(state_dir / "jupyterlab.log", show_log=show_log)
        self.state_dir = state_dir
        self.jupyter_path = jupyter_path
        self.default_kernel = default_kernel
        self.server_config = server_config or {}
        self.requested_port = port
        self.port = port
        self.python = python
        self.token = secrets.token_hex(24)
        self.root_dir = state_dir / "notebooks"
        self.runtime_dir = state_dir / "runtime"
        self.ready = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/lab?token={self.token}"

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        extra_path = env.get("JUPYTER_PATH")
        if self.jupyter_path is not None:
            env["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(self.jupyter_path), extra_path]))
        env.update(
            JUPYTER_CONFIG_DIR=str(self.state_dir / "config"),
            JUPYTER_DATA_DIR=str(self.state_dir / "data"),
            JUPYTER_RUNTIME_DIR=str(self.runtime_dir),
            IPYTHONDIR=str(self.state_dir / "ipython"),
            JUPYTER_TOKEN=self.token,
        )
        return env

    def argv(self) -> list[str]:
        # As root, JupyterLab refuses to start unless told: the demo serves only the loopback.
        as_root = ["--ServerApp.allow_root=True"] if os.getuid() == 0 else []
        return [
            self.python, "-m", "jupyterlab", *as_root,
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.requested_port}",
            "--ServerApp.port_retries=0",
            "--ServerApp.open_browser=False",
            f"--ServerApp.root_dir={self.root_dir}",
            *([f"--MultiKernelManager.default_kernel_name={self.default_kernel}"] if self.default_kernel else []),
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            # jupyter_lsp probes for language servers with `npm prefix -g`, which leaves
            # ~/.npm/_logs behind; the demo has no language servers to offer anyway.
            "--ServerApp.jpserver_extensions", "jupyter_lsp=False",
        ]

    async def start(self, timeout: float = 90.0) -> str:
        """Start JupyterLab; return its URL once its API answers."""
        self.root_dir.mkdir(mode=0o700, exist_ok=True)
        write_quiet_lab_settings(self.state_dir / "config" / "lab" / "user-settings")
        if self.server_config:
            config = self.state_dir / "config" / "jupyter_server_config.json"
            config.write_text(json.dumps(self.server_config, indent=1))
        await self.spawn(self.argv(), env=self.environment())
        await self.wait_ready(self._serving, timeout)
        self.ready = True
        return self.url

    async def _serving(self) -> bool:
        """Its server info file names its port, and its API answers there."""
        assert self.process is not None
        info_file = self.runtime_dir / f"jpserver-{self.process.pid}.json"
        try:
            self.port = int(json.loads(info_file.read_text())["port"])
        except (ValueError, OSError, KeyError):
            return False
        return await asyncio.to_thread(self._answers)

    def _answers(self) -> bool:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/status",
            headers={"Authorization": f"token {self.token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    async def stop(self, grace: float = 20.0) -> None:
        """Ask JupyterLab to shut down; SIGTERM, then SIGKILL, if it does not in time.

        The ask is ``POST /api/shutdown``: jupyter_server shuts its kernels down (our
        provisioner has each remote launcher end its kernel and remove its files), then exits.
        It is not SIGTERM, because jupyter_server logs from inside its signal handler, and a
        signal that lands while it is writing its log raises there and the stop is lost.
        """
        process = self.process
        if process is None or process.returncode is not None:
            return
        if not self.ready:
            await self.kill()  # still starting: it has no kernels to shut down yet
            return
        asking = asyncio.ensure_future(asyncio.to_thread(self._post_shutdown, grace))
        try:
            for signum, wait in ((None, grace), (signal.SIGTERM, 5.0)):
                if signum is not None:
                    with contextlib.suppress(ProcessLookupError):
                        process.send_signal(signum)
                try:
                    await asyncio.wait_for(process.wait(), wait)
                    return
                except asyncio.TimeoutError:
                    continue
            await self.kill()
        finally:
            asking.cancel()

    def _post_shutdown(self, timeout: float) -> None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/shutdown", method="POST", data=b"",
            headers={"Authorization": f"token {self.token}"},
        )
        with contextlib.suppress(OSError, urllib.error.URLError):
            urllib.request.urlopen(request, timeout=timeout).close()
