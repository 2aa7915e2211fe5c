"""The only part of jupyter_hpc that talks SSH (asyncssh).

``SSHTarget`` says where and as whom; ``get_pool().connect(target)`` (in the SSH loop)
gives a shared :class:`SiteConnection`; ``run_in_ssh_loop`` carries a coroutine there from
any other loop.
"""

from .loop import run_in_ssh_loop, run_in_ssh_loop_sync, ssh_loop
from .pool import ConnectionPool, SiteConnection, get_pool
from .target import SSHTarget

__all__ = [
    "ConnectionPool",
    "SSHTarget",
    "SiteConnection",
    "get_pool",
    "run_in_ssh_loop",
    "run_in_ssh_loop_sync",
    "ssh_loop",
]
