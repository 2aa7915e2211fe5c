"""SLURM magics for IPython: ``%load_ext jupyter_hpc.magics``.

``%%sbatch``, ``%squeue``, ``%sacct``, ``%sinfo``, ``%scancel`` and ``%slurm`` (defaults).
In a kernel on the cluster the commands run there; from a local kernel, ``--site NAME`` (or
``%slurm site NAME``) runs them over SSH. A site is, until a sites registry exists, the
name of an ``hpc-ssh`` kernelspec: its ``metadata.kernel_provisioner.config`` gives host,
port, username, client_keys, known_hosts and jump_host.

Needs only IPython and pandas; the SSH layer (asyncssh) and jupyter_client are imported
only when ``--site`` is used.
"""

from ..errors import SlurmError
from .slurm_magics import JobOutcome, SlurmMagics

__all__ = ["JobOutcome", "SlurmError", "SlurmMagics", "load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython) -> None:
    ipython.register_magics(SlurmMagics)


def unload_ipython_extension(ipython) -> None:
    registry = ipython.magics_manager.registry
    if "SlurmMagics" in registry:
        instance = registry.pop("SlurmMagics")
        for kind in ("line", "cell"):
            for name in instance.magics[kind]:
                ipython.magics_manager.magics[kind].pop(name, None)
