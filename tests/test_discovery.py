"""Remote kernelspec discovery (issue 16) against the real sshd and a real jupyter_server.

The test user ``hpcdisco`` and the sshd here are this module's own: its writes into the remote
home collide with no other test. Sessions are counted from sshd's VERBOSE log ("Starting
session"), so "one SSH exec" is what the login node saw.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from demo_helpers import KernelSocket
from server_helpers import Server
from testbed.remote_python import VENV
from testbed.sshd import SSHDaemon, running_sshd
from testbed.users import ensure_user

USER = "hpcdisco"
OTHER = "hpcdisco2"
# A 1x1 PNG.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


@pytest.fixture(scope="module")
def disco_user():
    entry = ensure_user(USER)
    ensure_user(OTHER)
    yield entry


@pytest.fixture(scope="module")
def disco_sshd(disco_user):
    with running_sshd([USER], "disco") as daemon:
        yield daemon


def sessions(daemon: SSHDaemon) -> int:
    return len(re.findall(r"Starting session: ", daemon.log.read_text()))


def kill_connections(daemon: SSHDaemon) -> None:
    """Stop the listener and the per-connection sshd processes it forked (ours): the site is down."""
    parent = daemon.process.pid
    children = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                children.append(int(pid))
    daemon.stop()
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def chown_tree(path: Path, user: str) -> None:
    subprocess.run(["chown", "-R", f"{user}:{user}", str(path)], check=True)


@pytest.fixture
def home(disco_user):
    """The remote user's kernel directories, emptied before and after."""
    base = Path(disco_user.pw_dir)
    dirs = [base / ".ipython", base / ".local" / "share" / "jupyter"]
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
    yield base
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


def write_spec(directory: Path, body, user: str = USER) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "kernel.json"
    path.write_text(body if isinstance(body, str) else json.dumps(body))
    return path


def start_server(tmp_path: Path, daemon: SSHDaemon, remote_python: str, targets: dict | None = None,
                 server_config: dict | None = None, **manager) -> Server:
    config_dir = tmp_path / "config"
    config_dir.mkdir(exist_ok=True)
    site = {"display_name": "Cori", **daemon.provisioner_config(USER, remote_python=remote_python)}
    if targets:
        site["targets"] = targets
    (config_dir / "jupyter_server_config.json").write_text(json.dumps({
        "HPCSites": {"sites": {"cori": site}},
        "RemoteKernelSpecManager": {"include_local": False, **manager},
        "ServerApp": {"jpserver_extensions": {"jupyter_hpc": True}},
        **(server_config or {}),
    }))
    os.environ.setdefault("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    return Server(tmp_path, "--ServerApp.kernel_spec_manager_class=jupyter_hpc.kernelspecs.RemoteKernelSpecManager")


@pytest.fixture
def servers(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "no-local-kernels"))
    started = []

    def start(daemon, remote_python, targets=None, server_config=None, **manager):
        server = start_server(tmp_path, daemon, remote_python, targets, server_config, **manager)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# Where the cluster keeps kernelspecs of its own, which every discovery here also lists: Debian's
# R kernel (/usr/share/jupyter/kernels/ir), the cluster venv's ipykernel and xeus-python specs.
SITE_KERNEL_DIRS = tuple(os.path.join(d, "share", "jupyter", "kernels", "") for d in ("/usr", "/usr/local", VENV))


def specs(server: Server) -> dict:
    """The kernelspecs listed from anywhere but the cluster's own directories: this test's. Once
    the sites' first lists are in, as the JupyterLab extension waits (/api/kernelspecs itself
    answers at once, before them)."""
    server.first_listing()
    listed = server.api("GET", "kernelspecs").json()["kernelspecs"]
    return {name: model for name, model in listed.items()
            if not model["spec"]["metadata"]["jupyter_hpc"]["remote_file"].startswith(SITE_KERNEL_DIRS)}


