"""jupyter_server integration: a kernel manager whose remote kernels survive a server restart.

``c.ServerApp.kernel_manager_class = "jupyter_hpc.server.HPCMappingKernelManager"``
"""

from .kernel_manager import HPCMappingKernelManager, HPCServerKernelManager
from .records import KernelRecords

__all__ = ["HPCMappingKernelManager", "HPCServerKernelManager", "KernelRecords"]
