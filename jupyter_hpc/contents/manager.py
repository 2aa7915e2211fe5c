"""``SFTPContentsManager``: the file browser shows the cluster, not the server's host.

Select it in ``jupyter_server_config.py``::

    c.ServerApp.contents_manager_class = "jupyter_hpc.contents.SFTPContentsManager"
    c.SFTPContentsManager.site = "cori"          # a site of c.HPCSites.sites; default: the only one

Every request is carried to the SSH loop and served there over the pooled connection's one
SFTP client (:mod:`jupyter_hpc.contents.remote`), so the server's event loop never waits on the
network: a slow listing on one tab does not hold up a cell on another. The file browser's
top level is the site's home, or one folder per root (``home/``, ``scratch/``) when the site
names several; no API path reaches outside them (:mod:`jupyter_hpc.contents.roots`).
"""

from __future__ import annotations

import base64
import contextvars
import fnmatch
import functools
import hashlib
import mimetypes
import posixpath
import re
from collections.abc import AsyncIterator, Awaitable
from datetime import datetime, timezone
from typing import Any, TypeVar

import nbformat
from jupyter_server.services.contents.manager import AsyncContentsManager, copy_pat
from tornado.web import HTTPError
from traitlets import Bool, Enum, Integer, Unicode, default, validate

from ..sites import HPCSites, Site
from ..ssh import run_in_ssh_loop
from .checkpoints import SFTPCheckpoints
from .remote import ClusterFiles, Entry, translate
from .roots import Location, Roots

T = TypeVar("T")
# The mode a save gives a new file, when it is a copy (the source's): set around the base class's copy.
NEW_FILE_MODE: contextvars.ContextVar[int | None] = contextvars.ContextVar("NEW_FILE_MODE", default=None)


def _time(seconds: float) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return datetime(1970, 1, 1, tzinfo=timezone.utc)


@functools.lru_cache(maxsize=4096)
def _mimetype_of_suffix(suffix: str) -> str | None:
    return mimetypes.guess_type("file" + suffix)[0]


def _mimetype(name: str) -> str | None:
    """``mimetypes.guess_type(name)[0]``, cached by what it depends on: for a name "stem.a.b"
    with a stem, only ".a.b" (an encoding suffix such as .gz, then the type's)."""
    last = name.rfind(".")
    cut = name.rfind(".", 0, last) if last > 0 else -1
    start = cut if cut > 0 else last
    if start <= 0 or not name[:start].strip(".") or ":" in name:  # no stem, or URL-like: as mimetypes sees it
        return mimetypes.guess_type(name)[0]
    return _mimetype_of_suffix(name[start:])


