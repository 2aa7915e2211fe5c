"""RemoteKernelSpecManager: the user's own cluster kernelspecs in the launcher, from memory.

``c.ServerApp.kernel_spec_manager_class = "jupyter_hpc.kernelspecs.RemoteKernelSpecManager"``

Each site is listed in the SSH loop (one exec on its pooled connection) when the manager is
made, again in the background once its list is older than ``discovery_ttl``, and on demand
(:meth:`refresh`, the REST endpoint). Every read answers from the last list: JupyterLab polls
``/api/kernelspecs`` every 61 s and none of those polls waits on SSH, not even the first one after
the server starts (it answers with what is known, possibly nothing; the JupyterLab extension
asks again once the first lists are in, :meth:`first_listing`). A kernel start of a site's
kernelspec awaits that site's first list (:meth:`wait_for_kernelspec`) instead of blocking the
event loop on it. A site that cannot be reached keeps its last good list (or none) and the log
says why.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import dataclasses
import os
import shutil
import tempfile
import threading
import time
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from jupyter_core.paths import jupyter_runtime_dir
from traitlets import Bool, Float, Unicode, default, validate

from ..errors import HPCError
from ..sites import HPCSites, configured_defaults
from ..ssh.loop import in_ssh_loop, ssh_loop
from .build import LocalSpec, local_kernelspecs, resources_digest, write_kernelspec
from .discovery import DiscoveryResult, _discover


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@dataclasses.dataclass(frozen=True)
class SiteListing:
    """What is known of one site's kernelspecs; replaced whole, never changed in place."""

    site: str
    specs: dict[str, LocalSpec] = dataclasses.field(default_factory=dict)
    resource_dirs: dict[str, str] = dataclasses.field(default_factory=dict)
    models: dict[str, dict] = dataclasses.field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    error: str | None = None
    fetched_at: float | None = None  # monotonic time of the last good list
    checked_at: float = 0.0  # monotonic time of the last attempt


