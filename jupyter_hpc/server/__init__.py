"""jupyter_server integration: a kernel manager whose remote kernels survive a server restart,
and (as a server extension) the REST handlers of the JupyterLab extension.

``c.ServerApp.kernel_manager_class = "jupyter_hpc.server.HPCMappingKernelManager"``
``c.ServerApp.jpserver_extensions = {"jupyter_hpc.server": True}``
"""

from .kernel_manager import HPCMappingKernelManager, HPCServerKernelManager
from .records import KernelRecords

__all__ = ["HPCMappingKernelManager", "HPCServerKernelManager", "KernelRecords"]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """jupyter_server's extension hook: ``jpserver_extensions = {"jupyter_hpc.server": True}``
    loads the REST handlers of :mod:`jupyter_hpc.server.extension`."""
    return [{"module": "jupyter_hpc.server"}]


def _link_jupyter_server_extension(serverapp) -> None:
    from .extension import _link_jupyter_server_extension as link

    link(serverapp)


def _load_jupyter_server_extension(serverapp) -> None:
    from .extension import _load_jupyter_server_extension as load

    load(serverapp)