class SFTPContentsManager(AsyncContentsManager):
    """An ``AsyncContentsManager`` over SFTP to one site's roots."""

    site = Unicode(
        "", config=True,
        help="The site whose files to show: a name in c.HPCSites.sites, e.g. 'cori'. Empty: the "
        "only site there is.",
    )
    follow_links_out = Bool(
        False, config=True,
        help="Whether a symlink may lead out of its root (e.g. home/data -> /project/x). By "
        "default such links are listed but opening them is refused with 403, so the roots are "
        "the whole of what the browser can reach.",
    )
    always_delete_dir = Bool(
        False, config=True,
        help="Delete non-empty directories (recursively, on the cluster; there is no trash "
        "there). By default only empty ones can be deleted, as jupyter_server does without a trash.",
    )
    max_copy_folder_size_mb = Integer(
        500, config=True,
        help="The largest folder, in MB (the sum of its files' sizes), that the browser's Copy "
        "duplicates on the cluster, as FileContentsManager.max_copy_folder_size_mb; a larger one "
        "is refused with 400 before anything is copied (copy it in a terminal on the cluster).",
    )
    max_content_mb = Integer(
        100, config=True,
        help="The largest file, in MB, the server reads whole into its memory to open it in the "
        "browser (the contents API's content, a hash, a checkpoint); a larger one is refused with "
        "413 naming the streaming download (/files/…), which has no such limit.",
    )

    @validate("max_content_mb")
    def _valid_max_content(self, proposal):
        if proposal["value"] < 1:
            raise ValueError(f"SFTPContentsManager.max_content_mb must be 1 or more, not {proposal['value']}")
        return proposal["value"]

    def too_large(self, path: str, size: int | None = None) -> HTTPError:
        """The refusal of a read above max_content_mb, pointing at the streaming download."""
        shown = f"{size / 1048576:.0f} MB" if size else "larger"
        return HTTPError(
            413, f"{posixpath.basename(path)} is {shown}, more than the {self.max_content_mb} MB the server opens "
            f"in the browser (c.SFTPContentsManager.max_content_mb). Download it instead (the file browser's "
            f"Download, which streams it through /files/), or open it in a terminal on the cluster.",
        )

    async def read_capped(self, remote: str, path: str, size: int | None) -> bytes:
        """A whole file's bytes, refused (413) above max_content_mb before or while reading."""
        limit = self.max_content_mb * 1048576
        if size is not None and size > limit:
            raise self.too_large(path, size)
        data = await self._remote(self.cluster.read(remote, limit), path)
        if len(data) > limit:
            raise self.too_large(path)
        return data

    download_chunk_size = Integer(
        1024 * 1024, config=True,
        help="Bytes read from the cluster per step of a /files/ download (and written to the "
        "client before the next read), so a large file never sits in the server's memory.",
    )

    hash_algorithm = Enum(
        sorted(hashlib.algorithms_available), default_value="sha256", config=True,
        help="The hashlib algorithm of a model's 'hash' (asked for with hash=1), as "
        "FileContentsManager.hash_algorithm: the file is read from the cluster and hashed here.",
    )

    @default("checkpoints_class")
    def _default_checkpoints_class(self) -> type:
        return SFTPCheckpoints

    @default("files_handler_class")
    def _default_files_handler_class(self) -> type:
        from .files_handler import StreamingFilesHandler

        return StreamingFilesHandler

    # -- where --------------------------------------------------------------------------

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._site = self._choose_site()  # a misspelt or missing site stops the server here, named
        self._cluster: ClusterFiles | None = None

    def _choose_site(self) -> Site:
        sites = HPCSites(parent=self)
        return sites.site(self.site) if self.site else sites.default_site()

    @property
    def cluster(self) -> ClusterFiles:
        """The site's files, logging in with the credential held now: the one the hub hands
        over after the server starts, and after a re-login the new one, so a connection that
        dropped is never reopened with a certificate that has ended."""
        site = self._site
        target = site.ssh_target()
        if self._cluster is None:
            self._cluster = ClusterFiles(target, site.roots, site.display_name,
                                         follow_links_out=self.follow_links_out)
        elif self._cluster.target != target:
            self._cluster.target = target
        return self._cluster

    async def _remote(self, work: Awaitable[T], api_path: str) -> T:
        """Run ``work`` (a coroutine of ClusterFiles) in the SSH loop; cluster failures become
        the HTTP errors a user should read."""
        try:
            return await run_in_ssh_loop(work)
        except Exception as exc:
            error = translate(exc, api_path, self.cluster.site)
            if error is exc:
                raise
            (self.log.debug if error.status_code == 404 else self.log.info)(
                "%s: %s (%r)", api_path or "/", error.log_message, exc)
            raise error from exc

    async def roots(self) -> Roots:
        roots, _ = await self._remote(self.cluster.resolve(), "")
        return roots

    async def _locate(self, path: str) -> tuple[Roots, Location]:
        roots = await self.roots()
        return roots, roots.locate(path)

    async def _entry(self, location: Location) -> Entry:
        return await self._remote(self.cluster.entry(location), location.api_path)

    async def remote_directory(self, path: str) -> str:
        """The directory on the cluster a kernel for ``path`` should start in: the folder
        itself, or a file's folder (the home for the top level above several roots)."""
        roots, location = await self._locate(path)
        if location.is_top:
            location = roots.locate(roots.names()[0])
        try:
            entry = await self._entry(location)
        except HTTPError:
            entry = None
        if entry is not None and entry.kind == "directory":
            return entry.remote
        return posixpath.dirname(entry.remote if entry else location.remote)

    async def get_kernel_path(self, path, model=None):
        """The API folder a notebook's kernel starts in (its own folder), which the kernel
        manager turns into the remote directory with :meth:`remote_directory`."""
        path = path.strip("/")
        if await self.dir_exists(path):
            return path
        return path.rsplit("/", 1)[0] if "/" in path else ""

    # -- models -------------------------------------------------------------------------

    def _model(self, api_path: str, kind: str, entry: Entry | None) -> dict[str, Any]:
        when = _time(entry.mtime if entry else 0)
        return {
            "name": api_path.rsplit("/", 1)[-1],
            "path": api_path,
            "type": kind,
            "writable": entry.writable if entry else False,
            "created": when,  # SFTP v3 knows no creation time; mtime is what JupyterLab compares
            "last_modified": when,
            "mimetype": None,
            "content": None,
            "format": None,
            "size": entry.size if entry and kind != "directory" else None,
            "hash": None,
            "hash_algorithm": None,
        }

    def _kind(self, entry: Entry, api_path: str, wanted: str | None = None) -> str:
        if entry.kind == "directory":
            return "directory"
        if wanted == "notebook" or (wanted is None and api_path.endswith(".ipynb")):
            return "notebook"
        return "file"

    def _listed(self, name: str) -> bool:
        """``should_list`` with the hide_globs compiled once: fnmatch per glob per name was
        most of a 10,000-entry listing's time in the server."""
        if not self.allow_hidden and name.startswith("."):
            return False
        globs = tuple(self.hide_globs)
        if getattr(self, "_hide_globs", None) != globs:
            self._hide_globs = globs
            self._hide_pattern = re.compile("|".join(map(fnmatch.translate, globs))) if globs else None
        return self._hide_pattern is None or not self._hide_pattern.match(name)

    async def _top_model(self, roots: Roots, content: bool) -> dict[str, Any]:
        """The read-only level above several roots: one folder each."""
        model = self._model("", "directory", None)
        if content:
            entries = []
            for name in roots.names():
                try:
                    entry = await self._entry(roots.locate(name))
                except HTTPError as exc:
                    if exc.status_code == 503:
                        raise
                    continue
                entries.append(self._model(name, "directory", entry))
            model.update(content=entries, format="json")
            if entries:
                model["last_modified"] = max(each["last_modified"] for each in entries)
                model["created"] = model["last_modified"]
        return model

    async def get(self, path, content=True, type=None, format=None, require_hash=False):
        path = path.strip("/")
        roots, location = await self._locate(path)
        if location.is_top:
            if type not in (None, "directory"):
                raise HTTPError(400, f"{path or '/'} is a directory, not a {type}", reason="bad type")
            return await self._top_model(roots, content)
        if not self.allow_hidden and await self.is_hidden(path):
            raise HTTPError(404, f"No such file or directory: {path}")
        entry = await self._entry(location)
        if entry.kind == "other":
            raise HTTPError(404, f"{path} is neither a file nor a directory")
        kind = self._kind(entry, path, type)
        if kind == "directory" and type not in (None, "directory"):
            raise HTTPError(400, f"{path} is a directory, not a {type}", reason="bad type")
        if kind != "directory" and type == "directory":
            raise HTTPError(400, f"{path} is not a directory", reason="bad type")
        model = self._model(location.api_path, kind, entry)
        if kind == "directory":
            if content:
                model.update(content=await self._listing(roots, location), format="json")
        else:
            data = None
            if content or require_hash:
                data = await self.read_capped(entry.remote, path, entry.size)
            if require_hash:
                model.update(hash=hashlib.new(self.hash_algorithm, data).hexdigest(),
                             hash_algorithm=self.hash_algorithm)
            if kind == "notebook":
                if content:
                    self._notebook_content(model, data, path)
            else:
                model["mimetype"] = mimetypes.guess_type(path)[0]
                if content:
                    self._file_content(model, data, format, path)
        self.emit(data={"action": "get", "path": path})
        return model

    async def _listing(self, roots: Roots, location: Location) -> list[dict[str, Any]]:
        """The folder's models, built in one pass (a 10,000-entry folder is 10,000 dicts: the
        times and mimetypes are computed once per distinct value, not per entry)."""
        entries = await self._remote(self.cluster.listing(location), location.api_path)
        prefix = location.api_path + "/" if location.api_path else ""
        times: dict[float, datetime] = {}
        listed = self._listed
        models = []
        for entry in entries:
            kind = entry.kind
            name = entry.name
            if kind == "other" or not listed(name):
                continue
            when = times.get(entry.mtime)
            if when is None:
                when = times[entry.mtime] = _time(entry.mtime)
            if kind == "directory":
                mimetype, size = None, None
            else:
                if name.endswith(".ipynb"):
                    kind, mimetype = "notebook", None
                else:
                    mimetype = _mimetype(name)
                size = entry.size
            models.append({
                "name": name, "path": prefix + name, "type": kind, "writable": entry.writable,
                "created": when, "last_modified": when, "mimetype": mimetype, "content": None,
                "format": None, "size": size, "hash": None, "hash_algorithm": None,
            })
        return models

    def _notebook_content(self, model: dict, data: bytes, path: str) -> None:
        validation_error: dict[str, Any] = {}
        try:
            nb = nbformat.reads(data.decode("utf-8"), as_version=4, capture_validation_error=validation_error)
        except Exception as exc:
            raise HTTPError(400, f"Unreadable Notebook: {path} {exc!r}") from exc
        self.mark_trusted_cells(nb, path)
        model.update(content=nb, format="json")
        self.validate_notebook_model(model, validation_error)

    def _file_content(self, model: dict, data: bytes, format: str | None, path: str) -> None:
        if format != "base64":
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                if format == "text":
                    raise HTTPError(400, f"{path} is not UTF-8 encoded", reason="bad format") from None
            else:
                model.update(content=text, format="text", mimetype=model["mimetype"] or "text/plain")
                return
        model.update(
            content=base64.b64encode(data).decode("ascii"), format="base64",
            mimetype=model["mimetype"] or "application/octet-stream",
        )

    # -- saving -------------------------------------------------------------------------

    @staticmethod
    def _bytes(model: dict, path: str) -> bytes:
        format = model.get("format")
        if format not in ("text", "base64"):
            raise HTTPError(400, "Must specify format of file contents as 'text' or 'base64'")
        try:
            if format == "text":
                return model["content"].encode("utf-8")
            return base64.b64decode(model["content"].encode("ascii"))
        except Exception as exc:
            raise HTTPError(400, f"Encoding error saving {path}: {exc}") from exc

    async def save(self, model, path=""):
        path = path.strip("/")
        chunk = model.get("chunk")
        if chunk is None or chunk == 1:
            self.run_pre_save_hooks(model=model, path=path)
        if "type" not in model:
            raise HTTPError(400, "No file type provided")
        if "content" not in model and model["type"] != "directory":
            raise HTTPError(400, "No file content provided")
        roots, location = await self._locate(path)
        if location.is_top or location.is_root:
            raise HTTPError(403, f"{path or 'The top level'} cannot be written: save inside "
                            f"{' or '.join(roots.names())}")
        if not self.allow_hidden and await self.is_hidden(path) and model["type"] == "directory":
            raise HTTPError(400, f"Cannot create hidden directory {path!r}")
        cluster = self.cluster
        if chunk is not None:
            return await self._save_chunk(model, path, location, chunk)
        validation_error: dict[str, Any] = {}
        if model["type"] == "notebook":
            nb = nbformat.from_dict(model["content"])
            self.check_and_sign(nb, path)
            data = nbformat.writes(nb, version=nbformat.NO_CONVERT,
                                   capture_validation_error=validation_error).encode("utf-8")
            await self._remote(cluster.write_atomic(location, data, NEW_FILE_MODE.get()), path)
            if not await self.checkpoints.list_checkpoints(path):
                await self.create_checkpoint(path)
        elif model["type"] == "file":
            await self._remote(cluster.write_atomic(location, self._bytes(model, path), NEW_FILE_MODE.get()), path)
        elif model["type"] == "directory":
            await self._remote(cluster.mkdir(location), path)
        else:
            raise HTTPError(400, f"Unhandled contents type: {model['type']}")
        message = None
        if model["type"] == "notebook":
            self.validate_notebook_model(model, validation_error=validation_error)
            message = model.get("message")
        saved = await self.get(path, content=False)
        if message:
            saved["message"] = message
        self.run_post_save_hooks(model=saved, os_path=location.remote)
        self.emit(data={"action": "save", "path": path})
        return saved

    async def _save_chunk(self, model: dict, path: str, location: Location, chunk: int) -> dict:
        if model["type"] != "file":
            raise HTTPError(400, f'File type "{model["type"]}" is not supported for large file transfer')
        data = self._bytes(model, path)
        upload = await self._remote(self.cluster.write_chunk(location, data, chunk), path)
        if chunk == -1:
            saved = await self.get(path, content=False)
            self.run_post_save_hooks(model=saved, os_path=location.remote)
        else:  # the file appears under its name only with its last chunk
            partial = Location(path, location.root, location.root_path, upload)
            saved = self._model(path, "file", await self._entry(partial))
        self.emit(data={"action": "save", "path": path})
        return saved

    # -- the rest of the API ------------------------------------------------------------

    async def delete_file(self, path):
        path = path.strip("/")
        roots, location = await self._locate(path)
        if location.is_top or location.is_root:
            raise HTTPError(400, f"Can't delete {'the top level' if location.is_top else 'a root'}: {path or '/'}")
        if not self.allow_hidden and await self.is_hidden(path):
            raise HTTPError(400, f"Cannot delete file or directory {path!r}")
        entry = await self._remote(self.cluster.lentry(location), path)
        if entry is None:
            raise HTTPError(404, f"File or directory does not exist: {path}")
        recursive = self.always_delete_dir
        if entry.kind == "directory" and not entry.link and not recursive:
            ignore = {".ipynb_checkpoints"}
            if not await self._remote(self.cluster.is_empty_dir(entry.remote, ignore), path):
                raise HTTPError(400, f"Directory {path} not empty")
            recursive = True  # only checkpoints left in it
        await self._remote(self.cluster.remove(entry, recursive), path)

    async def rename_file(self, old_path, new_path):
        old_path, new_path = old_path.strip("/"), new_path.strip("/")
        if old_path == new_path:
            return
        roots = await self.roots()
        old, new = roots.locate(old_path), roots.locate(new_path)
        for each in (old, new):
            if each.is_top or each.is_root:
                raise HTTPError(400, f"Can't rename {each.api_path or 'the top level'}: it is a root")
        if old.root != new.root:
            raise HTTPError(400, f"Cannot move {old_path} to another root ({new.root}): "
                            "download and upload it, or move it in a terminal on the cluster")
        if not self.allow_hidden and (await self.is_hidden(old_path) or await self.is_hidden(new_path)):
            raise HTTPError(400, f"Cannot rename file or directory {old_path!r}")
        source = await self._remote(self.cluster.lentry(old), old_path)
        if source is None:
            raise HTTPError(404, f"File or directory does not exist: {old_path}")
        if await self._remote(self.cluster.lentry(new), new_path) is not None:
            raise HTTPError(409, f"File already exists: {new_path}")
        await self._remote(self.cluster.rename(old.remote, new.remote), old_path)

    async def copy(self, from_path, to_path=None):
        """A notebook is copied as jupyter_server's base class does (read, then saved: signed,
        checkpointed). Any other file is copied on the cluster (SFTP ``copy-data`` where the
        server offers it, else streamed through in blocks), so a 2 GB file never sits in the
        server's memory; with the base class's names, through a temporary name, keeping its
        mode. A directory is copied on the cluster with FileContentsManager's names: into
        ``to_path`` if that is a folder (``name-Copy1`` if taken), else to ``to_path/name``,
        making the missing folders."""
        path = from_path.strip("/")
        roots, location = await self._locate(path)
        if location.is_top:
            raise HTTPError(400, "The top level cannot be copied")
        entry = await self._entry(location)
        if entry.kind == "file" and not path.endswith(".ipynb"):
            return await self._copy_file(roots, path, entry, to_path)
        if entry.kind != "directory":
            # The base class saves the copy as a new file: it gets the source's mode, not the umask's.
            token = NEW_FILE_MODE.set(await self._remote(self.cluster.mode_of(entry.remote), path))
            try:
                return await super().copy(from_path, to_path)
            finally:
                NEW_FILE_MODE.reset(token)
        from_dir, _, from_name = path.rpartition("/")
        to_path = from_dir if to_path is None else to_path.strip("/")
        to_name = copy_pat.sub(".", from_name)
        if await self.dir_exists(to_path):
            to_name = await self.increment_filename(to_name, to_path, insert="-Copy")
        destination = f"{to_path}/{to_name}" if to_path else to_name
        target = roots.locate(destination)
        if target.is_top or target.is_root:
            raise HTTPError(403, f"{destination} cannot be written: copy inside {' or '.join(roots.names())}")
        limit = self.max_copy_folder_size_mb * 1024 * 1024
        size, modes = await self._remote(self.cluster.tree(entry.remote, limit), path)
        if size > limit:
            raise HTTPError(400, f"{path} is larger than the {self.max_copy_folder_size_mb} MB a folder copy "
                            "may be (c.SFTPContentsManager.max_copy_folder_size_mb): copy it in a terminal "
                            "on the cluster")
        await self._remote(self.cluster.copy_tree(entry.remote, target, modes), destination)
        model = await self.get(destination, content=False)
        self.emit(data={"action": "copy", "path": destination, "source_path": from_path})
        return model

    async def _copy_file(self, roots: Roots, path: str, entry: Entry, to_path: str | None) -> dict:
        """The base class's names (``AsyncContentsManager.copy``), the bytes copied on the cluster."""
        from_dir, _, from_name = path.rpartition("/")
        specified = to_path is not None
        to_path = from_dir if to_path is None else to_path.strip("/")
        if await self.dir_exists(to_path):
            to_name = await self.increment_filename(copy_pat.sub(".", from_name), to_path, insert="-Copy")
            to_path = f"{to_path}/{to_name}" if to_path else to_name
        elif not specified:
            raise HTTPError(404, f"No such directory: {to_path}")
        elif "/" in to_path and not await self.dir_exists(to_path.rsplit("/", 1)[0]):
            raise HTTPError(404, f"No such parent directory: {to_path.rsplit('/', 1)[0]} to copy file in")
        target = roots.locate(to_path)
        if target.is_top or target.is_root:
            raise HTTPError(403, f"{to_path} cannot be written: copy inside {' or '.join(roots.names())}")
        if not self.allow_hidden and await self.is_hidden(to_path):
            raise HTTPError(400, f"Cannot copy to hidden file {to_path!r}")
        await self._remote(self.cluster.copy_file(entry.remote, target), to_path)
        model = await self.get(to_path, content=False)
        self.emit(data={"action": "copy", "path": to_path, "source_path": path})
        return model

    async def _exists_as(self, path: str, kind: str) -> bool:
        roots, location = await self._locate(path.strip("/"))
        if location.is_top:
            return kind == "directory"
        try:
            entry = await self._entry(location)
        except HTTPError as exc:
            if exc.status_code in (404, 403):
                return False
            raise
        return entry.kind == kind

    async def dir_exists(self, path):
        return await self._exists_as(path, "directory")

    async def file_exists(self, path=""):
        return await self._exists_as(path, "file")

    async def is_hidden(self, path):
        """A name starting with a dot anywhere in the path, as on the cluster's shells."""
        return any(part.startswith(".") for part in path.strip("/").split("/") if part not in ("", ".", ".."))

    async def stream(self, path: str) -> tuple[dict[str, Any], AsyncIterator[bytes]]:
        """A file's model (no content) and its bytes in ``download_chunk_size`` pieces, each
        read from the cluster only once the one before it was taken."""
        path = path.strip("/")
        roots, location = await self._locate(path)
        if location.is_top:
            raise HTTPError(400, "The top level is a directory")
        entry = await self._entry(location)
        if entry.kind != "file":
            raise HTTPError(400, f"{path} is not a file", reason="bad type")
        model = self._model(path, self._kind(entry, path), entry)
        handle = await self._remote(self.cluster.open_for_streaming(entry.remote), path)
        size = self.download_chunk_size

        async def chunks() -> AsyncIterator[bytes]:
            try:
                while True:
                    data = await self._remote(handle.read(size), path)
                    if not data:
                        return
                    yield data
            finally:
                try:
                    await run_in_ssh_loop(handle.close())
                except Exception:  # the connection may be gone; the handle goes with it
                    pass

        return model, chunks()

    def info_string(self) -> str:
        return f"Serving the files of {self._site.display_name} over SFTP (roots: {', '.join(self._site.roots)})"
