"""Kernel provisioners (jupyter_client's provisioner API) that run kernels on a cluster.

jupyter_client loads each through its own entry point
(``jupyter_hpc.provisioners.ssh_provisioner:SSHProvisioner``,
``jupyter_hpc.provisioners.slurm_provisioner:SlurmProvisioner``), so a script starting an SSH
kernel imports no SLURM code: the names here are loaded on first use (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_HOMES = {"SSHProvisioner": ".ssh_provisioner", "SlurmProvisioner": ".slurm_provisioner"}

__all__ = ["SSHProvisioner", "SlurmProvisioner"]

if TYPE_CHECKING:
    from .slurm_provisioner import SlurmProvisioner
    from .ssh_provisioner import SSHProvisioner


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value
