"""Fixtures for jupyter_server's own contents tests, run against SFTPContentsManager.

jupyter-hpc: pytest-jupyter's server fixtures, and a real sshd (on loopback) that lets root log
in with a per-run key, so the manager reaches the test's local jp_root_dir over SFTP exactly
as it reaches a cluster's home. The fixtures from upstream's tests/conftest.py below
(``contents_dir``, ``dirs``, ``contents``, ``folders``) are vendored unchanged from
jupyter-server/jupyter_server at commit 9a4d6eea2b16815a493b11fffe0b51b1fe55a81b.
Copyright (c) Jupyter Development Team; Modified BSD License (LICENSE in this folder).
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from nbformat import writes
from nbformat.v4 import new_notebook
from traitlets import Unicode
from traitlets.config import Config

from pytest_jupyter.jupyter_server import *  # noqa: F403  (the jp_* fixtures)
from jupyter_hpc.contents import SFTPContentsManager
from testbed.sshd import SSHDaemon

from .skips import apply_skips


def pytest_collection_modifyitems(config, items):
    apply_skips(items)


@pytest.fixture(scope="session")
def root_sshd():
    root = Path(tempfile.mkdtemp(prefix="jupyter-hpc-sshd-upstream-"))
    daemon = SSHDaemon(root, users=["root"], options={"PermitRootLogin": "prohibit-password"}).start()
    yield daemon
    daemon.stop()
    shutil.rmtree(root, ignore_errors=True)


class SFTPContentsManagerOnTestDir(SFTPContentsManager):
    """jupyter-hpc: SFTPContentsManager with the one FileContentsManager helper that upstream's
    test_manager.py setup functions use to make files directly in the test directory."""

    test_dir = Unicode()

    def _get_os_path(self, path):
        return os.path.join(self.test_dir, *[part for part in path.strip("/").split("/") if part])


def sftp_manager_on(daemon: SSHDaemon, directory: Path) -> SFTPContentsManager:
    """An SFTPContentsManager whose one root is ``directory``, over the sshd ``daemon``."""
    site = daemon.provisioner_config("root")
    site["roots"] = {"root": str(directory)}
    config = Config({"HPCSites": {"sites": {"testbed": site}}})
    return SFTPContentsManagerOnTestDir(config=config, test_dir=str(directory))


@pytest.fixture
def jp_server_config(root_sshd, jp_root_dir):
    """The site whose one root is the test's directory."""
    site = root_sshd.provisioner_config("root")
    site["roots"] = {"root": str(jp_root_dir)}
    return Config({"HPCSites": {"sites": {"testbed": site}}})


# ---- vendored from upstream tests/conftest.py ------------------------------------------
@pytest.fixture
def contents_dir(tmp_path, jp_serverapp):
    return tmp_path / jp_serverapp.root_dir


dirs = [
    ("", "inroot"),
    ("Directory with spaces in", "inspace"),
    ("unicodé", "innonascii"),
    ("foo", "a"),
    ("foo", "b"),
    ("foo", "name with spaces"),
    ("foo", "unicodé"),
    ("foo/bar", "baz"),
    ("ordering", "A"),
    ("ordering", "b"),
    ("ordering", "C"),
    ("å b", "ç d"),
]


@pytest.fixture
def contents(contents_dir):
    # Create files in temporary directory
    paths: dict = {"notebooks": [], "textfiles": [], "blobs": [], "contents_dir": contents_dir}
    for d, name in dirs:
        p = contents_dir / d
        p.mkdir(parents=True, exist_ok=True)

        # Create a notebook
        nb = writes(new_notebook(), version=4)
        nbname = p.joinpath(f"{name}.ipynb")
        nbname.write_text(nb, encoding="utf-8")
        paths["notebooks"].append(nbname.relative_to(contents_dir))

        # Create a text file
        txt = f"{name} text file"
        txtname = p.joinpath(f"{name}.txt")
        txtname.write_text(txt, encoding="utf-8")
        paths["textfiles"].append(txtname.relative_to(contents_dir))

        # Create a random blob
        blob = name.encode("utf-8") + b"\xff"
        blobname = p.joinpath(f"{name}.blob")
        blobname.write_bytes(blob)
        paths["blobs"].append(blobname.relative_to(contents_dir))
    paths["all"] = list(paths.values())
    return paths


@pytest.fixture
def folders():
    return list({item[0] for item in dirs})
