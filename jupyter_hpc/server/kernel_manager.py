"""A jupyter_server kernel manager whose remote kernels survive a server restart.

Select it in ``jupyter_server_config.py``::

    c.ServerApp.kernel_manager_class = "jupyter_hpc.server.HPCMappingKernelManager"

For every kernel run by one of our provisioners (``hpc-ssh``, ``hpc-slurm``) it keeps the
provisioner's ids in a record file (:mod:`jupyter_hpc.server.records`): written after each
launch (start, restart, automatic restart), removed when the kernel is shut down, culled or
found dead. A server that is killed cannot shut its kernels down; they outlive it for their
``lease``. When the next server starts, before it serves its first request, it takes each
recorded kernel back (``reattach_policy = "reattach"``: same kernel id, the kernel's state
intact, listed by ``GET /api/kernels``, reachable over websockets) or shuts it down (``"reap"``:
the remote kernel, and its SLURM job, end). A kernel that cannot be taken back (ended, host
unreachable, kernelspec removed) is dropped from the record with a warning naming it.

A clean stop (SIGTERM, ``jupyter server stop``) shuts kernels down as jupyter_server always
does, so the record only ever lists kernels a dead server left behind.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from jupyter_client.provisioning import KernelProvisionerFactory
from jupyter_core.paths import jupyter_runtime_dir
from jupyter_server._tz import utcnow
from jupyter_server.prometheus.metrics import KERNEL_CURRENTLY_RUNNING_TOTAL
from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager, ServerKernelManager
from tornado.ioloop import IOLoop
from traitlets import CaselessStrEnum, Float, Unicode, default, validate

from ..provisioners.ssh_provisioner import SSHProvisioner
from .records import KernelRecords
from .resources import PendingResources
from .slurm_status import session_path


class HPCServerKernelManager(ServerKernelManager):
    """jupyter_server's per-kernel manager, telling its mapping after each launch.

    ``_async_post_start_kernel`` is reached from ``start_kernel`` and from every restart
    (``restart_kernel``, manual or by the auto-restarter), so the record follows the kernel's
    new process. Calls ``super()`` first.
    """

    async def _async_post_start_kernel(self, **kw: Any) -> None:
        await super()._async_post_start_kernel(**kw)
        remember = getattr(self.parent, "remember_kernel", None)
        if remember is not None:
            await remember(self)


class HPCMappingKernelManager(AsyncMappingKernelManager):
    """``AsyncMappingKernelManager`` that records its remote kernels and takes them back after a restart."""

    reattach_policy = CaselessStrEnum(
        ["reattach", "reap"], default_value="reattach", config=True,
        help="What a starting server does with the remote kernels a previous server left running "
        "(killed, crashed, its host rebooted) while their lease lasts. 'reattach': take them over "
        "with the same kernel id and their state intact. 'reap': shut them down, ending their "
        "remote processes and SLURM jobs.",
    )
    record_file = Unicode(
        config=True,
        help="The file listing this server's running remote kernels (mode 0600: it holds their "
        "signing keys). Default: jupyter-hpc-kernels.json in the Jupyter runtime directory, e.g. "
        "~/.local/share/jupyter/runtime/jupyter-hpc-kernels.json. Servers that should not share "
        "kernels need different files; a second server on a file in use records nothing.",
    )
    reattach_timeout = Float(
        120.0, config=True,
        help="Seconds allowed to take back one recorded kernel (connect, attach, forward) at server "
        "start before it is given up and dropped from the record. Kernels are taken back "
        "concurrently, and the server answers requests once all are done.",
    )

    @default("kernel_manager_class")
    def _default_kernel_manager_class(self) -> str:
        return "jupyter_hpc.server.kernel_manager.HPCServerKernelManager"

    @default("record_file")
    def _default_record_file(self) -> str:
        return os.path.join(jupyter_runtime_dir(), "jupyter-hpc-kernels.json")

    @validate("record_file")
    def _valid_record_file(self, proposal: dict) -> str:
        path = os.path.abspath(os.path.expanduser(proposal["value"]))
        if os.path.isdir(path):
            raise ValueError(f"record_file must be a file, not the directory {path}")
        return path

    @validate("reattach_timeout")
    def _valid_reattach_timeout(self, proposal: dict) -> float:
        value = float(proposal["value"])
        if value <= 0:
            raise ValueError("reattach_timeout must be positive")
        return value

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pending_resources = PendingResources()  # the resource dialog's choices (server.resources)
        self.starting_kernels: dict[str, Any] = {}  # SLURM kernels between start request and ready
        self.records = KernelRecords(self.record_file)
        self.restored: asyncio.Future | None = None
        if not self.records.acquire():
            self.log.warning(
                "Another running server holds the kernel record %s: this server neither reattaches "
                "its kernels nor records its own. Set HPCMappingKernelManager.record_file to give "
                "it one of its own.", self.record_file,
            )
            return
        # jupyter_server builds its kernel manager before its loop runs (init_configurables):
        # take the kernels back now, so that the first request already sees them. Where the loop
        # already runs (an embedding application), as a task instead.
        loop = IOLoop.current().asyncio_loop
        if loop.is_running():
            self.restored = asyncio.ensure_future(self.restore_kernels())
        else:
            loop.run_until_complete(self.restore_kernels())

    # -- starting, with the resources chosen for this start ---------------------------------

    def is_slurm_kernelspec(self, kernel_name: str) -> bool:
        """Whether the kernelspec runs its kernels in SLURM jobs (the hpc-slurm provisioner)."""
        try:
            spec = self.kernel_spec_manager.get_kernel_spec(kernel_name)
        except Exception:  # unknown or broken: jupyter_server's own start reports it
            return False
        provisioner = (getattr(spec, "metadata", None) or {}).get("kernel_provisioner") or {}
        return provisioner.get("provisioner_name") == "hpc-slurm"

    async def start_kernel(self, *, kernel_name: str | None = None, path: str | None = None,
                           kernel_id: str | None = None, **kwargs: Any) -> str:
        """jupyter_server's start; for a SLURM kernelspec, takes the resources the front end
        chose for this kernelspec and session (``pending_resources``) and hands them to this
        kernel's provisioner only (its ``pre_launch`` takes ``slurm_resources``). Meanwhile the
        kernel is listed in ``starting_kernels``, so its place in the queue can be shown."""
        name = kernel_name or self.default_kernel_name
        if path is not None and (kernel_id is None or kernel_id not in self):
            await self._remote_cwd(path, kwargs)
        if (kernel_id is not None and kernel_id in self) or not self.is_slurm_kernelspec(name):
            return await super().start_kernel(kernel_name=kernel_name, path=path, kernel_id=kernel_id, **kwargs)
        session = session_path(kwargs, self.root_dir)
        resources = self.pending_resources.take(name, path, session)
        if resources:
            kwargs["slurm_resources"] = resources
        kernel_id = kernel_id or self.new_kernel_id()
        self._starting_info = (session or (path or ""), resources or {})
        try:
            return await super().start_kernel(kernel_name=kernel_name, path=path, kernel_id=kernel_id, **kwargs)
        finally:
            self.starting_kernels.pop(kernel_id, None)

    async def _remote_cwd(self, path: str, kwargs: dict[str, Any]) -> None:
        """With the cluster's files in the browser (SFTPContentsManager), a notebook's kernel
        starts in the notebook's folder on the cluster: jupyter_server's ``cwd`` is a path on
        the server host, so the remote one travels beside it as ``remote_cwd`` to our
        provisioners' ``pre_launch``."""
        contents = getattr(self.parent, "contents_manager", None)
        remote_directory = getattr(contents, "remote_directory", None)
        if remote_directory is not None:
            try:
                kwargs["remote_cwd"] = await remote_directory(path)
            except Exception as exc:  # the kernel still starts, in the home
                self.log.warning("No remote folder for %s (%s): the kernel starts in the home", path, exc)

    def pre_start_kernel(self, kernel_name: str | None, kwargs: Any) -> tuple[Any, str, str]:
        """``MultiKernelManager.pre_start_kernel``, then (SLURM kernels) note the new manager
        in ``starting_kernels``; reached synchronously from ``start_kernel`` above."""
        km, kernel_name, kernel_id = super().pre_start_kernel(kernel_name, kwargs)
        info, self._starting_info = getattr(self, "_starting_info", None), None
        if info is not None:
            km.hpc_session_path, km.hpc_resources = info
            self.starting_kernels[kernel_id] = km
        return km, kernel_name, kernel_id

    # -- recording -------------------------------------------------------------------------

    @staticmethod
    def _ours(km: Any) -> bool:
        return isinstance(getattr(km, "provisioner", None), SSHProvisioner)

    async def remember_kernel(self, km: Any) -> None:
        """Record ``km``'s provisioner ids; reached after each launch of one of our kernels."""
        if not (self.records.owned and self._ours(km) and km.has_kernel and km.kernel_id):
            return
        info = await km.provisioner.get_provisioner_info()
        self.records.put(km.kernel_id, km.kernel_name, info)

    def remove_kernel(self, kernel_id: str) -> Any:
        """Every way out of the mapping (shutdown, cull, a dead kernel) forgets the record too."""
        km = super().remove_kernel(kernel_id)
        self.records.drop(kernel_id)
        return km

    def __del__(self) -> None:
        records = getattr(self, "records", None)  # absent if __init__ failed early
        if records is not None:
            records.release()
        super().__del__()

    # -- taking kernels back ---------------------------------------------------------------

    async def restore_kernels(self) -> None:
        """Reattach or reap, by ``reattach_policy``, each kernel the record lists."""
        entries = self.records.load()
        if not entries:
            return
        self.log.info(
            "%s %d remote kernel(s) left by the previous server: %s",
            "Reattaching" if self.reattach_policy == "reattach" else "Reaping",
            len(entries), ", ".join(entries),
        )
        await asyncio.gather(*(self._restore(kernel_id, entry) for kernel_id, entry in entries.items()))

    async def _restore(self, kernel_id: str, entry: dict[str, Any]) -> None:
        kernel_name = str(entry.get("kernel_name") or "")
        started = asyncio.get_running_loop().time()
        try:
            km = await asyncio.wait_for(self._attach(kernel_id, kernel_name, entry["provisioner_info"]),
                                        self.reattach_timeout)
        except Exception as exc:  # any failure: a kernel we cannot reach is forgotten, never fatal
            self.log.warning("Remote kernel %s (%s) cannot be reattached and is dropped from the record: %s",
                             kernel_id, kernel_name, exc or type(exc).__name__)
            self.records.drop(kernel_id)
            return
        if km is None:
            self.log.warning("Remote kernel %s (%s) has ended (its lease ran out, or it exited) and is "
                             "dropped from the record", kernel_id, kernel_name)
            self.records.drop(kernel_id)
            return
        elapsed = asyncio.get_running_loop().time() - started
        if self.reattach_policy == "reap":
            try:
                await km.shutdown_kernel(now=False)
            finally:
                self.records.drop(kernel_id)
            self.log.info("Reaped remote kernel %s (%s) in %.1f s", kernel_id, kernel_name, elapsed)
            return
        await self._register(kernel_id, km)
        self.log.info("Reattached remote kernel %s (%s) in %.1f s", kernel_id, kernel_name, elapsed)

    async def _attach(self, kernel_id: str, kernel_name: str, info: dict[str, Any]) -> Any:
        """A kernel manager holding the running kernel again, or None if it has ended."""
        constructor_kwargs = {}
        if self.kernel_spec_manager:
            constructor_kwargs["kernel_spec_manager"] = self.kernel_spec_manager
        km = self.kernel_manager_factory(
            connection_file=os.path.join(self.connection_dir, f"kernel-{kernel_id}.json"),
            parent=self, log=self.log, kernel_name=kernel_name, **constructor_kwargs,
        )
        km.kernel_id = kernel_id
        provisioner = KernelProvisionerFactory.instance().create_provisioner_instance(
            kernel_id, km.kernel_spec, parent=km
        )
        if not isinstance(provisioner, SSHProvisioner):
            raise ValueError(f"its kernelspec {kernel_name!r} no longer uses a jupyter_hpc provisioner")
        km.provisioner = provisioner
        await provisioner.load_provisioner_info(info)
        if not provisioner.has_process:
            return None  # the provisioner logged why
        km.load_connection_info(provisioner.connection_info)
        km.write_connection_file()
        km._connect_control_socket()  # as post_start_kernel does: shutdown requests go there
        km._attempted_start = True  # so that its next shutdown or restart gets a fresh ready future
        if not km.ready.done():
            km.ready.set_result(None)
        return km

    async def _register(self, kernel_id: str, km: Any) -> None:
        """Into the mapping as ``start_kernel`` would put it: listed, watched, restartable."""
        self._kernels[kernel_id] = km
        self._kernel_connections[kernel_id] = 0
        km.execution_state = "idle"  # updated from iopub as soon as a client talks to it
        km.reason = ""
        km.last_activity = utcnow()
        KERNEL_CURRENTLY_RUNNING_TOTAL.labels(type=km.kernel_name).inc()
        await self._finish_kernel_start(kernel_id)
        km.start_restarter()
        await self.remember_kernel(km)  # its new local endpoints, if any changed
        if not self._initialized_culler:
            self.initialize_culler()
