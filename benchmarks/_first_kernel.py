"""The first kernel of a fresh process (issue 30), for ``kernel_start.py``.

Three ways a user meets their first kernel, each against a local kernel in the same kind of
fresh process, in the same run, interleaved round by round:

* *script*: a fresh ``python`` running jupyter_client's blocking ``KernelManager`` (what
  nbclient, papermill, ``jupyter console`` and jupyter_kernel_test use): from the process's
  spawn to the first ``execute_reply`` of ``pass``, imports included (the provisioner's too).
* *server with sites*: a fresh ``jupyter_server`` with ``c.HPCSites`` and
  ``RemoteKernelSpecManager`` (discovery logs in to the site at start).
* *server with an installed kernelspec*: a fresh ``jupyter_server`` with the plain
  ``KernelSpecManager`` and jupyter_hpc's extension, the kernelspec on disk as
  ``jupyter hpc install`` writes it (the extension logs in to its site at start).

For the servers, as JupyterLab does when it opens a notebook: once ``/api/status`` answers,
``GET /api/kernelspecs``, then timed from ``POST /api/kernels`` through the websocket's
``kernel_info`` to the ``execute_reply`` of ``pass``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import requests

SCRIPT = textwrap.dedent("""
    import sys
    from jupyter_client.manager import KernelManager
    km = KernelManager(kernel_name=sys.argv[1])
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    msg_id = kc.execute("pass", store_history=False)
    while kc.get_shell_msg(timeout=120)["parent_header"].get("msg_id") != msg_id:
        pass
    print("REPLIED", flush=True)
    kc.stop_channels()
    km.shutdown_kernel(now=True)
""")


def child_env(bed) -> dict[str, str]:
    """The fresh processes' environment: a bytecode cache of their own.

    pip compiles an installed package's bytecode at install; this repository is installed
    editable, and a machine with ``PYTHONDONTWRITEBYTECODE`` (as these shared ones) would then
    compile every jupyter_hpc module at each import (about 40 ms here). Both sides get the same
    private cache, filled by the untimed first round."""
    env = dict(os.environ, PYTHONPYCACHEPREFIX=str(bed.root / "pycache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def script_start(kernel_name: str, env: dict[str, str] | None = None) -> float:
    """Seconds from spawning a fresh python to its first execute_reply."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", SCRIPT, kernel_name], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd="/tmp", env=env)
    line = process.stdout.readline()
    elapsed = time.perf_counter() - start
    _, stderr = process.communicate(timeout=60)
    if "REPLIED" not in line:
        raise RuntimeError(f"the script's kernel {kernel_name} gave no reply: {stderr.strip()[-500:]}")
    return elapsed


class FreshServer:
    """A ``python -m jupyter_server`` with a config of its own, stopped by :meth:`stop`."""

    def __init__(self, config: dict, root: Path, env: dict[str, str] | None = None) -> None:
        from _bed import free_port

        self.dir = Path(tempfile.mkdtemp(prefix="server-", dir=root))
        (self.dir / "config").mkdir()
        (self.dir / "config" / "jupyter_server_config.json").write_text(json.dumps(config))
        self.port, self.token = free_port(), uuid.uuid4().hex
        env = dict(env or os.environ, JUPYTER_CONFIG_DIR=str(self.dir / "config"))
        self.log = open(self.dir / "server.log", "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", "--no-browser", "--ServerApp.allow_root=True",
             f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1",
             f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.dir}"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.dir,
        )
        deadline = time.monotonic() + 90
        while True:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {(self.dir / 'server.log').read_text()[-1500:]}")
            try:
                if self.api("GET", "status").ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.05)

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, f"http://127.0.0.1:{self.port}/api/{path}", timeout=120,
                                headers={"Authorization": f"token {self.token}"}, **kwargs)

    def discovered(self, name: str, timeout: float = 60) -> str:
        """Wait (untimed) until discovery lists ``name``: the first list may come after
        ``first_list_timeout`` on a loaded machine, and a user would see it a moment later."""
        deadline = time.monotonic() + timeout
        while name not in self.api("GET", "kernelspecs").json()["kernelspecs"]:
            if time.monotonic() > deadline:
                log = (self.dir / "server.log").read_text()
                raise RuntimeError(f"discovery never listed {name} in {timeout:.0f} s: {log[-2000:]}")
            time.sleep(0.2)
        return name

    def first_kernel(self, kernel_name: str) -> float:
        """As JupyterLab opening a notebook: the kernelspecs, then a kernel, its websocket,
        kernel_info and one execute; seconds from the POST to the execute_reply."""
        import websocket

        self.api("GET", "kernelspecs").raise_for_status()
        start = time.perf_counter()
        response = self.api("POST", "kernels", json={"name": kernel_name})
        response.raise_for_status()
        kernel_id = response.json()["id"]
        ws = websocket.create_connection(
            f"ws://127.0.0.1:{self.port}/api/kernels/{kernel_id}/channels?session_id={uuid.uuid4().hex}",
            header=[f"Authorization: token {self.token}"], timeout=120,
        )
        try:
            for msg_type, content in (("kernel_info_request", {}), ("execute_request", {"code": "pass", "silent": False})):
                msg_id = uuid.uuid4().hex
                ws.send(json.dumps({
                    "header": {"msg_id": msg_id, "msg_type": msg_type, "session": "bench", "username": "bench",
                               "version": "5.3", "date": ""},
                    "parent_header": {}, "metadata": {}, "content": content, "channel": "shell", "buffers": [],
                }))
                reply = msg_type.replace("_request", "_reply")
                while True:
                    msg = json.loads(ws.recv())
                    if msg.get("msg_type") == reply and msg.get("parent_header", {}).get("msg_id") == msg_id:
                        break
            elapsed = time.perf_counter() - start
        finally:
            ws.close()
        self.api("DELETE", f"kernels/{kernel_id}")
        return elapsed

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.log.close()