class RemoteKernelSpecManager(KernelSpecManager):
    """Kernelspecs discovered on the configured sites (:class:`jupyter_hpc.sites.HPCSites`)."""

    include_local = Bool(
        True, config=True,
        help="Also list this machine's own kernelspecs (a laptop). The hub's servers set it "
        "False: no user code runs on the hub's host.",
    )
    discovery_ttl = Float(
        300.0, config=True,
        help="Seconds a site's list is served before a read starts a background refresh. "
        "A site that failed is tried again after min(discovery_ttl, 30) seconds.",
    )
    first_list_timeout = Float(
        0.0, config=True,
        help="Seconds the first /api/kernelspecs after the server starts may wait for the sites' "
        "first discovery. 0 (the default): it answers at once with what is known; the "
        "JupyterLab extension refreshes the launcher when the first lists are in.",
    )
    discovery_timeout = Float(
        30.0, config=True, help="Seconds one site's discovery (login included) may take before it fails.",
    )
    wait_for_credential = Bool(
        False, config=True,
        help="Start the first discovery only when an SSH credential is handed over "
        "(credential_changed), not when the manager is made. A hub's servers set it: their "
        "credential arrives from the hub after the manager exists, and a login tried without "
        "it would only fail.",
    )
    resource_cache_dir = Unicode(
        config=True,
        help="Local directory (made 0700) where remote logos are mirrored for the launcher. "
        "Default: a private directory under the Jupyter runtime dir, removed at exit.",
    )

    @default("resource_cache_dir")
    def _default_cache(self) -> str:
        runtime = jupyter_runtime_dir()
        os.makedirs(runtime, mode=0o700, exist_ok=True)
        path = tempfile.mkdtemp(prefix="jupyter-hpc-kernelspecs-", dir=runtime)
        atexit.register(shutil.rmtree, path, True)
        return path

    @validate("discovery_ttl", "first_list_timeout", "discovery_timeout")
    def _valid_seconds(self, proposal: dict) -> float:
        value = float(proposal["value"])
        if not 0 <= value < 1e9:
            raise ValueError(f"{proposal['trait'].name} must be a number of seconds >= 0, not {proposal['value']!r}")
        return value

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sites = HPCSites(parent=self.parent or self, config=self.config)
        self._sites = {site.name: site for site in self.sites.all()}
        self._listings: dict[str, SiteListing] = {name: SiteListing(name) for name in self._sites}
        self._running: dict[str, concurrent.futures.Future] = {}
        self._lock = threading.Lock()
        os.makedirs(self.resource_cache_dir, mode=0o700, exist_ok=True)
        os.chmod(self.resource_cache_dir, 0o700)
        self._first: list[concurrent.futures.Future] = []
        self._first_waited = False
        if self.wait_for_credential:
            self._listings = {
                name: SiteListing(name, error="no SSH credential yet (log in to the hub again)", checked_at=time.monotonic())
                for name in self._sites
            }
        else:
            self._first = [self._start(name) for name in self._sites]

    # -- discovery, in the SSH loop ------------------------------------------------------

    def _start(self, name: str, force: bool = False) -> concurrent.futures.Future:
        """The running discovery of site ``name``, or a new one (always new with ``force``,
        after the one running: it may have listed before the change being asked about)."""
        with self._lock:
            running = self._running.get(name)
            if running is not None and not running.done() and not force:
                return running
            future = asyncio.run_coroutine_threadsafe(self._refresh_site(name, running), ssh_loop())
            self._running[name] = future
            return future

    async def _refresh_site(self, name: str, before: concurrent.futures.Future | None) -> DiscoveryResult | Exception:
        if before is not None and not before.done():
            await asyncio.wrap_future(before)
        site = self._sites[name]
        old = self._listings[name]
        try:
            result = await asyncio.wait_for(_discover(site, self.discovery_timeout), self.discovery_timeout + 5)
            defaults = {target.provisioner: configured_defaults(self.config, target.provisioner)
                        for target in site.targets.values()}
            specs = local_kernelspecs(site, result, defaults)
            dirs = await asyncio.get_running_loop().run_in_executor(None, self._mirror, specs)
        except (HPCError, OSError, asyncio.TimeoutError, Exception) as exc:  # never fails the list
            reason = str(exc) or type(exc).__name__
            kept = f"keeping its last good list ({len(old.specs)} kernelspecs)" if old.fetched_at else "no kernelspecs from it yet"
            self.log.warning("Cannot list the kernelspecs of site %s: %s (%s)", name, reason, kept)
            self._listings[name] = dataclasses.replace(old, error=reason, checked_at=time.monotonic())
            return exc
        for warning in result.warnings:
            if warning not in old.warnings:
                self.log.warning("Site %s: %s", name, warning)
        now = time.monotonic()
        self._listings[name] = SiteListing(
            site=name, specs={s.name: s for s in specs}, resource_dirs=dirs,
            models={s.name: self._model(s, dirs[s.name]) for s in specs},
            warnings=tuple(result.warnings), error=None, fetched_at=now, checked_at=now,
        )
        self.log.info("Site %s: %d kernelspecs (%d remote) listed in %.2f s", name, len(specs), len(result.specs), result.elapsed)
        return result

    def _mirror(self, specs: list[LocalSpec]) -> dict[str, str]:
        """Write each spec's logos under the cache, content-addressed: a directory, once
        written, never changes under a reader. Names are ours and checked to stay inside."""
        root = os.path.realpath(self.resource_cache_dir)
        dirs = {}
        for spec in specs:
            directory = os.path.join(root, spec.name, resources_digest(spec))
            if os.path.dirname(os.path.dirname(directory)) != root:
                raise ValueError(f"kernelspec name {spec.name!r} would leave the cache")
            if not os.path.isdir(directory):
                os.makedirs(os.path.dirname(directory), mode=0o700, exist_ok=True)
                work = tempfile.mkdtemp(dir=os.path.dirname(directory))
                write_kernelspec(work, spec)
                try:
                    os.rename(work, directory)
                except OSError:  # another refresh got there first
                    shutil.rmtree(work, ignore_errors=True)
            dirs[spec.name] = directory
        return dirs

    def _model(self, spec: LocalSpec, resource_dir: str) -> dict:
        """The REST model, ready: the handler then globs nothing per spec per poll."""
        base_url = getattr(self.parent, "base_url", "/") or "/"
        resources = {
            os.path.splitext(name)[0]: f"{base_url.rstrip('/')}/kernelspecs/{spec.name}/{name}"
            for name in sorted(spec.resources)
        }
        return {"name": spec.name, "spec": spec.kernel, "resources": resources}

    # -- reading, from memory ------------------------------------------------------------

    def listing(self, site: str) -> SiteListing:
        return self._listings[site]

    def _refresh_stale(self) -> None:
        now = time.monotonic()
        for name, listing in list(self._listings.items()):
            age = self.discovery_ttl if listing.error is None else min(self.discovery_ttl, 30.0)
            if now - listing.checked_at >= age and not (self._running.get(name) and not self._running[name].done()):
                self._start(name)

    async def _wait_first(self) -> None:
        if self._first_waited:
            return
        pending = [f for f in self._first if not f.done()]
        if pending and self.first_list_timeout > 0:
            await asyncio.wait([asyncio.wrap_future(f) for f in pending], timeout=self.first_list_timeout)
        self._first_waited = True

    async def first_listing(self, timeout: float) -> bool:
        """Await every site's first discovery, at most ``timeout`` seconds (the JupyterLab
        extension asks, then refreshes the launcher); True when none is still running."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # A hub's server lists nothing until its credential arrives (wait_for_credential).
        while not self._first and self._sites and loop.time() < deadline:
            await asyncio.sleep(0.2)
        pending = [f for f in self._first if not f.done()]
        if pending:
            await asyncio.wait([asyncio.wrap_future(f) for f in pending], timeout=max(0.0, deadline - loop.time()))
        return bool(self._first or not self._sites) and all(f.done() for f in self._first)

    async def wait_for_kernelspec(self, kernel_name: str, timeout: float | None = None) -> None:
        """Await the first discovery of the site a kernelspec name belongs to (``<site>-…``)
        while the name is not known yet; at most ``timeout`` (default ``discovery_timeout``)
        seconds. Returns at once for a known name, a local spec, or a site already listed."""
        name = kernel_name.lower()
        if self._remote(name) is not None:
            return
        pending = [future for site, future in zip(self._sites, self._first)
                   if name.startswith(site.lower() + "-") and not future.done()]
        if pending:
            await asyncio.wait([asyncio.wrap_future(f) for f in pending],
                               timeout=self.discovery_timeout + 5 if timeout is None else timeout)

    def _remote(self, name: str) -> tuple[LocalSpec, str] | None:
        for listing in list(self._listings.values()):
            spec = listing.specs.get(name)
            if spec is not None:
                return spec, listing.resource_dirs[name]
        return None

    async def get_all_specs(self) -> dict[str, Any]:  # type: ignore[override]
        """Awaited by jupyter_server's /api/kernelspecs: local specs (if included) and every
        site's last list; waits only for the very first discovery, and then boundedly."""
        await self._wait_first()
        self._refresh_stale()
        specs: dict[str, Any] = self._local_specs() if self.include_local else {}
        for listing in list(self._listings.values()):
            specs.update(listing.models)
        return specs

    def _local_specs(self) -> dict[str, Any]:
        found = {}
        for name, resource_dir in KernelSpecManager.find_kernel_specs(self).items():
            try:
                spec = KernelSpecManager.get_kernel_spec(self, name)
            except NoSuchKernel:
                continue
            except Exception:
                self.log.warning("Error loading kernelspec %r", name, exc_info=True)
                continue
            found[name] = {"resource_dir": resource_dir, "spec": spec.to_dict()}
        return found

    def find_kernel_specs(self) -> dict[str, str]:
        found = KernelSpecManager.find_kernel_specs(self) if self.include_local else {}
        for listing in list(self._listings.values()):
            found.update(listing.resource_dirs)
        return found

    def get_kernel_spec(self, kernel_name: str) -> Any:
        """Synchronous, as jupyter_client's ``KernelManager.kernel_spec`` calls it; from memory.

        Never waits in a thread that runs an event loop (the server's: it awaits
        :meth:`wait_for_kernelspec` first). A blocking caller (a script) asking for a name of a
        site whose first discovery still runs waits for it, at most ``discovery_timeout``."""
        name = kernel_name.lower()
        found = self._remote(name)
        if found is None and not in_ssh_loop() and not _loop_running():
            for site, future in zip(self._sites, self._first):
                if name.startswith(site + "-") and not future.done():
                    try:
                        future.result(self.discovery_timeout + 5)
                    except Exception:
                        pass
            found = self._remote(name)
        if found is not None:
            spec, resource_dir = found
            return self.kernel_spec_class(resource_dir=resource_dir, **spec.kernel)
        if self.include_local:
            return super().get_kernel_spec(kernel_name)
        raise NoSuchKernel(kernel_name)

    def site_default_kernel(self) -> str | None:
        """The kernelspec to offer by default where no ``python3`` is listed (a hub's server
        lists only its sites' kernels, each named ``<site>-<target>-<name>``): of the first
        configured site that has listed, on its first target, the cluster's own ``python3``
        if it has one, else the first spec listed; None while no site has listed any."""
        for name in self._sites:
            listing = self._listings.get(name)
            specs = list(listing.specs.values()) if listing is not None else []
            if specs:
                on_target = [spec for spec in specs if spec.target == specs[0].target]
                python3 = [spec for spec in on_target if spec.remote.name == "python3"]
                return (python3 or on_target)[0].name
        return None

    def credential_changed(self) -> None:
        """A new SSH credential is held (a hub server got it after the manager was made, or
        the user logged in again): list again, now, each site whose last attempt failed.
        If a site never listed, its new discovery counts as the first one, so a launcher
        opened now waits for it rather than showing no cluster kernels."""
        failed = [name for name, listing in self._listings.items() if listing.error is not None or listing.fetched_at is None]
        if not failed:
            return
        retried = [self._start(name, force=True) for name in failed]
        if all(listing.fetched_at is None for listing in self._listings.values()):
            self._first = retried
            self._first_waited = False

    async def refresh(self, site: str | None = None) -> dict[str, DiscoveryResult | Exception]:
        """List ``site`` (or every site) again now; returns each site's result or error."""
        names = [self.sites.site(site).name] if site else list(self._sites)
        futures = {name: self._start(name, force=True) for name in names}
        return {name: await asyncio.wrap_future(future) for name, future in futures.items()}
