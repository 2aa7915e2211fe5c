"""jupyter_server's terminals API, as JupyterLab speaks it, over :class:`HPCTerminalManager`.

- ``GET/POST /api/terminals``, ``GET/DELETE /api/terminals/<name>``: jupyter_server_terminals'
  shapes (``{"name", "last_activity"}``); a POST makes a terminal on the default site.
- ``/terminals/websocket/<name>``: terminado's protocol, JSON arrays ``["stdin", text]``,
  ``["set_size", rows, cols, height_px, width_px]`` in; ``["setup", {}]``, ``["stdout", text]``,
  ``["disconnect", 1]`` out. The recent screen is replayed to each new websocket.
- ``GET /jupyter-hpc/api/terminals``: the sites offering terminals (the launcher's tiles);
  ``POST`` ``{"site": ...}``, ``{"site": ..., "job": ...}`` or ``{"kernel_id": ...}`` makes one
  there (a job's: on its first node) and answers its model, whose name the websocket takes.

Every route is authenticated and authorized against the ``terminals`` resource, the websocket
too (``execute``), as jupyter_server_terminals does: a token that may not use this server's
terminals gets 403 on each.
"""

from __future__ import annotations

import asyncio
import json
import time
from json.encoder import encode_basestring as encode_json_string
from typing import Any

from jupyter_server._tz import utcnow
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.utils import ensure_async, url_path_join
from tornado import web
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from ..ssh import run_in_ssh_loop
from .manager import HPCTerminalManager
from .remote import RemoteTerminal

AUTH_RESOURCE = "terminals"
SETTING = "jupyter_hpc_terminal_manager"


class TerminalsAPIHandler(APIHandler):
    auth_resource = AUTH_RESOURCE

    @property
    def hpc_terminals(self) -> HPCTerminalManager:
        return self.settings[SETTING]

    def body(self) -> dict[str, Any]:
        data = self.get_json_body() or {}
        if not isinstance(data, dict):
            raise web.HTTPError(400, "The body must be a JSON object")
        return data

    async def remote_directory(self, site: str | None, cwd: Any) -> str | None:
        """The folder on the cluster of the file browser's ``cwd`` (an API path), where the
        files shown are that site's (jupyter_hpc's SFTPContentsManager); else None: the home."""
        contents = self.contents_manager
        locate = getattr(contents, "remote_directory", None)
        if not isinstance(cwd, str) or not cwd.strip("/") or locate is None:
            return None
        sites = list(self.hpc_terminals.sites)
        files_site = getattr(contents, "site", "") or (sites[0] if len(sites) == 1 else "")
        if files_site != self.hpc_terminals.site_of(site):
            return None
        try:
            return await locate(cwd)
        except Exception as exc:  # a folder that is not there (any more): the home, as a local terminal does
            self.log.debug("terminal cwd %r not found on the cluster: %s", cwd, exc)
            return None


class TerminalRootHandler(TerminalsAPIHandler):
    @web.authenticated
    @authorized
    def get(self) -> None:
        self.finish(json.dumps(self.hpc_terminals.list()))

    @web.authenticated
    @authorized
    async def post(self) -> None:
        """JupyterLab's Terminal: a shell on the default site, in the file browser's folder
        (``cwd``) where the files shown are that site's; ``name`` is kept."""
        data = self.body()
        directory = await self.remote_directory(None, data.get("cwd"))
        model = await self.hpc_terminals.create(name=data.get("name") or None, directory=directory)
        self.finish(json.dumps(model))


class TerminalHandler(TerminalsAPIHandler):
    SUPPORTED_METHODS = ("GET", "DELETE", "OPTIONS")  # type: ignore[assignment]

    @web.authenticated
    @authorized
    def get(self, name: str) -> None:
        self.finish(json.dumps(self.hpc_terminals.get(name)))

    @web.authenticated
    @authorized
    async def delete(self, name: str) -> None:
        await self.hpc_terminals.terminate(name, force=True)
        self.set_status(204)
        self.finish()


