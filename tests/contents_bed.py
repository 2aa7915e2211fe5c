"""The test bed of the contents tests: a user of their own, whose home and scratch the
file browser shows, behind an sshd of their own (other tests write in hpcuser's home)."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import uuid
from pathlib import Path

import pytest

from server_helpers import Server
from testbed.sshd import SSHDaemon, running_sshd
from testbed.users import NEIGHBOUR_USER, ensure_user, run_as

FILES_USER = "hpcfiles"
SCRATCH_BASE = Path("/var/tmp/jupyter-hpc-scratch")
MANAGER = "jupyter_hpc.contents.SFTPContentsManager"


class FilesUser:
    """The remote user: home, scratch (``$SCRATCH``, set in ~/.profile), and helpers that act
    on the cluster as that user, the way a login shell would."""

    def __init__(self, entry: pwd.struct_passwd) -> None:
        self.entry = entry
        self.name = entry.pw_name
        self.home = Path(entry.pw_dir)
        self.scratch = SCRATCH_BASE / self.name
        SCRATCH_BASE.mkdir(mode=0o755, exist_ok=True)
        os.chmod(SCRATCH_BASE, 0o755)
        self.scratch.mkdir(exist_ok=True)
        os.chown(self.scratch, entry.pw_uid, entry.pw_gid)
        os.chmod(self.scratch, 0o700)
        profile = self.home / ".profile"
        profile.write_text(f"export SCRATCH={self.scratch}\n")
        os.chown(profile, entry.pw_uid, entry.pw_gid)

    def run(self, *argv: str, **kwargs) -> subprocess.CompletedProcess:
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        return run_as(self.name, list(argv), check=True, **kwargs)

    def read(self, path: Path) -> bytes:
        return self.run("cat", str(path)).stdout

    def write(self, path: Path, data: bytes | str) -> None:
        data = data.encode() if isinstance(data, str) else data
        self.run("mkdir", "-p", str(path.parent))
        self.run("tee", str(path), input=data, stdout=subprocess.DEVNULL)

    def folder(self, where: Path) -> Path:
        """A fresh folder of this test's own under ``where`` (home or scratch)."""
        path = where / f"t-{uuid.uuid4().hex[:8]}"
        self.run("mkdir", str(path))
        return path


@pytest.fixture(scope="session")
def files_user() -> FilesUser:
    ensure_user(NEIGHBOUR_USER)
    return FilesUser(ensure_user(FILES_USER))


@pytest.fixture(scope="session")
def files_sshd(files_user):
    with running_sshd([files_user.name], "files") as daemon:
        yield daemon


def site_config(sshd: SSHDaemon, user: FilesUser, roots: dict | None = None) -> dict:
    config = sshd.provisioner_config(user.name)
    config["roots"] = roots or {"home": "~", "scratch": "$SCRATCH"}
    return config


def start_server(workdir: Path, sshd: SSHDaemon, user: FilesUser, roots: dict | None = None,
                 extra: dict | None = None, name: str = "server") -> Server:
    """A real jupyter_server showing the cluster's files through SFTPContentsManager."""
    config_dir = workdir / "config"
    config_dir.mkdir(exist_ok=True)
    config = {
        "ServerApp": {"contents_manager_class": MANAGER},
        "HPCSites": {"sites": {"files": site_config(sshd, user, roots)}},
    }
    for section, values in (extra or {}).items():
        config.setdefault(section, {}).update(values)
    (config_dir / "jupyter_server_config.json").write_text(json.dumps(config))
    return Server(workdir, name=name)


@pytest.fixture(scope="module")
def contents_server(tmp_path_factory, files_sshd, files_user):
    """One server for a module's tests (each works in a folder of its own): a start costs seconds."""
    workdir = tmp_path_factory.mktemp("contents-server")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_PATH", str(workdir / "jupyter"))
        patch.setenv("JUPYTER_RUNTIME_DIR", str(workdir / "runtime"))
        server = start_server(workdir, files_sshd, files_user)
        yield server
        server.stop()


def server_rss(server: Server) -> int:
    """Resident set size of the server process, in bytes."""
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")
