"""Remote kernelspec discovery: the kernels a user has on each site, in the launcher.

``c.ServerApp.kernel_spec_manager_class = "jupyter_hpc.kernelspecs.RemoteKernelSpecManager"``
"""

from .build import LocalSpec, local_kernelspecs, local_name, write_kernelspec
from .discovery import DiscoveryError, DiscoveryResult, RemoteSpec, discover, discover_sync
from .manager import RemoteKernelSpecManager, SiteListing

__all__ = [
    "DiscoveryError", "DiscoveryResult", "LocalSpec", "RemoteKernelSpecManager", "RemoteSpec",
    "SiteListing", "discover", "discover_sync", "local_kernelspecs", "local_name", "write_kernelspec",
]