class SiteTerminalsHandler(TerminalsAPIHandler):
    """``/jupyter-hpc/api/terminals``: which sites offer terminals, and a terminal on one."""

    @web.authenticated
    @authorized
    def get(self) -> None:
        manager = self.hpc_terminals
        sites = [{"name": site.name, "display_name": site.display_name, "terminals": site.terminals}
                 for site in manager.sites.values()]
        self.finish(json.dumps({"sites": sites, "default": manager.default_site}))

    @web.authenticated
    @authorized
    async def post(self) -> None:
        data = self.body()
        manager = self.hpc_terminals
        kernel_id = data.get("kernel_id")
        if kernel_id:
            site, job, target, node = self.kernel_job(str(kernel_id))
            model = await manager.create(site=site, job=job, target=target, node=node)
        else:
            site = data.get("site")
            if not isinstance(site, str) or not site:
                raise web.HTTPError(400, 'Say where: {"site": NAME}, {"site": NAME, "job": ID} or {"kernel_id": ID}')
            job = data.get("job")
            directory = await self.remote_directory(site, data.get("cwd")) if job in (None, "") else None
            model = await manager.create(site=site, job=str(job) if job not in (None, "") else None,
                                         directory=directory)
        self.finish(json.dumps(model))

    def kernel_job(self, kernel_id: str) -> tuple[str, str, Any, Any]:
        """The site, job id and login target of a running SLURM kernel of this server, and the
        target of its node where the kernel is reached by SSH through the login node
        (``node_access = "jump"``): the job's shell then opens there, on the pooled connection
        the kernel already uses. None where the site allows no SSH to nodes (``"direct"``):
        the shell is then a job step (``srun --pty``)."""
        try:
            km = self.kernel_manager.get_kernel(kernel_id)
        except KeyError:
            raise web.HTTPError(404, f"No kernel {kernel_id}") from None
        provisioner = getattr(km, "provisioner", None)
        state = getattr(provisioner, "queue_state", None)
        job = getattr(state, "job_id", None)
        if provisioner is None or not hasattr(provisioner, "sbatch_options") or not job:
            raise web.HTTPError(400, "This kernel does not run in a SLURM job (yet): there is no job node to open a terminal on.")
        spec = getattr(km, "kernel_spec", None)
        metadata = getattr(spec, "metadata", None) or {}
        site = str((metadata.get("jupyter_hpc") or {}).get("site") or "")
        target = provisioner.ssh_target()
        node = None
        if getattr(provisioner, "node_access", None) == "jump":
            remote = getattr(provisioner, "_remote", None)  # the kernel's monitor, on its node
            node = getattr(getattr(remote, "connection", None), "target", None)
        return site or target.spec(), str(job), target, node


class TerminalSocket(WebSocketMixin, JupyterHandler, WebSocketHandler):
    """One browser's view of a terminal: terminado's messages over a websocket."""

    auth_resource = AUTH_RESOURCE

    def initialize(self) -> None:
        self.terminal: RemoteTerminal | None = None
        self.size: tuple[int | None, int | None] = (None, None)
        self.loop = asyncio.get_event_loop()
        self._touched = float("-inf")  # time.monotonic() of the last touch()

    @property
    def hpc_terminals(self) -> HPCTerminalManager:
        return self.settings[SETTING]

    async def get(self, *args: Any, **kwargs: Any) -> None:
        user = self.current_user
        if not user:
            raise web.HTTPError(403)
        if self.authorizer is not None and not await ensure_async(
            self.authorizer.is_authorized(self, user, "execute", self.auth_resource)
        ):
            raise web.HTTPError(403)
        if args[0] not in self.hpc_terminals.terminals:
            raise web.HTTPError(404)
        await ensure_async(super().get(*args, **kwargs))

    async def open(self, name: str) -> None:  # type: ignore[override]
        super().open(name)  # WebSocketMixin's pings
        self.loop = asyncio.get_running_loop()
        terminal = self.terminal = self.hpc_terminals.terminal(name)
        self.send(["setup", {}])

        async def attach() -> str:
            return terminal.attach(self)

        backlog = await run_in_ssh_loop(attach())
        if backlog:
            self.send(["stdout", backlog])
        self.touch()

    def on_message(self, message: str | bytes) -> None:
        try:
            command = json.loads(message)
            kind = command[0]
        except (ValueError, IndexError, KeyError, TypeError):
            return
        terminal = self.terminal
        if terminal is None:
            return
        if kind == "stdin" and len(command) > 1 and isinstance(command[1], str):
            terminal.write(command[1])
            self.touch()
        elif kind == "set_size" and len(command) > 2:
            try:
                rows, cols = int(command[1]), int(command[2])
            except (TypeError, ValueError):
                return
            if 0 < rows < 10_000 and 0 < cols < 10_000:
                self.size = (rows, cols)
                terminal.resized()

    def on_output(self, text: str) -> None:
        try:  # terminado's ["stdout", text], encoded as one string (no list for the encoder to walk)
            self.write_message('["stdout", ' + encode_json_string(text) + "]")
        except WebSocketClosedError:
            pass
        self.touch()

    def on_end(self, exited: bool) -> None:
        """The shell exited: JupyterLab closes the tab on ``disconnect`` (as for a local
        terminal). One that ended for a reason has printed it; the tab stays to show it."""
        if exited:
            self.send(["disconnect", 1])
            self.close()
            self.terminal = None

    def on_close(self) -> None:
        terminal, self.terminal = self.terminal, None
        if terminal is not None:
            terminal.detach_soon(self)

    def send(self, message: list) -> None:
        try:
            self.write_message(json.dumps(message))
        except WebSocketClosedError:
            pass

    def touch(self) -> None:
        """Terminal traffic counts as the server's activity (JupyterHub's idle culler reads it,
        in minutes): noted at most once a second, not at each keystroke and echo."""
        now = time.monotonic()
        if now - self._touched >= 1.0:
            self._touched = now
            self.application.settings["terminal_last_activity"] = utcnow()


def handlers(base_url: str) -> list:
    return [
        (url_path_join(base_url, r"/terminals/websocket/(\w+)"), TerminalSocket),
        (url_path_join(base_url, r"/api/terminals"), TerminalRootHandler),
        (url_path_join(base_url, r"/api/terminals/(\w+)"), TerminalHandler),
        (url_path_join(base_url, r"/jupyter-hpc/api/terminals"), SiteTerminalsHandler),
    ]

