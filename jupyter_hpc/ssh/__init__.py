"""The only part of jupyter_hpc that talks SSH (asyncssh).

``SSHTarget`` says where and as whom; ``get_pool().connect(target)`` (in the SSH loop)
gives a shared :class:`SiteConnection`; ``run_in_ssh_loop`` carries a coroutine there from
any other loop. asyncssh itself comes from :mod:`.quiet_import` everywhere in jupyter_hpc.

The names below are loaded on first use (PEP 562), so importing a submodule such as
``jupyter_hpc.ssh.loop`` or ``.quiet_import`` does not import the pool and its modules too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy_names import lazy_names

_HOMES = {
    "ConnectionPool": ".pool",
    "SSHTarget": ".target",
    "SiteConnection": ".pool",
    "get_pool": ".pool",
    "run_in_ssh_loop": ".loop",
    "run_in_ssh_loop_sync": ".loop",
    "ssh_loop": ".loop",
}

__all__ = sorted(_HOMES)

if TYPE_CHECKING:
    from .loop import run_in_ssh_loop, run_in_ssh_loop_sync, ssh_loop
    from .pool import ConnectionPool, SiteConnection, get_pool
    from .target import SSHTarget


__getattr__ = lazy_names(__name__, _HOMES, globals())
