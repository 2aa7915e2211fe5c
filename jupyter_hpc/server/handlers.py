"""REST handlers the JupyterLab extension needs for SLURM kernels, under ``/jupyter-hpc/api/slurm``.

- ``GET  …/slurm/<kernelspec>/options``: partitions (with limits), accounts and QOS this user
  may use on the kernelspec's site (cached a minute per site; ``?refresh=1`` asks again).
- ``PUT  …/slurm/pending/<kernelspec>``: ``{"path": <session path>, "resources": {...}}``, the
  choice for the next start of that kernelspec from that session, checked here (400 with a
  message naming the bad value; nothing is submitted).
- ``GET  …/slurm/kernels``: each SLURM kernel's job, state, Reason, expected start, node and
  walltime left, from the provisioners' own single squeue poll per site (no scheduler call).
- ``DELETE …/slurm/kernels/<kernel id>``: cancel that kernel's job. A queued start then fails
  with the job's state; a running kernel is shut down (which cancels its job).
- ``POST …/slurm/kernels/<kernel id>/keep``: the idle warning's "keep it".
- ``GET  …/slurm/jobs``: the user's jobs on each site (the magics' typed squeue), kernel jobs
  marked; one squeue per site per ``JOBS_TTL`` whatever the number of browsers.
- ``DELETE …/slurm/jobs/<site>/<job id>``: scancel one of the user's jobs.

Every handler is jupyter_server's ``APIHandler``: authenticated, authorized against the
``kernels`` resource, XSRF-checked for cookie-authenticated browsers.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

from jupyter_client.kernelspec import NoSuchKernel
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import ensure_async
from tornado import web

from ..errors import HPCError
from ..provisioners.slurm_provisioner import SlurmProvisioner
from ..slurm import commands
from ..slurm.site import cancel
from ..slurm.states import WAITING
from ..ssh import SSHTarget, get_pool, run_in_ssh_loop
from .resources import OptionsCache, ResourceError, validate_resources
from .slurm_status import kernel_statuses

OPTIONS = OptionsCache()
JOBS_TTL = 10.0  # seconds one site's job list is reused for every browser
JOB_ID = re.compile(r"^\d+(?:_\d+)?$")


async def slurm_kernelspecs(kernel_spec_manager: Any) -> dict[str, Any]:
    """Every kernelspec whose kernels run in SLURM jobs, by name (the manager's
    ``get_all_specs`` may be a coroutine, as RemoteKernelSpecManager's is)."""
    out = {}
    for name, entry in (await ensure_async(kernel_spec_manager.get_all_specs()) or {}).items():
        spec = entry.get("spec") or {}
        provisioner = (spec.get("metadata") or {}).get("kernel_provisioner") or {}
        if provisioner.get("provisioner_name") == "hpc-slurm":
            out[name] = spec
    return out


def site_name(spec: dict[str, Any], target: SSHTarget) -> str:
    """The site's name from discovery's metadata, else the login node as ``user@host:port``."""
    site = ((spec.get("metadata") or {}).get("jupyter_hpc") or {}).get("site")
    return str(site) if site else target.spec()


def provisioner_for(spec: dict[str, Any]) -> SlurmProvisioner:
    """A SlurmProvisioner configured as the kernelspec's kernels would be (never launched):
    it says which login connection and which default settings a kernel of the spec gets."""
    config = ((spec.get("metadata") or {}).get("kernel_provisioner") or {}).get("config") or {}
    return SlurmProvisioner(kernel_id=None, kernel_spec=None, **config)


class SlurmHandler(APIHandler):
    auth_resource = "kernels"

    def fail(self, status: int, message: str) -> None:
        raise web.HTTPError(status, message)

    async def slurm_spec(self, name: str) -> dict[str, Any]:
        try:
            spec = await ensure_async(self.kernel_spec_manager.get_kernel_spec(name))
        except NoSuchKernel:
            self.fail(404, f"No kernelspec named {name!r}")
        spec_json = spec.to_dict() if hasattr(spec, "to_dict") else dict(spec)
        provisioner = (spec_json.get("metadata") or {}).get("kernel_provisioner") or {}
        if provisioner.get("provisioner_name") != "hpc-slurm":
            self.fail(404, f"The kernelspec {name!r} does not run its kernels in SLURM jobs (hpc-slurm)")
        return spec_json

    def target_for(self, name: str, spec: dict[str, Any]) -> tuple[SlurmProvisioner, SSHTarget]:
        try:
            provisioner = provisioner_for(spec)
            return provisioner, provisioner.ssh_target()
        except (ValueError, HPCError) as exc:
            self.fail(400, f"The kernelspec {name!r} has a bad hpc-slurm config: {exc}")
            raise  # unreachable: fail raises

    async def site_options(self, name: str, refresh: bool = False):
        spec = await self.slurm_spec(name)
        provisioner, target = self.target_for(name, spec)

        async def fetch():
            connection = await get_pool().connect(target)
            if refresh:
                OPTIONS._entries.pop(target.pool_key(), None)
            return await OPTIONS.get(connection)

        try:
            return spec, provisioner, target, await run_in_ssh_loop(fetch())
        except HPCError as exc:
            self.log.warning("SLURM options for %s: %s %s", name, exc, exc.log_detail)
            self.fail(502, str(exc))
            raise


class OptionsHandler(SlurmHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        spec, provisioner, target, options = await self.site_options(name, bool(self.get_argument("refresh", "")))
        body = options.to_json()
        # What the kernelspec itself asks for: the dialog's starting point.
        body["defaults"] = {key: value for key, value in provisioner.sbatch_options().items()}
        body["kernel_name"] = name
        body["display_name"] = spec.get("display_name", name)
        body["site"] = site_name(spec, target)
        self.finish(json.dumps(body))


class PendingHandler(SlurmHandler):
    @web.authenticated
    @authorized
    async def put(self, name: str) -> None:
        body = self.get_json_body() or {}
        if not isinstance(body, dict):
            self.fail(400, 'The body must be a JSON object: {"path": ..., "resources": {...}}')
        path = body.get("path") or ""
        if not isinstance(path, str):
            self.fail(400, "path must be the session's path as text")
        km = self.kernel_manager
        pending = getattr(km, "pending_resources", None)
        if pending is None:
            self.fail(409, "Choosing SLURM resources at kernel start needs jupyter_hpc's kernel manager: set "
                      "c.ServerApp.kernel_manager_class = 'jupyter_hpc.server.HPCMappingKernelManager'")
        _, _, _, options = await self.site_options(name)
        try:
            resources = validate_resources(body.get("resources") or {}, options)
        except ResourceError as exc:
            self.fail(400, str(exc))
        pending.put(name, path, resources)
        self.log.info("SLURM resources for the next start of %s (%s): %s", name, path or "no path", resources)
        self.finish(json.dumps({"kernel_name": name, "path": path, "resources": resources}))


class KernelsHandler(SlurmHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.finish(json.dumps({"kernels": kernel_statuses(self.kernel_manager), "now": time.time()}))


class KernelJobHandler(SlurmHandler):
    @web.authenticated
    @authorized
    async def delete(self, kernel_id: str) -> None:
        km_map = self.kernel_manager
        km = (getattr(km_map, "starting_kernels", {}) or {}).get(kernel_id) or km_map._kernels.get(kernel_id)
        provisioner = getattr(km, "provisioner", None)
        if not isinstance(provisioner, SlurmProvisioner):
            self.fail(404, f"No SLURM kernel {kernel_id!r} on this server")
        state = provisioner.queue_state
        if kernel_id in km_map._kernels and not (state and state.state in WAITING):
            await ensure_async(km_map.shutdown_kernel(kernel_id))  # stops the kernel, cancels its job
            self.finish(json.dumps({"kernel_id": kernel_id, "cancelled": state.job_id if state else None}))
            return
        if state is None or not await provisioner.cancel_waiting_job():
            self.fail(409, "The kernel's job is not submitted yet; try again in a moment")
        self.log.info("Cancelled job %s of starting kernel %s at the user's request", state.job_id, kernel_id)
        self.finish(json.dumps({
            "kernel_id": kernel_id, "cancelled": state.job_id,
            "message": f"Job {state.job_id} was cancelled at your request before its kernel started. "
                       "Start the kernel again to queue a new job.",
        }))


class KeepHandler(SlurmHandler):
    """``POST …/slurm/kernels/<kernel id>/keep``: the idle warning's "keep it" (the idle clock
    starts again)."""

    @web.authenticated
    @authorized
    async def post(self, kernel_id: str) -> None:
        idle = getattr(self.kernel_manager, "idle", None)
        if idle is None or not idle.keep(kernel_id):
            self.fail(404, f"No SLURM kernel {kernel_id!r} with an idle_timeout on this server")
        self.finish(json.dumps({"kernel_id": kernel_id, "kept": True}))


class JobsHandler(SlurmHandler):
    """The user's jobs per site, shared by every browser for ``JOBS_TTL``."""

    cache: dict[str, tuple[float, dict[str, Any]]] = {}
    lock = asyncio.Lock()

    async def sites(self) -> dict[str, SSHTarget]:
        out: dict[str, SSHTarget] = {}
        for name, spec in (await slurm_kernelspecs(self.kernel_spec_manager)).items():
            try:
                target = provisioner_for(spec).ssh_target()
            except (ValueError, HPCError):
                continue
            out.setdefault(site_name(spec, target), target)
        return out

    async def site_jobs(self, site: str, target: SSHTarget) -> dict[str, Any]:
        async def go():
            connection = await get_pool().connect(target)
            user = connection.conn.get_extra_info("username") or target.username or ""
            argv = commands.with_env(commands.EPOCH_ENV, commands.squeue_argv(["-u", user]))
            return await connection.run(argv, check=False)

        try:
            result = await run_in_ssh_loop(go())
        except HPCError as exc:
            return {"site": site, "error": str(exc), "jobs": []}
        if result.exit_status != 0:
            return {"site": site, "error": str(result.stderr).strip() or "squeue failed", "jobs": []}
        return {"site": site, "error": "", "jobs": job_records(query_frame(str(result.stdout)))}

    @web.authenticated
    @authorized
    async def get(self) -> None:
        now = time.monotonic()
        kernel_jobs = {status["job_id"]: status["kernel_id"] for status in kernel_statuses(self.kernel_manager)
                       if status["job_id"]}
        out = []
        async with self.lock:
            for site, target in (await self.sites()).items():
                entry = self.cache.get(site)
                if entry is None or now - entry[0] > JOBS_TTL or self.get_argument("refresh", ""):
                    entry = (now, await self.site_jobs(site, target))
                    self.cache[site] = entry
                listing = dict(entry[1])
                listing["jobs"] = [dict(job, kernel_id=kernel_jobs.get(str(job.get("JOBID")))) for job in listing["jobs"]]
                out.append(listing)
        self.finish(json.dumps({"sites": out}))


def query_frame(text: str):
    from ..magics.dialect import Slurm

    return Slurm().parse_squeue(text)


def job_records(frame: Any) -> list[dict[str, Any]]:
    """The typed squeue frame as JSON rows: durations in seconds, times in ISO 8601 (UTC),
    missing values as null."""
    import pandas as pd

    rows = []
    for row in frame.to_dict(orient="records"):
        out: dict[str, Any] = {}
        for key, value in row.items():
            if value is None or (not isinstance(value, str) and pd.isna(value)):
                out[key] = None
            elif isinstance(value, pd.Timedelta):
                out[key] = value.total_seconds()
            elif isinstance(value, pd.Timestamp):
                out[key] = value.isoformat()
            elif hasattr(value, "item"):
                out[key] = value.item()  # numpy scalars
            else:
                out[key] = value if isinstance(value, (int, float, str, bool)) else str(value)
        rows.append(out)
    return rows


class JobHandler(JobsHandler):
    @web.authenticated
    @authorized
    async def delete(self, site: str, job_id: str) -> None:
        if not JOB_ID.match(job_id):
            self.fail(400, f"{job_id!r} is not a SLURM job id (digits, or digits_digits for an array task)")
        sites = await self.sites()
        target = sites.get(site)
        if target is None:
            self.fail(404, f"No site {site!r}; known: {', '.join(sites) or 'none'}")
        km = self.kernel_manager
        kernel_id = next((s["kernel_id"] for s in kernel_statuses(km) if s["job_id"] == job_id), None)
        if kernel_id is not None and kernel_id in km._kernels:
            # A running kernel's job: shut the kernel down (which cancels the job), so that the
            # restarter does not take the dead kernel for a crash and submit a new job.
            await ensure_async(km.shutdown_kernel(kernel_id))
            self.cache.pop(site, None)
            self.finish(json.dumps({"site": site, "cancelled": job_id, "kernel_id": kernel_id}))
            return

        async def go():
            return await cancel(await get_pool().connect(target), job_id)

        result = await run_in_ssh_loop(go())
        if result is not None and result.exit_status != 0:
            self.fail(400, f"scancel {job_id} on {site}: {str(result.stderr).strip()}")
        self.cache.pop(site, None)
        self.finish(json.dumps({"site": site, "cancelled": job_id}))


#: (pattern under the base URL, handler); other parts of jupyter_hpc append theirs.
HANDLERS: list[tuple[str, type]] = [
    (r"/jupyter-hpc/api/slurm/kernels", KernelsHandler),
    (r"/jupyter-hpc/api/slurm/kernels/([^/]+)", KernelJobHandler),
    (r"/jupyter-hpc/api/slurm/kernels/([^/]+)/keep", KeepHandler),
    (r"/jupyter-hpc/api/slurm/jobs", JobsHandler),
    (r"/jupyter-hpc/api/slurm/jobs/([^/]+)/([^/]+)", JobHandler),
    (r"/jupyter-hpc/api/slurm/pending/([^/]+)", PendingHandler),
    (r"/jupyter-hpc/api/slurm/([^/]+)/options", OptionsHandler),
]


def handlers(base_url: str) -> list[tuple[str, type]]:
    """The SLURM handlers under ``base_url``, for :data:`jupyter_hpc.server.extension.HANDLER_MODULES`."""
    from jupyter_server.utils import url_path_join

    return [(url_path_join(base_url, pattern), handler) for pattern, handler in HANDLERS]