def server_configs(bed, remote_site: dict) -> dict[str, dict]:
    """The two server setups: sites + discovery, and a plain server with installed kernelspecs."""
    extension = {"ServerApp": {"jpserver_extensions": {"jupyter_hpc": True}}}
    return {
        "server with sites": {
            **extension,
            "ServerApp": {"jpserver_extensions": {"jupyter_hpc": True},
                          "kernel_spec_manager_class": "jupyter_hpc.kernelspecs.RemoteKernelSpecManager"},
            "HPCSites": {"sites": {"bench": {"display_name": "Bench", **remote_site}}},
            "RemoteKernelSpecManager": {"include_local": True},
        },
        "server with an installed kernelspec": extension,
    }


REMOTE_SPEC = "benchpy"


def write_remote_kernelspec(bed) -> None:
    """The bench user's own kernelspec on the "cluster" (~/.local/share/jupyter/kernels), which
    discovery lists as ``bench-login-benchpy``: the same remote ipykernel as every variant."""
    directory = Path(bed.user.pw_dir) / ".local" / "share" / "jupyter" / "kernels" / REMOTE_SPEC
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "kernel.json").write_text(json.dumps({
        "argv": [bed.remote_python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Bench Python", "language": "python",
    }))
    for path in [directory, *directory.parents]:
        if path == Path(bed.user.pw_dir):
            break
        os.chown(path, bed.user.pw_uid, bed.user.pw_gid)
    os.chown(directory / "kernel.json", bed.user.pw_uid, bed.user.pw_gid)


def rounds(bed, local_name: str, ssh_name: str, remote_site: dict, count: int) -> dict[str, dict[str, list[float]]]:
    """``count`` interleaved rounds of: for each setup, a fresh local first kernel, then a fresh
    hpc-ssh one. The site's discovered kernelspec is found by listing."""
    write_remote_kernelspec(bed)
    results: dict[str, dict[str, list[float]]] = {}
    configs = server_configs(bed, remote_site)
    env = child_env(bed)
    # Only the two kernelspecs in their JUPYTER_PATH, as a user with one cluster kernelspec has
    # (the bench's other variants pin other known_hosts, each a connection of its own).
    first_path = bed.root / "jupyter-first"
    for name in (local_name, ssh_name):
        shutil.copytree(bed.jupyter_path / "kernels" / name, first_path / "kernels" / name, dirs_exist_ok=True)
    env["JUPYTER_PATH"] = str(first_path)
    for name in (local_name, ssh_name):  # untimed: fills the bytecode cache, the OS's file cache
        script_start(name, env)
    for _ in range(count):
        for setup in ("script", *configs):
            for variant in ("local", "hpc-ssh"):
                if setup == "script":
                    seconds = script_start(local_name if variant == "local" else ssh_name, env)
                else:
                    server = FreshServer(configs[setup], bed.root, env)
                    try:
                        name = local_name if variant == "local" else ssh_name
                        if setup == "server with sites" and variant == "hpc-ssh":
                            name = server.discovered(f"bench-login-{REMOTE_SPEC}")
                        seconds = server.first_kernel(name)
                    finally:
                        server.stop()
                results.setdefault(setup, {}).setdefault(variant, []).append(seconds)
    return results
