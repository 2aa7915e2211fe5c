"""A Python with ipykernel that the non-root test user can run: the cluster's kernel."""

from __future__ import annotations

import os
import subprocess

VENV = os.environ.get("JUPYTER_HPC_TEST_VENV", "/opt/jupyter-hpc-test/venv")
# Cluster-side only (never the server's): Dask on SLURM from a kernel, its dashboard (Bokeh).
DASK_PACKAGES = ["dask", "distributed", "dask-jobqueue", "bokeh"]
# A kernel in another language runtime than ipykernel's (C++ xeus), with its own kernelspecs in
# the venv's share/jupyter/kernels: discovery must find them through the venv's prefix.
# 0.19 runs cells in an asyncio loop in its main thread, which the launcher's shim needs to
# make SIGINT interrupt a cell (kernel_shim.py); a later series is tried before it is let in.
XEUS_PACKAGES = ["xeus-python>=0.19,<0.20"]


def ensure_remote_python() -> str:
    """Make (once) a world-readable venv from Debian's python3 with ipykernel; return its python."""
    python = os.path.join(VENV, "bin", "python")
    probe = [python, "-c", "import ipykernel, zmq, dask_jobqueue, bokeh, importlib.util; assert zmq.has('curve'); "
             "assert importlib.util.find_spec('xpython_launcher')"]
    if os.path.exists(python) and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    os.makedirs(os.path.dirname(VENV), exist_ok=True)
    subprocess.run(["/usr/bin/python3", "-m", "venv", VENV], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", "ipykernel", *DASK_PACKAGES, *XEUS_PACKAGES], check=True)
    subprocess.run(["chmod", "-R", "a+rX", os.path.dirname(VENV)], check=True)
    subprocess.run(probe, check=True)
    return python
