"""Kernel provisioners (jupyter_client's provisioner API) that run kernels on a cluster."""

from .slurm_provisioner import SlurmProvisioner
from .ssh_provisioner import SSHProvisioner

__all__ = ["SSHProvisioner", "SlurmProvisioner"]
