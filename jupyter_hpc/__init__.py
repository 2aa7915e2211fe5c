"""jupyter-hpc: Jupyter kernels on an HPC cluster's login and compute nodes, over SSH."""

__version__ = "0.1.0"


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "jupyter_hpc.server.extension"}]
