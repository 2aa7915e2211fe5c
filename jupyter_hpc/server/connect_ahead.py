"""Log in to the sites of installed hpc kernelspecs when the server starts, before any kernel.

A laptop's JupyterLab with a kernelspec from ``jupyter hpc install`` (or written by hand) would
otherwise pay the TCP connect, key exchange and login on its first kernel, as well as the import
of asyncssh. Discovery (``RemoteKernelSpecManager``) already does this for configured sites;
this does it for kernelspecs found on disk that name ``hpc-ssh`` or ``hpc-slurm``.

All of it runs off the server's event loop: reading the kernelspecs and importing the
provisioners in a thread of its own, the logins in the SSH loop. A connection opened ahead that
no kernel uses within the provisioner's ``pool_idle_lifetime`` is closed
(:meth:`jupyter_hpc.ssh.pool.ConnectionPool.connect_ahead`). A site that cannot be reached is
only noted in the log at info level: the kernel's own start reports the error properly.

Off with ``c.ConnectAhead.enabled = False``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import threading
from typing import Any

from traitlets import Bool
from traitlets.config import LoggingConfigurable

PROVISIONERS = {
    "hpc-ssh": "jupyter_hpc.provisioners.ssh_provisioner:SSHProvisioner",
    "hpc-slurm": "jupyter_hpc.provisioners.slurm_provisioner:SlurmProvisioner",
}


class ConnectAhead(LoggingConfigurable):
    """Which kernelspecs' sites the server logs in to at start."""

    enabled = Bool(
        True, config=True,
        help="At the server's start, open the SSH connection of each installed hpc-ssh or "
        "hpc-slurm kernelspec's login node in the background, so the first kernel pays no "
        "login. Connections no kernel uses within pool_idle_lifetime are closed again.",
    )

    def start(self, serverapp: Any) -> threading.Thread | None:
        """Begin in a thread of its own; returns it (tests join it), or None when off."""
        if not self.enabled:
            return None
        manager = getattr(serverapp, "kernel_spec_manager", None)
        if manager is not None and not getattr(manager, "include_local", True):
            return None  # a hub's server: no local kernelspecs, and discovery connects its sites
        thread = threading.Thread(
            target=self._connect_installed, args=(serverapp.config,), name="jupyter-hpc-connect-ahead", daemon=True,
        )
        thread.start()
        return thread

    def _connect_installed(self, config: Any) -> list[concurrent.futures.Future]:
        from jupyter_client.kernelspec import KernelSpecManager

        try:
            specs = KernelSpecManager(config=config).get_all_specs()
        except Exception as exc:  # noqa: BLE001 - never in the server's way
            self.log.info("jupyter_hpc: no connections ahead (kernelspecs unreadable: %s)", exc)
            return []
        targets = {}
        for name, model in specs.items():
            provisioner = ((model.get("spec") or {}).get("metadata") or {}).get("kernel_provisioner") or {}
            home = PROVISIONERS.get(provisioner.get("provisioner_name"))
            if home is None:
                continue
            try:
                module, _, cls_name = home.partition(":")
                cls = getattr(importlib.import_module(module), cls_name)
                instance = cls(kernel_id=f"connect-ahead-{name}", config=config, **(provisioner.get("config") or {}))
                target = instance.ssh_target()
            except Exception as exc:  # noqa: BLE001 - the kernel's own start will say what is wrong
                self.log.info("jupyter_hpc: kernelspec %s not connected ahead: %s", name, exc)
                continue
            targets.setdefault(target.pool_key(), (name, target, instance.pool_idle_lifetime))
        if not targets:
            return []
        from ..ssh import get_pool, ssh_loop

        futures = []
        for name, target, lifetime in targets.values():
            future = asyncio.run_coroutine_threadsafe(get_pool().connect_ahead(target, lifetime), ssh_loop())
            future.add_done_callback(lambda done, name=name, target=target: self._report(done, name, target))
            futures.append(future)
        return futures


    def _report(self, done: concurrent.futures.Future, name: str, target: Any) -> None:
        if done.cancelled():
            return
        exc = done.exception()
        if exc is not None:
            self.log.info("jupyter_hpc: could not connect ahead to %s for kernelspec %s: %s", target.host, name, exc)
        else:
            self.log.info("jupyter_hpc: connected ahead to %s for kernelspec %s", target.host, name)
