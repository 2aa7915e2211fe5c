"""jupyter-hpc: Jupyter kernels on an HPC cluster's login and compute nodes, over SSH."""

__version__ = "0.1.0"