def test_myenv_in_ipython_kernels_is_listed_with_logo_and_runs_in_its_environment(
    home, disco_sshd, remote_python, servers
):
    myenv = home / ".ipython" / "kernels" / "myenv"
    myenv.mkdir(parents=True)
    wrapper = myenv / "wrapper.sh"
    wrapper.write_text(f"#!/bin/sh\nexport MYENV=1\nexec {remote_python} -m ipykernel_launcher \"$@\"\n")
    wrapper.chmod(0o755)
    (myenv / "logo-64x64.png").write_bytes(PNG)
    (myenv / "kernel.js").write_text("alert('never served')")
    write_spec(myenv, {"argv": ["{resource_dir}/wrapper.sh", "-f", "{connection_file}"],
                       "display_name": "My Env", "language": "python", "env": {"FROMSPEC": "kept"}})
    chown_tree(home / ".ipython", USER)

    knl = {"provisioner": "hpc-slurm", "display_name": "KNL node", "partition": "debug",
           "setup": ["true"]}
    # As in a hub's server: the kernel manager of jupyter_hpc, and no local kernelspecs.
    server = servers(disco_sshd, remote_python, targets={"login": {}, "knl": knl}, server_config={"ServerApp": {
        "jpserver_extensions": {"jupyter_hpc": True},
        "kernel_manager_class": "jupyter_hpc.server.HPCMappingKernelManager"}})
    listed = specs(server)
    assert sorted(listed) == ["cori-knl-myenv", "cori-login-myenv"], server.log
    # No "python3" kernelspec in this server: the default is the site's own python3 (the
    # cluster venv's ipykernel spec) on its first target, not jupyter's "python3".
    assert server.api("GET", "kernelspecs").json()["default"] == "cori-login-python3"
    slurm = listed["cori-knl-myenv"]["spec"]
    assert slurm["display_name"] == "Cori: My Env (KNL node)"
    assert slurm["metadata"]["kernel_provisioner"]["provisioner_name"] == "hpc-slurm"
    assert slurm["metadata"]["kernel_provisioner"]["config"]["partition"] == "debug"
    assert slurm["argv"] == listed["cori-login-myenv"]["spec"]["argv"] == [
        str(myenv / "wrapper.sh"), "-f", "{connection_file}"]
    model = listed["cori-login-myenv"]
    assert model["spec"]["display_name"] == "Cori: My Env (login)"
    assert model["spec"]["metadata"]["jupyter_hpc"]["remote_file"] == str(myenv / "kernel.json")
    assert model["spec"]["metadata"]["kernel_provisioner"]["provisioner_name"] == "hpc-ssh"
    assert set(model["resources"]) == {"logo-64x64"}  # kernel.js is never mirrored
    logo = requests.get(f"http://127.0.0.1:{server.port}{model['resources']['logo-64x64']}",
                        headers={"Authorization": f"token {server.token}"}, timeout=10)
    assert logo.status_code == 200 and logo.content == PNG
    assert logo.headers["Content-Type"] == "image/png"

    kernel_id = server.api("POST", "kernels", json={"name": "cori-login-myenv"}).json()["id"]
    ws = KernelSocket(server, kernel_id)
    try:
        out = ws.execute("import os, getpass; print(os.environ.get('MYENV'), os.environ.get('FROMSPEC'), getpass.getuser())")
        assert out["stdout"].split() == ["1", "kept", USER], out
    finally:
        ws.close()
    server.api("DELETE", f"kernels/{kernel_id}")


def test_fifty_specs_and_bad_ones_in_one_exec_then_polls_cost_none(home, disco_sshd, remote_python, servers):
    kernels = home / ".local" / "share" / "jupyter" / "kernels"
    for i in range(50):
        write_spec(kernels / f"env{i:02d}", {"argv": [remote_python, "-m", "ipykernel_launcher", "-f",
                                                       "{connection_file}"], "display_name": f"Env {i}"})
    garbage = write_spec(kernels / "garbage", "{not json")
    unreadable = write_spec(kernels / "unreadable", {"argv": ["x"], "display_name": "U"})
    huge = write_spec(kernels / "huge", "{" + " " * (10 << 20) + "}")
    chown_tree(home / ".local", USER)
    unreadable.chmod(0)

    before = sessions(disco_sshd)
    server = servers(disco_sshd, remote_python)
    listed = specs(server)
    assert sorted(listed) == [f"cori-login-env{i:02d}" for i in range(50)], server.log
    assert sessions(disco_sshd) - before == 1, "discovery took more than one SSH exec"
    log = server.log
    for bad in (garbage, unreadable, huge):
        assert str(bad) in log, f"no warning names {bad}:\n{log}"

    for _ in range(100):
        assert len(specs(server)) == 50
    assert sessions(disco_sshd) - before == 1, "a /api/kernelspecs poll opened an SSH session"


