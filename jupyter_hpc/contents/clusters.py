"""``ClusterContentsManager``: the file browser over every site of the server, landing in a home.

Select it in ``jupyter_server_config.py`` (``HPCSpawner`` and the demo do)::

    c.ServerApp.contents_manager_class = "jupyter_hpc.contents.ClusterContentsManager"

It is a layer over one :class:`~jupyter_hpc.contents.SFTPContentsManager` per site, each with
that site's own pooled connection and credential:

- With one site the layout is that site's (its roots, ``home/`` and ``scratch/``, at the top).
- With several, the top level holds one read-only folder per site (``cori/``, ``perlmutter/``)
  and each holds that site's roots. A path is handed to its site's manager with the site's
  folder taken off, and the answer's paths get it back.

Where a newcomer lands: the file browser opens in the first site's first root
(``preferred_dir``, which JupyterLab reads as its preferred path; the top level stays one
click up), and anything made with "New" at a level that cannot hold files (the top, or a
site's folder above its roots) is made in that site's first root instead and opens from
there. Nothing the launcher offers fails because the browser showed the top level.

Every request asks for the credential held at that moment (:meth:`_current`), so a re-login
that brings a new certificate fixes a running server's file browser with no restart, even once
the connection made with the old one has dropped.

A kernel's working directory follows the notebook's folder when the kernel runs on the site
that folder is on (:meth:`remote_directory` with the kernel's site). A kernel of another site
starts in its home there; :meth:`folder_elsewhere` says so in words the kernel prints first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

from jupyter_server.services.contents.manager import AsyncContentsManager
from tornado.web import HTTPError
from traitlets import List, Unicode, default, validate

from ..errors import HPCError
from ..sites import HPCSites
from .manager import SFTPContentsManager


class ClusterContentsManager(AsyncContentsManager):
    """The files of every site in ``c.HPCSites.sites`` (or of ``sites``), one folder per site
    when there are several."""

    sites = List(
        Unicode(), config=True,
        help="Which sites' files to show, in this order, by their names in c.HPCSites.sites, "
        "e.g. ['cori', 'perlmutter']. Empty: every site there, in its order. With one, the top "
        "level is that site's roots; with several, one folder per site holds them.",
    )

    @default("files_handler_class")
    def _default_files_handler_class(self) -> type:
        from .files_handler import StreamingFilesHandler

        return StreamingFilesHandler

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        known = HPCSites(parent=self)
        names = list(self.sites) or known.names()
        for name in names:
            known.site(name)  # a misspelt name stops the server here, naming the known ones
        if not names:
            known.default_site()  # the error that says how to name a site
        self._sites = {name: known.site(name) for name in names}
        #: site name -> its manager; the order is the top level's.
        self.managers: dict[str, SFTPContentsManager] = {
            name: SFTPContentsManager(parent=self, log=self.log, site=name, event_logger=self.event_logger)
            for name in names
        }
        self.single = len(self.managers) == 1

    # -- where a path lives ----------------------------------------------------------------

    def _split(self, path: str) -> tuple[SFTPContentsManager | None, str, str]:
        """``(manager, path inside its site, the site's folder prefix)``; the manager is None
        for the top level above several sites."""
        path = path.strip("/")
        if self.single:
            return self._current(next(iter(self.managers.values()))), path, ""
        if not path:
            return None, "", ""
        site, _, rest = path.partition("/")
        manager = self.managers.get(site)
        if manager is None or site in (".", ".."):
            raise HTTPError(404, f"No such file or directory: {path} (the top level holds {', '.join(self.managers)})")
        return self._current(manager), rest, site + "/"

    def _current(self, manager: SFTPContentsManager) -> SFTPContentsManager:
        """``manager`` logging in with the credential held now: after a re-login (a new
        certificate from the hub), the next connection uses it, so a dropped connection is
        never reopened with the certificate that has ended."""
        try:
            target = self._sites[manager.site].ssh_target()
        except HPCError as exc:  # no credential held (logged out): say so, as for a site down
            raise HTTPError(503, f"{self._sites[manager.site].display_name}: {exc.message}") from exc
        files = manager.cluster
        if files.target != target:
            files.target = target
        return manager

    def site_of(self, path: str) -> str | None:
        """The name of the site whose files ``path`` names (None: the top level above several)."""
        manager, _, _ = self._split(path)
        return manager.site if manager is not None else None

    @staticmethod
    def _prefixed(model: dict[str, Any], prefix: str) -> dict[str, Any]:
        if prefix:
            model["path"] = (prefix + model["path"]).rstrip("/")
            if model.get("type") == "directory" and isinstance(model.get("content"), list):
                for item in model["content"]:
                    item["path"] = prefix + item["path"]
        return model

    async def _landing(self, manager: SFTPContentsManager, prefix: str) -> str:
        """The first root of ``manager``'s site, as an API path of this manager ('' when the
        site's top level is its one root)."""
        roots = await manager.roots()
        first = "" if roots.single is not None else roots.names()[0]
        return (prefix + first).rstrip("/")

    @default("preferred_dir")
    def _default_preferred_dir(self) -> str:
        """The first site's first root, from the configuration alone (nothing is asked of a
        cluster before the user's credential has arrived)."""
        name, manager = next(iter(self.managers.items()))
        roots = self._sites[name].roots
        first = next(iter(roots)) if len(roots) > 1 else ""
        return "/".join(part for part in ("" if self.single else name, first) if part)

    @validate("preferred_dir")
    def _validate_preferred_dir(self, proposal: dict) -> str:
        # The base class checks that it exists, synchronously, over SSH: at start-up, before the
        # hub's credential arrives, that would fail; a folder missing later shows as a 404.
        return proposal["value"].strip("/")

    # -- the top level above several sites ---------------------------------------------------

    async def _top_model(self, content: bool) -> dict[str, Any]:
        model: dict[str, Any] = {
            "name": "", "path": "", "type": "directory", "writable": False, "created": None,
            "last_modified": None, "mimetype": None, "content": None, "format": None,
            "size": None, "hash": None, "hash_algorithm": None,
        }
        if content:
            entries = []
            for name, manager in self.managers.items():
                try:
                    site = await self._current(manager).get("", content=False)
                except HTTPError as exc:  # an unreachable site is still listed, to say so on opening
                    self.log.info("Site %s not reachable for the top level: %s", name, exc.log_message)
                    site = {"writable": False, "created": None, "last_modified": None}
                entries.append({**model, "name": name, "path": name, "writable": False,
                                "created": site["created"], "last_modified": site["last_modified"]})
            model.update(content=entries, format="json")
            times = [entry["last_modified"] for entry in entries if entry["last_modified"] is not None]
            model["last_modified"] = model["created"] = max(times) if times else None
        if model["last_modified"] is None:
            model["last_modified"] = model["created"] = datetime(1970, 1, 1, tzinfo=timezone.utc)
        return model

    def _not_at_top(self, what: str) -> HTTPError:
        return HTTPError(403, f"{what} cannot be done at the top level: it holds one folder per site "
                         f"({', '.join(self.managers)}); do it inside one of them")

    # -- the contents API, each call handed to its site's manager ------------------------------

    async def get(self, path, content=True, type=None, format=None, require_hash=False):
        manager, inner, prefix = self._split(path)
        if manager is None:
            if type not in (None, "directory"):
                raise HTTPError(400, f"{path or '/'} is a directory, not a {type}", reason="bad type")
            return await self._top_model(content)
        model = await manager.get(inner, content=content, type=type, format=format, require_hash=require_hash)
        return self._prefixed(model, prefix)

    async def save(self, model, path=""):
        manager, inner, prefix = self._split(path)
        if manager is None:
            raise self._not_at_top("Saving")
        return self._prefixed(await manager.save(model, inner), prefix)

    async def delete_file(self, path):
        manager, inner, _ = self._split(path)
        if manager is None or not inner:
            raise HTTPError(400, f"Can't delete {'the top level' if manager is None else 'a site'}: {path or '/'}")
        await manager.delete_file(inner)

    async def delete(self, path):
        manager, inner, _ = self._split(path)
        if manager is None or (not inner and not self.single):
            raise HTTPError(400, f"Can't delete {'the top level' if manager is None else 'a site'}: {path or '/'}")
        await manager.delete(inner)

    async def rename_file(self, old_path, new_path):
        await self.rename(old_path, new_path)

    async def rename(self, old_path, new_path):
        old, old_inner, old_prefix = self._split(old_path)
        new, new_inner, _ = self._split(new_path)
        if old is None or new is None:
            raise HTTPError(400, "The top level's folders are the sites: they cannot be renamed")
        if old is not new:
            raise HTTPError(400, f"Cannot move {old_path.strip('/')} to another site ({new.site}): "
                            "download and upload it, or copy it between the clusters in a terminal")
        await old.rename(old_inner, new_inner)

    async def update(self, model, path):
        manager, inner, prefix = self._split(path)
        if manager is None:
            raise self._not_at_top("Renaming")
        new_path = model.get("path")
        if new_path and new_path.strip("/") != path.strip("/"):
            await self.rename(path, new_path)
            path = new_path
        return await self.get(path, content=False)

    async def new_untitled(self, path="", type="", ext=""):
        """jupyter_server's ``new_untitled``, except that a level that cannot hold files (the
        top, a site's folder above its roots) puts the new file or folder into the first root
        of the site (the first site at the top), e.g. ``home/Untitled.ipynb``."""
        manager, inner, prefix = self._split(path)
        if manager is None:
            manager, prefix = self._current(next(iter(self.managers.values()))), f"{next(iter(self.managers))}/"
            inner = ""
        roots = await manager.roots()
        if roots.single is None and roots.locate(inner).is_top:
            inner = roots.names()[0]
        return self._prefixed(await manager.new_untitled(inner, type=type, ext=ext), prefix)

    async def new(self, model=None, path=""):
        manager, inner, prefix = self._split(path)
        if manager is None:
            raise self._not_at_top("Making a file")
        return self._prefixed(await manager.new(model, inner), prefix)

    async def copy(self, from_path, to_path=None):
        manager, inner, prefix = self._split(from_path)
        if manager is None or (not inner and not self.single):
            raise HTTPError(400, "A site's folder cannot be copied")
        to_inner = None
        if to_path is not None:
            target, to_inner, _ = self._split(to_path)
            if target is not manager:
                raise HTTPError(400, f"Cannot copy {from_path.strip('/')} to another site: download and upload it")
        return self._prefixed(await manager.copy(inner, to_inner), prefix)

    async def trust_notebook(self, path):
        manager, inner, _ = self._split(path)
        if manager is None:
            raise HTTPError(400, "The top level is not a notebook")
        await manager.trust_notebook(inner)

    async def _exists(self, path: str, kind: str) -> bool:
        try:
            manager, inner, _ = self._split(path)
        except HTTPError as exc:
            if exc.status_code == 404:
                return False
            raise
        if manager is None:
            return kind == "directory"
        return await (manager.dir_exists(inner) if kind == "directory" else manager.file_exists(inner))

    async def dir_exists(self, path):
        return await self._exists(path, "directory")

    async def file_exists(self, path=""):
        return await self._exists(path, "file")

    async def exists(self, path):
        return await self.dir_exists(path) or await self.file_exists(path)

    async def is_hidden(self, path):
        return any(part.startswith(".") for part in path.strip("/").split("/") if part not in ("", ".", ".."))

    # -- checkpoints live with the file, on its site ---------------------------------------------

    async def create_checkpoint(self, path):
        manager, inner, _ = self._split(path)
        if manager is None:
            raise HTTPError(400, "The top level has no checkpoints")
        return await manager.create_checkpoint(inner)

    async def list_checkpoints(self, path):
        manager, inner, _ = self._split(path)
        return [] if manager is None else await manager.list_checkpoints(inner)

    async def restore_checkpoint(self, checkpoint_id, path):
        manager, inner, _ = self._split(path)
        if manager is None:
            raise HTTPError(400, "The top level has no checkpoints")
        await manager.restore_checkpoint(checkpoint_id, inner)

    async def delete_checkpoint(self, checkpoint_id, path):
        manager, inner, _ = self._split(path)
        if manager is None:
            raise HTTPError(400, "The top level has no checkpoints")
        await manager.delete_checkpoint(checkpoint_id, inner)

    # -- downloads and kernels --------------------------------------------------------------------

    async def stream(self, path: str) -> tuple[dict[str, Any], AsyncIterator[bytes]]:
        manager, inner, prefix = self._split(path)
        if manager is None:
            raise HTTPError(400, "The top level is a directory")
        model, chunks = await manager.stream(inner)
        return self._prefixed(model, prefix), chunks

    async def get_kernel_path(self, path, model=None):
        manager, inner, prefix = self._split(path)
        if manager is None:
            return ""
        return (prefix + await manager.get_kernel_path(inner, model)).rstrip("/")

    async def remote_directory(self, path: str, site: str | None = None) -> str | None:
        """The folder on the cluster a kernel for ``path`` starts in: the notebook's folder
        when the kernel runs on ``site`` (None: the site of the path) and that is the
        notebook's site; None (the kernel's home) when the kernel runs on another site."""
        manager, inner, prefix = self._split(path)
        if manager is None:
            manager, inner = self._current(next(iter(self.managers.values()))), ""
        if site is not None and site != manager.site:
            return None
        return await manager.remote_directory(inner)

    def folder_elsewhere(self, path: str, site: str) -> str | None:
        """What a kernel of ``site`` started for ``path`` should say first, when ``path`` is on
        another site: "this notebook's folder is on Cori; the kernel runs on Perlmutter, in
        your home there". None when the folder is on the kernel's site."""
        try:
            manager, _, _ = self._split(path)
        except HTTPError:
            return None
        if manager is None or site not in self.managers or manager.site == site:
            return None
        here = self._sites[manager.site].display_name
        there = self._sites[site].display_name
        return f"this notebook's folder is on {here}; the kernel runs on {there}, in your home there"

    def info_string(self) -> str:
        return "; ".join(manager.info_string() for manager in self.managers.values())
