"""``/files/…`` streamed from the cluster.

jupyter_server's fallback ``FilesHandler`` asks the contents manager for the whole file,
base64 and all, and writes it at once: a 2 GB download would sit in the server's memory
twice over. This handler reads the file from SFTP one ``download_chunk_size`` piece at a time
and waits for each piece to reach the client (``flush``) before reading the next, so memory
stays at about one piece per download and other requests keep being served between pieces.
"""

from __future__ import annotations

import mimetypes

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import JupyterHandler
from tornado import iostream, web


class StreamingFilesHandler(JupyterHandler):
    """Raw file contents (and ``?download=1`` attachments) from ``SFTPContentsManager``."""

    auth_resource = "contents"

    @property
    def content_security_policy(self) -> str:
        # An HTML or SVG file from the cluster must not script the server's origin.
        return super().content_security_policy + "; sandbox allow-scripts"

    def _content_type(self, name: str) -> str:
        if name.lower().endswith(".ipynb"):
            return "application/x-ipynb+json"
        kind, encoding = mimetypes.guess_type(name)
        if encoding == "gzip":
            return "application/gzip"
        if encoding is not None:
            return "application/octet-stream"
        if kind == "text/plain" or kind is None:
            return "text/plain; charset=UTF-8" if kind else "application/octet-stream"
        return kind

    async def _serve(self, path: str, include_body: bool) -> None:
        self.check_xsrf_cookie()
        manager = self.contents_manager
        if not manager.allow_hidden and await manager.is_hidden(path):
            self.log.info("Refusing to serve hidden file, via 404 Error")
            raise web.HTTPError(404)
        model, chunks = await manager.stream(path)
        name = model["name"]
        if self.get_argument("download", None):
            self.set_attachment_header(name)
        self.set_header("Content-Type", self._content_type(name))
        if model.get("size") is not None:
            self.set_header("Content-Length", str(model["size"]))
        self.set_header("Last-Modified", model["last_modified"])
        try:
            if include_body:
                async for data in chunks:
                    self.write(data)
                    await self.flush()
        except iostream.StreamClosedError:
            self.log.info("Download of %s ended by the client", path)
        finally:
            await chunks.aclose()

    @web.authenticated
    @authorized
    async def head(self, path: str) -> None:
        await self._serve(path, include_body=False)

    @web.authenticated
    @authorized
    async def get(self, path: str) -> None:
        await self._serve(path, include_body=True)
