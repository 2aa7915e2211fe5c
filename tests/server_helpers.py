"""A real jupyter_server with jupyter_hpc's kernel manager, run as a subprocess for the restart tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests

from jupyter_rest import rest, wait_until_serving
from testbed.sshd import free_port

MANAGER = "jupyter_hpc.server.HPCMappingKernelManager"
RECORD = "jupyter-hpc-kernels.json"


class Server:
    """``python -m jupyter_server`` on a free port, with the JUPYTER_PATH and runtime dir of the
    test's ``kernelspecs`` fixture (from the environment), logging to ``log_path``."""

    def __init__(self, workdir: Path, *args: str, name: str = "server") -> None:
        self.workdir = workdir
        self.port = free_port()
        self.token = uuid.uuid4().hex
        self.log_path = workdir / f"{name}-{self.port}.log"
        config_dir = workdir / "config"
        config_dir.mkdir(exist_ok=True)
        env = dict(os.environ, JUPYTER_CONFIG_DIR=str(config_dir))
        argv = [
            sys.executable, "-m", "jupyter_server", "--no-browser", "--ServerApp.allow_root=True",
            f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={workdir}",
            f"--ServerApp.kernel_manager_class={MANAGER}", *args,
        ]
        self.started = time.monotonic()
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, cwd=workdir)
        self.ready_after = self._wait_ready()

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def _wait_ready(self, timeout: float = 90) -> float:
        return wait_until_serving(self.process, self.port, self.token, self.started, timeout,
                                  "the server", lambda: self.log)

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        return rest(self.port, self.token, method, path, timeout=120, **kwargs)

    def first_listing(self, timeout: float = 60) -> None:
        """Await the sites' first discovery, as the JupyterLab extension does before it
        refreshes the launcher: it begins with the server's loop, so the first /api/kernelspecs
        may answer before it ends."""
        reply = requests.get(f"http://127.0.0.1:{self.port}/jupyter-hpc/api/kernelspecs/first",
                             params={"timeout": timeout}, headers={"Authorization": f"token {self.token}"},
                             timeout=timeout + 30)
        reply.raise_for_status()
        assert reply.json()["complete"], "the sites' first discovery did not end"

    def kernel_ids(self) -> list[str]:
        return [kernel["id"] for kernel in self.api("GET", "kernels").json()]

    def kill(self) -> None:
        """SIGKILL: no shutdown of anything, the SSH connections just drop."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 60) -> None:
        """A clean stop (SIGTERM), as a service manager does; a stuck server is killed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()


def record_path() -> Path:
    return Path(os.environ["JUPYTER_RUNTIME_DIR"]) / RECORD


def recorded_kernels() -> dict:
    path = record_path()
    return json.loads(path.read_text())["kernels"] if path.exists() else {}
