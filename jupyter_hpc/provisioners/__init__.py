"""Kernel provisioners (jupyter_client's provisioner API) that run kernels on a cluster."""

from .ssh_provisioner import SSHProvisioner

__all__ = ["SSHProvisioner"]
