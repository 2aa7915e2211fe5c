"""Log in to the sites of installed hpc kernelspecs (and configured sites) as the server starts.

A laptop's JupyterLab with a kernelspec from ``jupyter hpc install`` (or written by hand) would
otherwise pay the TCP connect, key exchange and login on its first kernel, as well as the import
of asyncssh. Discovery (``RemoteKernelSpecManager``) logs in to configured sites; this does it
for kernelspecs found on disk that name ``hpc-ssh`` or ``hpc-slurm``, and for the sites too. For
a kernel on the login node it also has a launcher loaded and waiting there
(:mod:`jupyter_hpc.launcher.standby`, ``launcher_standby`` seconds), so the first kernel skips the
session's open and the remote python's start as later ones do.

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
import dataclasses
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
        help="At the server's start, open in the background the SSH connection to the login node "
        "of each installed hpc-ssh or hpc-slurm kernelspec and of each configured site, with a "
        "launcher waiting there for an hpc-ssh kernel, so the first kernel pays no login and no "
        "launcher start. Connections no kernel uses within pool_idle_lifetime are closed again. "
        "Off in a hub's servers (no local kernelspecs; discovery logs in when the credential comes).",
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
        """In this thread: which logins the kernels will need, then each started in the SSH loop."""
        ahead: dict[tuple, Ahead] = {}
        for name, provisioner_name, settings in self._kernel_settings(config):
            home = PROVISIONERS[provisioner_name]
            try:
                module, _, cls_name = home.partition(":")
                cls = getattr(importlib.import_module(module), cls_name)
                instance = cls(kernel_id=f"connect-ahead-{name}", config=config, **settings)
                target = instance.ssh_target()
            except Exception as exc:  # noqa: BLE001 - the kernel's own start will say what is wrong
                self.log.info("jupyter_hpc: kernelspec %s not connected ahead: %s", name, exc)
                continue
            entry = ahead.setdefault(target.pool_key(), Ahead(name, target, instance.pool_idle_lifetime))
            if provisioner_name == "hpc-ssh" and instance.launcher_standby > 0:
                # Its launcher runs on this login node: have one loaded there too.
                entry.launchers.setdefault(instance.remote_python, instance.launcher_standby)
        if not ahead:
            return []
        from ..ssh import ssh_loop

        futures = []
        for entry in ahead.values():
            future = asyncio.run_coroutine_threadsafe(entry.open(), ssh_loop())
            future.add_done_callback(lambda done, entry=entry: self._report(done, entry))
            futures.append(future)
        return futures

    def _kernel_settings(self, config: Any) -> list[tuple[str, str, dict]]:
        """(kernelspec or site:target, provisioner name, its settings) for every kernel this
        server may start on a cluster: installed kernelspecs and the configured sites' targets."""
        from jupyter_client.kernelspec import KernelSpecManager

        found = []
        try:
            specs = KernelSpecManager(config=config).get_all_specs()
        except Exception as exc:  # noqa: BLE001 - never in the server's way
            self.log.info("jupyter_hpc: installed kernelspecs unreadable, none connected ahead: %s", exc)
            specs = {}
        for name, model in specs.items():
            provisioner = ((model.get("spec") or {}).get("metadata") or {}).get("kernel_provisioner") or {}
            if provisioner.get("provisioner_name") in PROVISIONERS:
                found.append((name, provisioner["provisioner_name"], dict(provisioner.get("config") or {})))
        try:
            from ..sites import HPCSites

            sites = HPCSites(config=config).all()
        except Exception as exc:  # noqa: BLE001 - a bad site is the sites' own error to report
            self.log.info("jupyter_hpc: sites not connected ahead: %s", exc)
            sites = []
        for site in sites:
            for target_name, target in site.targets.items():
                if target.provisioner in PROVISIONERS:
                    found.append((f"{site.name}:{target_name}", target.provisioner, site.provisioner_config(target_name)))
        return found

    def _report(self, done: concurrent.futures.Future, entry: "Ahead") -> None:
        if done.cancelled():
            return
        exc = done.exception()
        if exc is not None:
            self.log.info("jupyter_hpc: could not connect ahead to %s for %s: %s", entry.target.host, entry.name, exc)
        else:
            self.log.info("jupyter_hpc: connected ahead to %s for %s", entry.target.host, entry.name)


@dataclasses.dataclass
class Ahead:
    """One login to open ahead, and the launchers to have waiting on it (remote python -> seconds)."""

    name: str
    target: Any
    unused_lifetime: float
    launchers: dict[str, float] = dataclasses.field(default_factory=dict)

    async def open(self) -> None:
        """In the SSH loop."""
        from ..launcher import standby, start_launcher
        from ..ssh import get_pool

        connection = await get_pool().connect_ahead(self.target, self.unused_lifetime)
        for remote_python, seconds in self.launchers.items():
            standby.prepare(connection, remote_python, seconds, start_launcher, delay=0)
