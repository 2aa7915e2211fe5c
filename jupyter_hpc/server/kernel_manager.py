"""A jupyter_server kernel manager whose remote kernels survive a server restart.

Select it in ``jupyter_server_config.py``::

    c.ServerApp.kernel_manager_class = "jupyter_hpc.server.HPCMappingKernelManager"

For every kernel run by one of our provisioners (``hpc-ssh``, ``hpc-slurm``) it keeps the
provisioner's ids in a record file (:mod:`jupyter_hpc.server.records`): written after each
launch (start, restart, automatic restart), removed when the kernel is shut down, culled or
found dead. A server that is killed cannot shut its kernels down; they outlive it for their
``lease``. When the next server starts, it lists each recorded kernel at once (execution state
``starting``) and takes it back in the background (``reattach_policy = "reattach"``: same kernel
id, the kernel's state intact, reachable over websockets once attached) or shuts it down
(``"reap"``: the remote kernel, and its SLURM job, end); the server is ready meanwhile. A kernel
that cannot be taken back (ended, host unreachable, kernelspec removed) is dropped from the
record with a warning naming it.

A SLURM kernel is recorded the moment sbatch answers, before its queue wait: a server that dies
while the job waits leaves it in the record, and the next one attaches when the job runs
(``reattach_queued = "attach"``) or cancels it (``"cancel"``). Kernel starts do not hold their
request for the queue wait (``use_pending_kernels`` is on): ``POST /api/sessions`` answers at
once, the kernel is listed as ``starting`` with its place in the queue in
``/jupyter-hpc/api/slurm/kernels``, and the notebook's websocket connects once the job runs.

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
from .idle import IdleWatch
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

    def job_submitted(self) -> None:
        """Called by the SLURM provisioner, in this manager's loop, the moment sbatch answers:
        the mapping records the queued job before the queue wait begins."""
        remember = getattr(self.parent, "remember_queued", None)
        if remember is not None:
            remember(self)


class _DefaultKernelName(Unicode):  # type: ignore[type-arg]
    """``default_kernel_name``: the configured value, else worked out at each read by the
    manager's :meth:`HPCMappingKernelManager.site_default_kernel` (what the sites list changes
    with discovery, so no value is kept). A subclass, so traitlets never stores a static default."""

    def get(self, obj: Any, cls: Any = None) -> Any:
        if obj is not None and self.name not in obj._trait_values:
            return obj.site_default_kernel()
        return super().get(obj, cls)


class HPCMappingKernelManager(AsyncMappingKernelManager):
    """``AsyncMappingKernelManager`` that records its remote kernels and takes them back after a restart."""

    default_kernel_name = _DefaultKernelName(
        config=True,
        help="The kernelspec a notebook gets when none is named (JupyterLab's default, the "
        "'default' of /api/kernelspecs). Default: 'python3' where such a kernelspec is listed, "
        "else a site's (RemoteKernelSpecManager.site_default_kernel: the first site's own "
        "python3 on its first target, else its first kernelspec), else 'python3'.",
    )

    def site_default_kernel(self) -> str:
        """``default_kernel_name`` while none is configured (see its help)."""
        specs = self.kernel_spec_manager
        try:
            if "python3" in specs.find_kernel_specs():
                return "python3"
        except Exception:  # noqa: BLE001 - a broken local spec dir: the site's rule still answers
            pass
        site_default = getattr(specs, "site_default_kernel", None)
        return (site_default() if site_default is not None else None) or "python3"

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

    reattach_queued = CaselessStrEnum(
        ["attach", "cancel"], default_value="attach", config=True,
        help="What a starting server does with a SLURM job a previous server submitted and left "
        "waiting in the queue (killed, crashed). 'attach': list its kernel at once (starting) "
        "and attach when the job runs, under the same kernel id. 'cancel': scancel the job. "
        "(reattach_policy = 'reap' cancels it too.)",
    )
    failed_start_ttl = Float(
        300.0, config=True,
        help="Seconds a kernel whose start failed (its job cancelled, refused, ended in the "
        "queue) stays listed, dead with the reason, so that a page opened meanwhile can say "
        "why; then it is removed.",
    )

    @default("use_pending_kernels")
    def _default_use_pending_kernels(self) -> bool:
        """On: a kernel start (POST /api/kernels, /api/sessions) answers at once and the kernel is
        listed as 'starting' while its SLURM job waits in the queue, however long; its
        websocket connects once it runs."""
        return True

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
        self.idle = IdleWatch(self)  # per-target idle_timeout, with a warning ahead
        if not self.records.acquire():
            self.log.warning(
                "Another running server holds the kernel record %s: this server neither reattaches "
                "its kernels nor records its own. Set HPCMappingKernelManager.record_file to give "
                "it one of its own.", self.record_file,
            )
            return
        # jupyter_server builds its kernel manager before its loop runs (init_configurables):
        # list the recorded kernels now (starting), so that the first request already sees them
        # and sessions keep their kernels, and take them back in the background: the server is
        # ready at once, however many kernels or slow sites there are.
        self.restored = IOLoop.current().asyncio_loop.create_task(self.restore_kernels())

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
        waiting = getattr(self.kernel_spec_manager, "wait_for_kernelspec", None)
        if waiting is not None:  # a discovered kernelspec: await its site's list, never block on it
            await waiting(name)
        notice = None
        if path is not None and (kernel_id is None or kernel_id not in self):
            notice = await self._remote_cwd(path, kwargs, name)
        self._starting_notice = notice  # read synchronously by pre_start_kernel below
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

    async def _remote_cwd(self, path: str, kwargs: dict[str, Any], kernel_name: str = "") -> str | None:
        """With the cluster's files in the browser (SFTPContentsManager), a notebook's kernel
        starts in the notebook's folder on the cluster: jupyter_server's ``cwd`` is a path on
        the server host, so the remote one travels beside it as ``remote_cwd`` to our
        provisioners' ``pre_launch``. With several sites (ClusterContentsManager), only a
        kernel of the folder's own site does; one of another site starts in its home there,
        and says so first (``hpc_notice``, shown by :mod:`jupyter_hpc.server.notice`)."""
        contents = getattr(self.parent, "contents_manager", None)
        remote_directory = getattr(contents, "remote_directory", None)
        if remote_directory is None:
            return None
        site = self.kernel_site(kernel_name)
        elsewhere = getattr(contents, "folder_elsewhere", None)
        files_site = getattr(contents, "site", None)  # SFTPContentsManager's one site, if named
        if elsewhere is None and site and isinstance(files_site, str) and files_site and files_site != site:
            return None  # the browser shows another site's files: the kernel starts in its home
        try:
            if elsewhere is not None and site:
                kwargs["remote_cwd"] = await remote_directory(path, site=site)
                return elsewhere(path, site)
            kwargs["remote_cwd"] = await remote_directory(path)
        except Exception as exc:  # the kernel still starts, in the home
            self.log.warning("No remote folder for %s (%s): the kernel starts in the home", path, exc)
        return None

    def kernel_site(self, kernel_name: str) -> str | None:
        """The site a discovered kernelspec's kernels run on (its metadata.jupyter_hpc.site)."""
        try:
            spec = self.kernel_spec_manager.get_kernel_spec(kernel_name)
        except Exception:
            return None
        return ((getattr(spec, "metadata", None) or {}).get("jupyter_hpc") or {}).get("site")

    def pre_start_kernel(self, kernel_name: str | None, kwargs: Any) -> tuple[Any, str, str]:
        """``MultiKernelManager.pre_start_kernel``, then (SLURM kernels) note the new manager
        in ``starting_kernels``; reached synchronously from ``start_kernel`` above."""
        km, kernel_name, kernel_id = super().pre_start_kernel(kernel_name, kwargs)
        km.hpc_notice, self._starting_notice = getattr(self, "_starting_notice", None), None
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
        self.records.put(km.kernel_id, km.kernel_name, info, path=getattr(km, "hpc_session_path", ""))

    def remember_queued(self, km: Any) -> None:
        """Record ``km``'s SLURM job while it waits in the queue (synchronous: reached from the
        provisioner right after sbatch answered): a server killed now leaves it findable."""
        info = km.provisioner.queued_job_info() if self._ours(km) else None
        if not (self.records.owned and info and km.kernel_id):
            return
        self.records.put(km.kernel_id, km.kernel_name, info, path=getattr(km, "hpc_session_path", ""))
        self.log.info("Kernel %s: job %s recorded while queued", km.kernel_id, info["queued_job"]["job_id"])

    def remove_kernel(self, kernel_id: str) -> Any:
        """Every way out of the mapping (shutdown, cull, a dead kernel) forgets the record too."""
        km = super().remove_kernel(kernel_id)
        self.records.drop(kernel_id)
        self.idle.forget(kernel_id)
        return km

    # -- starts that wait in the queue (pending kernels) -----------------------------------

    async def _add_kernel_when_ready(self, kernel_id: str, km: Any, kernel_awaitable: Any) -> None:
        """jupyter_client's background start; a start that fails (job cancelled or refused)
        leaves the kernel listed as dead with the reason for ``failed_start_ttl``, its record
        dropped, instead of a kernel 'starting' for ever."""
        try:
            await kernel_awaitable
        except BaseException as exc:
            self._start_failed(kernel_id, km, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        await super()._add_kernel_when_ready(kernel_id, km, asyncio.sleep(0))
        km.last_activity = utcnow()  # idle from now, not from the request (a queue wait is not idling)
        self.idle.watch(kernel_id, km)

    async def cull_kernel_if_idle(self, kernel_id: str) -> None:
        """jupyter_server's ``cull_idle_timeout`` (which ends our kernels and their jobs too), but
        never a kernel whose job still waits in the queue: its user is waiting, not idle."""
        km = self._kernels.get(kernel_id)
        if km is not None and not km.ready.done():
            return
        await super().cull_kernel_if_idle(kernel_id)

    def _start_failed(self, kernel_id: str, km: Any, exc: BaseException) -> None:
        reason = str(exc) or type(exc).__name__
        self.log.warning("Kernel %s (%s) did not start: %s", kernel_id, getattr(km, "kernel_name", ""), reason)
        self._pending_kernels.pop(kernel_id, None)
        km.execution_state, km.reason = "dead", reason
        if not km.ready.done():
            km.ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError(reason))
            km.ready.exception()  # retrieved: no 'never retrieved' noise
        self.records.drop(kernel_id)

        def forget() -> None:
            if self._kernels.get(kernel_id) is km:
                self.remove_kernel(kernel_id)

        # A start the user cancelled goes at once; any other failure stays to be read.
        cancelled = getattr(getattr(km, "provisioner", None), "cancel_requested", False)
        asyncio.get_running_loop().call_later(0 if cancelled else self.failed_start_ttl, forget)

    async def _async_shutdown_kernel(self, kernel_id: str, now: bool = False, restart: bool = False) -> None:
        """jupyter_server's shutdown (also reached from shutdown_all and the culler); a SLURM
        kernel still waiting in the queue has its job cancelled first (jupyter_client would
        otherwise wait for the start, i.e. the whole queue wait)."""
        km = self._kernels.get(kernel_id)
        if km is not None and not km.ready.done() and getattr(km, "shutting_down", False):
            # Already being shut down (a DELETE, then the server's own stop): wait for that one.
            # Its ready future is the shutdown's, and jupyter_client would read it unfinished.
            stopping = self._pending_kernels.get(kernel_id)
            if stopping is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(stopping), 30)
                except Exception:
                    pass
            return
        if km is not None and not km.ready.done():
            await self.cancel_start(kernel_id)
            ready = km.ready if isinstance(km.ready, asyncio.Future) else asyncio.wrap_future(km.ready)
            try:
                await asyncio.wait_for(asyncio.shield(ready), 30)
            except Exception:  # the start failed, as asked: nothing more to shut down
                pass
            if self._kernels.get(kernel_id) is not km or km.execution_state == "dead":
                if self._kernels.get(kernel_id) is km:
                    self.remove_kernel(kernel_id)
                self.records.drop(kernel_id)
                return
        await super()._async_shutdown_kernel(kernel_id, now=now, restart=restart)

    shutdown_kernel = _async_shutdown_kernel  # type: ignore[assignment]

    async def cancel_start(self, kernel_id: str) -> None:
        """End a start that is still under way: cancel its queued job (the start then fails
        saying so), or the start itself before sbatch answered."""
        km = self._kernels.get(kernel_id) or self.starting_kernels.get(kernel_id)
        provisioner = getattr(km, "provisioner", None)
        cancel_job = getattr(provisioner, "cancel_waiting_job", None)
        if cancel_job is not None and await cancel_job():
            return
        task = self._pending_kernels.get(kernel_id)
        if task is not None and not task.done():
            task.cancel()

    def __del__(self) -> None:
        records = getattr(self, "records", None)  # absent if __init__ failed early
        if records is not None:
            records.release()
        super().__del__()

    # -- taking kernels back ---------------------------------------------------------------

    async def restore_kernels(self) -> None:
        """Reattach or reap, by ``reattach_policy`` (queued jobs: ``reattach_queued``), each
        kernel the record lists; each is listed as 'starting' meanwhile. Runs in the background
        from the server's start."""
        entries = self.records.load()
        if not entries:
            return
        self.log.info(
            "%s %d remote kernel(s) left by the previous server: %s",
            "Reattaching" if self.reattach_policy == "reattach" else "Reaping",
            len(entries), ", ".join(entries),
        )
        listed = {kernel_id: self._list_restoring(kernel_id, entry) for kernel_id, entry in entries.items()}
        await asyncio.gather(*(self._restore(kernel_id, entry, listed[kernel_id])
                               for kernel_id, entry in entries.items()))

    def _list_restoring(self, kernel_id: str, entry: dict[str, Any]) -> Any:
        """A manager for the recorded kernel, listed at once as 'starting' (a session that names
        it keeps it), whose ``ready`` resolves when the kernel is taken back."""
        if self.reattach_policy == "reap" or kernel_id in self._kernels:
            return None
        kernel_name = str(entry.get("kernel_name") or "")
        km = self._new_manager(kernel_id, kernel_name)
        km.hpc_session_path = str(entry.get("path") or "")
        self._kernels[kernel_id] = km
        self._kernel_connections[kernel_id] = 0
        km.execution_state, km.reason, km.last_activity = "starting", "", utcnow()
        return km

    async def _restore(self, kernel_id: str, entry: dict[str, Any], listed: Any = None) -> None:
        kernel_name = str(entry.get("kernel_name") or "")
        info = entry["provisioner_info"]
        if info.get("queued_job"):
            await self._restore_queued(kernel_id, kernel_name, info, listed)
            return
        started = asyncio.get_running_loop().time()
        waiting = getattr(self.kernel_spec_manager, "wait_for_kernelspec", None)
        try:
            if waiting is not None:
                await waiting(kernel_name)  # a discovered kernelspec: its site's first list
            km = await asyncio.wait_for(self._attach(kernel_id, kernel_name, info, listed), self.reattach_timeout)
        except Exception as exc:  # any failure: a kernel we cannot reach is forgotten, never fatal
            self.log.warning("Remote kernel %s (%s) cannot be reattached and is dropped from the record: %s",
                             kernel_id, kernel_name, exc or type(exc).__name__)
            self._unlist(kernel_id, listed)
            return
        if km is None:
            self.log.warning("Remote kernel %s (%s) has ended (its lease ran out, or it exited) and is "
                             "dropped from the record", kernel_id, kernel_name)
            self._unlist(kernel_id, listed)
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

    def _unlist(self, kernel_id: str, listed: Any) -> None:
        """Forget a kernel that could not be taken back: its record, and its listing."""
        self.records.drop(kernel_id)
        if listed is not None and self._kernels.get(kernel_id) is listed:
            listed.execution_state, listed.reason = "dead", "it could not be reattached"
            if not listed.ready.done():
                listed.ready.set_exception(RuntimeError("the kernel could not be reattached after a server restart"))
                listed.ready.exception()
            self._kernels.pop(kernel_id, None)
            self._kernel_connections.pop(kernel_id, None)

    def _new_manager(self, kernel_id: str, kernel_name: str) -> Any:
        constructor_kwargs = {}
        if self.kernel_spec_manager:
            constructor_kwargs["kernel_spec_manager"] = self.kernel_spec_manager
        km = self.kernel_manager_factory(
            connection_file=os.path.join(self.connection_dir, f"kernel-{kernel_id}.json"),
            parent=self, log=self.log, kernel_name=kernel_name, **constructor_kwargs,
        )
        km.kernel_id = kernel_id
        return km

    def _new_provisioner(self, km: Any, kernel_id: str, kernel_name: str) -> Any:
        provisioner = KernelProvisionerFactory.instance().create_provisioner_instance(
            kernel_id, km.kernel_spec, parent=km
        )
        if not isinstance(provisioner, SSHProvisioner):
            raise ValueError(f"its kernelspec {kernel_name!r} no longer uses a jupyter_hpc provisioner")
        km.provisioner = provisioner
        return provisioner

    async def _attach(self, kernel_id: str, kernel_name: str, info: dict[str, Any], km: Any = None) -> Any:
        """A kernel manager holding the running kernel again, or None if it has ended."""
        km = km if km is not None else self._new_manager(kernel_id, kernel_name)
        provisioner = self._new_provisioner(km, kernel_id, kernel_name)
        await provisioner.load_provisioner_info(info)
        if not provisioner.has_process:
            return None  # the provisioner logged why
        self._connect(km, provisioner.connection_info)
        return km

    @staticmethod
    def _connect(km: Any, connection_info: dict[str, Any]) -> None:
        km.load_connection_info(connection_info)
        km.write_connection_file()
        km._connect_control_socket()  # as post_start_kernel does: shutdown requests go there
        km._attempted_start = True  # so that its next shutdown or restart gets a fresh ready future
        if not km.ready.done():
            km.ready.set_result(None)

    async def _restore_queued(self, kernel_id: str, kernel_name: str, info: dict[str, Any], listed: Any) -> None:
        """A SLURM job a previous server left queued: attach when it runs (listed as 'starting'
        meanwhile, with its place in the queue), or cancel it (``reattach_queued``)."""
        job_id = info["queued_job"].get("job_id")
        try:
            waiting = getattr(self.kernel_spec_manager, "wait_for_kernelspec", None)
            if waiting is not None:
                await waiting(kernel_name)
            km = listed if listed is not None else self._new_manager(kernel_id, kernel_name)
            provisioner = self._new_provisioner(km, kernel_id, kernel_name)
            await provisioner.load_provisioner_info(info)
            secrets = info.get("connection_info") or {}
            km.session.key = str(secrets.get("key", "")).encode()
            km.session.signature_scheme = secrets.get("signature_scheme", km.session.signature_scheme)
            if secrets.get("curve_publickey"):
                km.curve_publickey = secrets["curve_publickey"].encode()
                km.curve_secretkey = secrets["curve_secretkey"].encode()
        except Exception as exc:
            self.log.warning("Queued job %s of kernel %s (%s) cannot be taken over and is dropped from the "
                             "record: %s", job_id, kernel_id, kernel_name, exc or type(exc).__name__)
            self._unlist(kernel_id, listed)
            return
        if listed is None or self.reattach_queued == "cancel":
            await provisioner.cancel_queued_job()
            self._unlist(kernel_id, listed)
            self.log.info("Cancelled job %s of kernel %s (%s), queued under the previous server "
                          "(reattach_queued = %r)", job_id, kernel_id, kernel_name, self.reattach_queued)
            return
        self.log.info("Kernel %s (%s): job %s, queued under the previous server, is followed until it runs",
                      kernel_id, kernel_name, job_id)
        KERNEL_CURRENTLY_RUNNING_TOTAL.labels(type=km.kernel_name).inc()
        follow = asyncio.ensure_future(self._attach_when_running(kernel_id, km))
        self._pending_kernels[kernel_id] = follow
        self._pending_kernel_tasks[kernel_id] = asyncio.ensure_future(self._finish_kernel_start(kernel_id))
        if not self._initialized_culler:
            self.initialize_culler()

    async def _attach_when_running(self, kernel_id: str, km: Any) -> None:
        try:
            connection_info = await km.provisioner.follow_queued_job()
        except BaseException as exc:
            self._start_failed(kernel_id, km, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        self._connect(km, connection_info)
        self._pending_kernels.pop(kernel_id, None)
        km.last_activity = utcnow()
        km.start_restarter()
        await self.remember_kernel(km)
        self.idle.watch(kernel_id, km)
        self.log.info("Reattached kernel %s once its job ran", kernel_id)

    async def _register(self, kernel_id: str, km: Any) -> None:
        """Into the mapping as ``start_kernel`` would put it: listed, watched, restartable."""
        self._kernels[kernel_id] = km
        self._kernel_connections.setdefault(kernel_id, 0)
        km.execution_state = "idle"  # updated from iopub as soon as a client talks to it
        km.reason = ""
        km.last_activity = utcnow()
        KERNEL_CURRENTLY_RUNNING_TOTAL.labels(type=km.kernel_name).inc()
        await self._finish_kernel_start(kernel_id)
        km.start_restarter()
        await self.remember_kernel(km)  # its new local endpoints, if any changed
        self.idle.watch(kernel_id, km)
        if not self._initialized_culler:
            self.initialize_culler()