def test_site_down_answers_fast_and_refresh_brings_specs_back(home, disco_sshd, remote_python, servers):
    write_spec(home / ".ipython" / "kernels" / "py", {"argv": [remote_python, "-m", "ipykernel_launcher", "-f",
                                                              "{connection_file}"], "display_name": "Py"})
    chown_tree(home / ".ipython", USER)
    server = servers(disco_sshd, remote_python, discovery_ttl=0)  # every poll wants a refresh
    assert list(specs(server)) == ["cori-login-py"]
    kill_connections(disco_sshd)
    try:
        for _ in range(5):
            started = time.monotonic()
            assert list(specs(server)) == ["cori-login-py"]  # the last good list
            assert time.monotonic() - started < 1.0
            time.sleep(0.2)
        refreshed = requests.post(f"http://127.0.0.1:{server.port}/jupyter-hpc/api/kernelspecs/refresh",
                                  headers={"Authorization": f"token {server.token}"}, timeout=60).json()
        assert refreshed["sites"]["cori"]["ok"] is False
        assert "Cannot list the kernelspecs of site cori" in server.log
    finally:
        disco_sshd.start()
    write_spec(home / ".ipython" / "kernels" / "new", {"argv": ["python3"], "display_name": "New"})
    chown_tree(home / ".ipython", USER)
    refreshed = requests.post(f"http://127.0.0.1:{server.port}/jupyter-hpc/api/kernelspecs/refresh",
                              headers={"Authorization": f"token {server.token}"}, timeout=60).json()
    assert refreshed["sites"]["cori"]["ok"] is True, refreshed
    assert sorted(specs(server)) == ["cori-login-new", "cori-login-py"]


def test_hostile_specs_are_inert(home, disco_sshd, remote_python, servers, canary, tmp_path):
    kernels = home / ".local" / "share" / "jupyter" / "kernels"
    touch = f"$(touch {canary})"
    write_spec(kernels / "a;touch x", {"argv": ["/bin/sh", "-c", f"touch {canary}"],
                                       "display_name": f"`touch {canary}`"})
    write_spec(kernels / "b$(id)", {"argv": [touch, "-f", "{connection_file}"], "display_name": touch,
                                    "env": {"X": touch, "PS4": touch}, "name": "../../../../tmp/evil"})
    write_spec(kernels / "..evil", {"argv": ["x"], "display_name": "<img src=x onerror=alert(1)>",
                                    "metadata": {"kernel_provisioner": {"provisioner_name": "local-provisioner"}}})
    # Another user's kernel outside the home, symlinked in: their code would run as this user.
    foreign = Path(tempfile.mkdtemp(prefix="jupyter-hpc-disco-foreign-"))
    write_spec(foreign / "evil", {"argv": ["/bin/sh", "-c", f"touch {canary}"], "display_name": "Foreign"})
    chown_tree(foreign, OTHER)
    os.chmod(foreign, 0o755)
    (kernels / "foreign").symlink_to(foreign / "evil")
    (kernels / "linkfile").mkdir()
    (kernels / "linkfile" / "kernel.json").symlink_to(foreign / "evil" / "kernel.json")
    chown_tree(home / ".local", USER)
    try:
        server = servers(disco_sshd, remote_python)
        listed = specs(server)
        names = sorted(listed)
        assert all(re.fullmatch(r"[a-z0-9._-]+", n) and n.startswith("cori-login-") for n in names), names
        assert "cori-login-foreign" not in names and "cori-login-linkfile" not in names
        assert "owned by another user" in server.log
        assert len(names) == 3, names
        evil = next(m for m in listed.values() if "onerror" in m["spec"]["display_name"])
        assert evil["spec"]["metadata"]["kernel_provisioner"]["provisioner_name"] == "hpc-ssh"
        b = next(m for m in listed.values() if m["spec"]["argv"][0] == touch)
        assert b["spec"]["env"]["X"] == touch.replace("$", "$$")
        assert not os.path.exists("/tmp/evil")
    finally:
        shutil.rmtree(foreign, ignore_errors=True)


def test_a_server_wide_debugger_off_greys_jupyterlabs_switch_where_a_target_says_nothing(
    home, disco_sshd, remote_python, servers
):
    """JupyterLab offers its debugger on the kernelspec's metadata.debugger alone: an admin's
    c.SSHProvisioner.debugger = "off" must reach every discovered spec that does not choose
    for itself, or users get a switch whose debugger then fails to start."""
    write_spec(home / ".local/share/jupyter/kernels/py", {
        "argv": [remote_python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Py", "language": "python"})
    chown_tree(home / ".local", USER)
    targets = {"login": {}, "knl": {"provisioner": "hpc-slurm", "partition": "debug"},
               "own": {"debugger": "private"}}
    server = servers(disco_sshd, remote_python, targets=targets,
                     server_config={"SSHProvisioner": {"debugger": "off"}})
    listed = specs(server)
    assert listed["cori-login-py"]["spec"]["metadata"]["debugger"] is False
    assert listed["cori-knl-py"]["spec"]["metadata"]["debugger"] is False  # SlurmProvisioner inherits it
    assert "debugger" not in listed["cori-own-py"]["spec"]["metadata"]  # the target's own choice
