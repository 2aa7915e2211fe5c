"""Fixtures that start the real test bed: users, a remote Python, OpenSSH sshd."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from testbed.remote_python import ensure_remote_python
from testbed.slurm import SlurmCluster
from testbed.sshd import SSHDaemon
from testbed.users import KERNEL_USER, NEIGHBOUR_USER, ensure_user

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def pytest_ignore_collect(collection_path, config):
    """jupyter_server's vendored contents tests need pytest-jupyter's event loop, which this
    suite's pytest-asyncio would take over: tests/test_contents_upstream.py runs them in a
    pytest of their own (-p no:asyncio), so the suite does not collect them as skipped here."""
    if collection_path.name == "jupyter_server_contents" and config.pluginmanager.has_plugin("asyncio"):
        return True
    return None


@pytest.fixture(scope="session")
def remote_python() -> str:
    return ensure_remote_python()


@pytest.fixture(scope="session")
def kernel_user() -> pwd.struct_passwd:
    return ensure_user(KERNEL_USER)


@pytest.fixture(scope="session")
def neighbour_user() -> pwd.struct_passwd:
    return ensure_user(NEIGHBOUR_USER)


@pytest.fixture(scope="session")
def sshd(kernel_user, neighbour_user):
    # Not under pytest's tmp dir: that is 0700 root's, and sshd reads authorized keys as the user.
    root = Path(tempfile.mkdtemp(prefix="jupyter-hpc-sshd-"))
    daemon = SSHDaemon(root, users=[kernel_user.pw_name]).start()
    yield daemon
    daemon.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def sshd_without_streamlocal(kernel_user):
    """A login node whose sshd forbids forwarding to Unix sockets, as some sites do."""
    root = Path(tempfile.mkdtemp(prefix="jupyter-hpc-sshd-nosl-"))
    daemon = SSHDaemon(root, users=[kernel_user.pw_name], options={"AllowStreamLocalForwarding": "no"}).start()
    yield daemon
    daemon.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def slurm(kernel_user):
    """A single-node SLURM (munged, slurmctld, slurmd); the test user's jobs are cancelled after."""
    cluster = SlurmCluster(Path(tempfile.mkdtemp(prefix="jupyter-hpc-slurm-"))).start()
    yield cluster
    cluster.cancel_all(kernel_user.pw_name)
    cluster.stop()


@pytest.fixture
def kernelspecs(tmp_path, monkeypatch):
    """Write kernelspecs into a fresh JUPYTER_PATH entry; returns a writer."""
    root = tmp_path / "jupyter"
    monkeypatch.setenv("JUPYTER_PATH", str(root))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))

    def write(name: str, config: dict, argv: list[str] | None = None, provisioner: str = "hpc-ssh", **spec) -> str:
        directory = root / "kernels" / name
        directory.mkdir(parents=True)
        body = {
            "argv": argv or [config["remote_python"], "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": spec.pop("display_name", name),
            "language": "python",
            "interrupt_mode": "signal",
            "metadata": {"kernel_provisioner": {"provisioner_name": provisioner, "config": config}},
        }
        body["metadata"].update(spec.pop("metadata", {}))
        body.update(spec)
        (directory / "kernel.json").write_text(json.dumps(body))
        return name

    return write


@pytest.fixture
def ssh_spec(kernelspecs, sshd, kernel_user, remote_python):
    """An hpc-ssh kernelspec that logs in to the test sshd as the kernel user."""

    def make(name: str = "hpc-test", **config) -> str:
        config.setdefault("remote_python", remote_python)
        return kernelspecs(name, sshd.provisioner_config(kernel_user.pw_name, **config))

    return make


@pytest.fixture
def slurm_spec(kernelspecs, sshd, kernel_user, remote_python, slurm):
    """An hpc-slurm kernelspec: jobs on the test SLURM, the node reached through the test sshd."""

    def make(name: str = "hpc-slurm-test", **config) -> str:
        config.setdefault("remote_python", remote_python)
        config.setdefault("node_port", sshd.port)
        config.setdefault("poll_interval", 0.5)
        config.setdefault("queue_timeout", 60)
        return kernelspecs(name, sshd.provisioner_config(kernel_user.pw_name, **config), provisioner="hpc-slurm")

    yield make
    slurm.cancel_all(kernel_user.pw_name)


@pytest.fixture
def canary():
    """A path under /tmp, unique to the test, that the remote user could create: a hostile value
    carries ``touch <canary>``, and the file must never appear."""
    path = f"/tmp/jupyter-hpc-canary-{uuid.uuid4().hex}"
    yield path
    created = os.path.exists(path)
    if created:
        os.unlink(path)
    assert not created, f"{path} was created: a value reached a shell as code"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
