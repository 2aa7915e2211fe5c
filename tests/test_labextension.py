"""The prebuilt JupyterLab extension ships inside the package: JupyterLab lists it enabled."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_jupyterlab_lists_the_extension_enabled():
    listing = subprocess.run([sys.executable, "-m", "jupyterlab.labextensions", "list"],
                             capture_output=True, text=True, timeout=120)
    text = listing.stdout + listing.stderr
    line = next((line for line in text.splitlines() if "jupyter-hpc" in line), "")
    assert "enabled" in line and "OK" in line, text


def test_the_wheel_carries_the_built_extension(tmp_path):
    source = tmp_path / "src"  # a copy: the build's egg-info and build/ never land in the checkout
    shutil.copytree(REPO / "jupyter_hpc", source / "jupyter_hpc", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "jupyter-config", source / "jupyter-config")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(source)],
                   check=True, timeout=300, capture_output=True)
    wheel = next(tmp_path.glob("jupyter_hpc-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    data = [name for name in names if "/data/share/jupyter/labextensions/jupyter-hpc/" in name]
    assert any(name.endswith("jupyter-hpc/package.json") for name in data), names
    assert any("/static/remoteEntry." in name for name in data), names
    assert any(name.endswith("jupyter_server_config.d/jupyter_hpc.json") for name in names)
