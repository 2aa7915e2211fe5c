"""jupyter-hpc: Jupyter kernels on an HPC cluster's login and compute nodes, over SSH."""

__version__ = "0.1.0"

from .proxy.kernel_helper import proxy_url  # noqa: E402 - stdlib only: a web UI's URL through the cluster proxy


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "jupyter_hpc.server.extension"}]
