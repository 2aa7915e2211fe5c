"""JupyterHub as the demo's child process: the login a site's users meet, on 127.0.0.1.

The hub is configured exactly as a site would configure it (``SSHCertAuthenticator`` in front
of a key service, ``HPCSpawner`` starting each user's server as the hub's own unix user, the
site in ``c.HPCSites.sites``); only the addresses and directories are the demo's. Its secrets
(cookie secret, auth_state key) live in a 0600 config file in the demo's private state
directory, never in its environment or argv, and every file it writes lands there too.

The proxy is npm's ``configurable-http-proxy`` where one is installed, else the pure-Python
port from PyPI (package ``configurable-http-proxy``), which the ``lab`` extra installs, so
``pip install`` is the whole install.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .child import ChildServer, ChildStartError
from .lab import write_quiet_lab_settings
from .login_node import make_private_dir, write_private

PROXY_COMMAND = "configurable-http-proxy"


def sandbox_works() -> bool:
    from ..hub.sandbox import SandboxUnavailable, check_available

    try:
        check_available()
    except SandboxUnavailable:
        return False
    return True


class HubStartError(ChildStartError):
    """JupyterHub did not come up; the message carries the end of its log."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def find_proxy() -> str:
    """npm's configurable-http-proxy if one is on PATH (the reference one), else the first
    other one (PyPI's pure-Python port)."""
    found = []
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = shutil.which(PROXY_COMMAND, path=directory) if directory else None
        if candidate and candidate not in found:
            found.append(candidate)
    bin_dir = os.path.dirname(sys.executable)  # the venv's own, even when not on PATH
    own = shutil.which(PROXY_COMMAND, path=bin_dir)
    if own and own not in found:
        found.append(own)
    if not found:
        raise HubStartError(
            "No configurable-http-proxy found: install the demo's extras (pip install 'jupyter-hpc[lab]'), "
            "which bring the pure-Python one, or npm's (npm install -g configurable-http-proxy)."
        )

    def is_node(candidate: str) -> bool:
        with contextlib.suppress(OSError), open(candidate, "rb") as handle:
            return b"node" in handle.readline()
        return False

    return next((candidate for candidate in found if is_node(candidate)), found[0])


class JupyterHub(ChildServer):
    """One JupyterHub: :meth:`start` returns once its login page answers; :meth:`stop` ends it
    and, through JupyterHub's own cleanup, every user's server and the proxy."""

    name = "JupyterHub"
    start_error = HubStartError

    def __init__(
        self,
        state_dir: Path,
        *,
        sites: dict[str, dict[str, Any]],
        keyservice_url: str,
        allowed_users: list[str],
        port: int = 0,
        python: str = sys.executable,
        show_log: bool = False,
        server_config: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(state_dir / "jupyterhub.log", show_log=show_log)
        #: jupyter_server config added to each user's server (e.g. the default kernel).
        self.server_config = server_config or {}
        self.state_dir = state_dir
        self.sites = sites
        self.keyservice_url = keyservice_url
        self.allowed_users = allowed_users
        self.port = port or free_port()
        self.python = python
        self.proxy = find_proxy()
        make_private_dir(self.state_dir)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hub/login"

    def config(self) -> str:
        """``jupyterhub_config.py``: a site's hub, addresses and directories the demo's."""
        overrides: dict[str, Any] = {"LabApp": {"check_for_updates_class": "jupyterlab.NeverCheckForUpdate"}}
        for section, values in self.server_config.items():
            overrides.setdefault(section, {}).update(values)
        if os.getuid() == 0:
            # jupyter_server refuses root unless told; the demo serves only the loopback.
            overrides.setdefault("ServerApp", {})["allow_root"] = True
        settings = {
            "JupyterHub.bind_url": f"http://127.0.0.1:{self.port}",
            "JupyterHub.hub_bind_url": f"http://127.0.0.1:{free_port()}",
            "ConfigurableHTTPProxy.api_url": f"http://127.0.0.1:{free_port()}",
            "ConfigurableHTTPProxy.command": [self.proxy],
            "ConfigurableHTTPProxy.pid_file": str(self.state_dir / "proxy.pid"),
            "JupyterHub.pid_file": str(self.state_dir / "jupyterhub.pid"),
            "JupyterHub.db_url": f"sqlite:///{self.state_dir / 'jupyterhub.sqlite'}",
            "JupyterHub.cookie_secret": secrets.token_bytes(32),
            "CryptKeeper.keys": [secrets.token_bytes(32)],
            "JupyterHub.authenticator_class": "jupyter_hpc.hub.SSHCertAuthenticator",
            "SSHCertAuthenticator.keyservice_url": self.keyservice_url,
            "Authenticator.allowed_users": set(self.allowed_users),
            "JupyterHub.spawner_class": "jupyter_hpc.hub.HPCSpawner",
            "HPCSpawner.user_dir_root": str(self.state_dir / "users"),
            # Each server in bubblewrap where this machine has it; the demo's one user on a
            # laptop without it gets an unsandboxed server rather than no demo.
            "HPCSpawner.sandbox": "bwrap" if sandbox_works() else "off",
            "HPCSpawner.server_config_overrides": overrides,
            "Spawner.default_url": "/lab",
            "Spawner.start_timeout": 120,
            "Spawner.http_timeout": 120,
            "HPCSites.sites": self.sites,
        }
        lines = ["# Written by `jupyter hpc demo` for this run only; removed when it stops.", "c = get_config()  # noqa"]
        lines += [f"c.{name} = {value!r}" for name, value in settings.items()]
        return "\n".join(lines) + "\n"

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)  # the users' servers get only what their spawner passes on
        env.update(HOME=str(self.state_dir), JUPYTER_RUNTIME_DIR=str(self.state_dir / "runtime"),
                   JUPYTER_DATA_DIR=str(self.state_dir / "data"), JUPYTER_CONFIG_DIR=str(self.state_dir / "config"))
        # The proxy may be the venv's own while the venv is not on PATH.
        env["PATH"] = os.pathsep.join(filter(None, [os.path.dirname(self.python), env.get("PATH")]))
        return env

    async def start(self, timeout: float = 120.0) -> str:
        for name in self.allowed_users:
            # In each user's own directory (HPCSpawner's JUPYTER_CONFIG_DIR there), the only
            # one their server's sandbox shows it: JupyterLab's default user settings place.
            user_dir = make_private_dir(make_private_dir(self.state_dir / "users") / name)
            write_quiet_lab_settings(make_private_dir(user_dir / "config") / "lab" / "user-settings")
        config_file = write_private(self.state_dir / "jupyterhub_config.py", self.config())
        await self.spawn([self.python, "-m", "jupyterhub", "-f", str(config_file)],
                         env=self.environment(), cwd=str(self.state_dir))
        await self.wait_ready(lambda: asyncio.to_thread(self._answers), timeout, interval=0.3)
        return self.url

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    async def stop(self, grace: float = 30.0) -> None:
        """SIGTERM: JupyterHub stops every user's server (each shuts its kernels down through
        our provisioner) and the proxy, then exits; SIGKILL to its group if it does not."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace)
        except asyncio.TimeoutError:
            await self.kill()
