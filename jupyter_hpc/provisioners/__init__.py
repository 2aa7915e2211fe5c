"""Kernel provisioners (jupyter_client's provisioner API) that run kernels on a cluster.

jupyter_client loads each through its own entry point
(``jupyter_hpc.provisioners.ssh_provisioner:SSHProvisioner``,
``jupyter_hpc.provisioners.slurm_provisioner:SlurmProvisioner``), so a script starting an SSH
kernel imports no SLURM code: the names here are loaded on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy_names import lazy_names

_HOMES = {"SSHProvisioner": ".ssh_provisioner", "SlurmProvisioner": ".slurm_provisioner"}

__all__ = ["SSHProvisioner", "SlurmProvisioner"]

if TYPE_CHECKING:
    from .slurm_provisioner import SlurmProvisioner
    from .ssh_provisioner import SSHProvisioner


__getattr__ = lazy_names(__name__, _HOMES, globals())
