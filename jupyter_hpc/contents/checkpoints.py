"""Checkpoints on the cluster, beside the file, as jupyter_server keeps them locally.

``nb.ipynb`` in a folder has its one checkpoint at ``.ipynb_checkpoints/nb-checkpoint.ipynb``
in that folder, so "Revert to checkpoint" works the same from a login-node shell, from any
server, and after the hub moves the user's server elsewhere: nothing is kept on the server host.
The generic mixin does the reading and restoring through the contents manager; this class only
says where a checkpoint lives and moves its bytes.
"""

from __future__ import annotations

import base64
import posixpath
from typing import Any

import nbformat
from jupyter_server.services.contents.checkpoints import AsyncCheckpoints, AsyncGenericCheckpointsMixin
from tornado.web import HTTPError
from traitlets import Unicode


CHECKPOINT_ID = "checkpoint"


class SFTPCheckpoints(AsyncGenericCheckpointsMixin, AsyncCheckpoints):
    """One checkpoint per file, in a hidden folder beside it on the cluster."""

    checkpoint_dir = Unicode(
        ".ipynb_checkpoints", config=True,
        help="The folder, beside each file, that holds its checkpoint (as jupyter_server's FileCheckpoints).",
    )

    @property
    def manager(self) -> Any:
        return self.parent

    def checkpoint_path(self, checkpoint_id: str, path: str) -> str:
        """The API path of ``path``'s checkpoint: ``dir/.ipynb_checkpoints/name-checkpoint.ext``."""
        parent, _, name = path.strip("/").rpartition("/")
        stem, dot, ext = name.rpartition(".")
        if not dot:
            stem, ext = name, ""
        return posixpath.join(parent, self.checkpoint_dir, f"{stem}-{checkpoint_id}{dot}{ext}")

    async def _location(self, path: str):
        roots = await self.manager.roots()
        return roots.locate(path)

    async def _write(self, path: str, data: bytes) -> dict[str, Any]:
        cp_path = self.checkpoint_path(CHECKPOINT_ID, path)
        cluster = self.manager.cluster
        folder = await self._location(posixpath.dirname(cp_path))
        location = await self._location(cp_path)
        if not await self.manager._remote(cluster.lentry(folder), path):
            await self.manager._remote(cluster.mkdir(folder), path)
        # The checkpoint is as private as its file: a 0600 notebook's checkpoint is 0600.
        source = await self._location(path)
        mode = await self.manager._remote(cluster.mode_of(source.remote), path)
        await self.manager._remote(cluster.write_atomic(location, data, mode), path)
        return await self._model(location, path)

    async def _model(self, location, path: str) -> dict[str, Any]:
        entry = await self.manager._entry(location)
        return {"id": CHECKPOINT_ID, "last_modified": self.manager._model(path, "file", entry)["last_modified"]}

    async def _read(self, checkpoint_id: str, path: str) -> bytes:
        location = await self._location(self.checkpoint_path(checkpoint_id, path))
        cluster = self.manager.cluster
        try:
            return await self.manager.read_capped(location.remote, path, None)
        except HTTPError as exc:
            if exc.status_code == 404:
                raise HTTPError(404, f"Checkpoint does not exist: {path}@{checkpoint_id}") from exc
            raise

    async def create_file_checkpoint(self, content, format, path):
        data = content.encode("utf-8") if format == "text" else base64.b64decode(content)
        return await self._write(path, data)

    async def create_notebook_checkpoint(self, nb, path):
        return await self._write(path, nbformat.writes(nb, version=nbformat.NO_CONVERT).encode("utf-8"))

    async def get_file_checkpoint(self, checkpoint_id, path):
        data = await self._read(checkpoint_id, path)
        try:
            return {"type": "file", "content": data.decode("utf-8"), "format": "text"}
        except UnicodeDecodeError:
            return {"type": "file", "content": base64.b64encode(data).decode("ascii"), "format": "base64"}

    async def get_notebook_checkpoint(self, checkpoint_id, path):
        data = await self._read(checkpoint_id, path)
        return {"type": "notebook", "content": nbformat.reads(data.decode("utf-8"), as_version=4)}

    async def list_checkpoints(self, path):
        location = await self._location(self.checkpoint_path(CHECKPOINT_ID, path))
        entry = await self.manager._remote(self.manager.cluster.lentry(location), path)
        if entry is None or entry.kind != "file":
            return []
        return [{"id": CHECKPOINT_ID, "last_modified": self.manager._model(path, "file", entry)["last_modified"]}]

    async def delete_checkpoint(self, checkpoint_id, path):
        location = await self._location(self.checkpoint_path(checkpoint_id, path))
        cluster = self.manager.cluster
        entry = await self.manager._remote(cluster.lentry(location), path)
        if entry is None:
            raise HTTPError(404, f"Checkpoint does not exist: {path}@{checkpoint_id}")
        await self.manager._remote(cluster.remove(entry, False), path)

    async def rename_checkpoint(self, checkpoint_id, old_path, new_path):
        old = await self._location(self.checkpoint_path(checkpoint_id, old_path))
        new_cp = self.checkpoint_path(checkpoint_id, new_path)
        new = await self._location(new_cp)
        cluster = self.manager.cluster
        if await self.manager._remote(cluster.lentry(old), old_path) is None:
            return
        folder = await self._location(posixpath.dirname(new_cp))
        if not await self.manager._remote(cluster.lentry(folder), new_path):
            await self.manager._remote(cluster.mkdir(folder), new_path)
        await self.manager._remote(cluster.rename(old.remote, new.remote), old_path)


__all__ = ["SFTPCheckpoints"]
