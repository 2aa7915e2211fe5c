"""The cluster side of the contents manager: SFTP on the pooled connection, in the SSH loop.

Every coroutine of :class:`ClusterFiles` runs in the SSH loop (the manager carries it there
with ``run_in_ssh_loop``) and uses the connection's one shared SFTP client, so a click in the
file browser costs SFTP requests on an open channel, never a login or a new session.

A directory is one ``readdir``: OpenSSH returns each entry's ``lstat`` attributes with its
name, so a listing of 10,000 files makes no request per file. Only symlinks cost one ``stat``
each, to tell a link to a folder from a link to a file.

Writes never touch the file they replace until the new bytes are complete: they go to a
hidden name beside it, then ``posix-rename@openssh.com`` moves them over it in one step. A
connection lost mid-save leaves the old file as it was.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import posixpath
import secrets
import stat
from collections.abc import AsyncIterator
from ..ssh.quiet_import import asyncssh
from tornado.web import HTTPError

from ..errors import HPCError, SSHConnectError
from ..ssh import SSHTarget, get_pool
from .readdir import read_directory
from .roots import Location, Roots, expand

log = logging.getLogger("jupyter_hpc.contents")

MARKER = "jupyter-hpc-environment"
# One round trip tells who we are on the cluster and what its login environment sets. A login
# shell (-l) because sites set $SCRATCH and friends in /etc/profile.d; the marker skips
# whatever a profile prints first.
ENVIRONMENT_SCRIPT = f"printf '%s\\n' {MARKER}; id -u; id -G; env -0"

UNREACHABLE = (
    SSHConnectError, asyncssh.Error, asyncssh.SFTPConnectionLost, asyncssh.SFTPNoConnection,
    ConnectionError, EOFError, OSError, asyncio.TimeoutError,
)


@dataclasses.dataclass
class Entry:
    """What a listing or a ``stat`` says about one remote path."""

    name: str
    remote: str
    kind: str  # "directory", "file" or "other"
    size: int | None
    mtime: float
    writable: bool
    link: bool = False


@dataclasses.dataclass(frozen=True)
class Identity:
    uid: int
    gids: frozenset[int]

    def can_write(self, attrs: asyncssh.SFTPAttrs) -> bool:
        """Write permission as the remote kernel would see it, from the mode bits alone (no
        ACLs: the server has the last word, and a refused write is a 403 naming the path)."""
        mode = attrs.permissions or 0
        if self.uid == 0:
            return True
        if attrs.uid == self.uid:
            return bool(mode & stat.S_IWUSR)
        if attrs.gid in self.gids:
            return bool(mode & stat.S_IWGRP)
        return bool(mode & stat.S_IWOTH)


_KINDS = {stat.S_IFDIR: "directory", stat.S_IFREG: "file"}


def kind_of(attrs: asyncssh.SFTPAttrs) -> str:
    mode = attrs.permissions or 0
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


def translate(exc: BaseException, api_path: str, site: str) -> BaseException:
    """The HTTP error a user should read for a failure on the cluster."""
    if isinstance(exc, HTTPError):
        return exc
    shown = api_path or "/"
    if isinstance(exc, (asyncssh.SFTPNoSuchFile, asyncssh.SFTPNoSuchPath)):
        return HTTPError(404, f"No such file or directory: {shown}")
    if isinstance(exc, (asyncssh.SFTPPermissionDenied, asyncssh.SFTPWriteProtect)):
        return HTTPError(403, f"Permission denied: {shown} (on {site})")
    if isinstance(exc, (asyncssh.SFTPNoSpaceOnFilesystem, asyncssh.SFTPQuotaExceeded)):
        return HTTPError(507, f"No space left for {shown} on {site}: {exc.reason}")
    if isinstance(exc, asyncssh.SFTPError) and not isinstance(
        exc, (asyncssh.SFTPConnectionLost, asyncssh.SFTPNoConnection)
    ):
        return HTTPError(400, f"{site} refused the operation on {shown}: {exc.reason}")
    if isinstance(exc, UNREACHABLE):
        reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        if isinstance(exc, HPCError):
            reason = exc.message
        return HTTPError(
            503,
            f"The cluster {site} cannot be reached, so {shown} is not available right now "
            f"({reason}). Nothing was changed there by this request; the server reconnects "
            "at the next request: try again in a moment.",
        )
    return exc


class ClusterFiles:
    """One site's files, as the contents manager needs them. Coroutines run in the SSH loop."""

    def __init__(self, target: SSHTarget, roots: dict[str, str], site: str, follow_links_out: bool = False) -> None:
        self.target = target
        self.follow_links_out = follow_links_out
        self.root_expressions = dict(roots)
        self.site = site
        self._resolved: tuple[Roots, Identity] | None = None
        self._resolving: asyncio.Task | None = None

    async def sftp(self) -> asyncssh.SFTPClient:
        connection = await get_pool().connect(self.target)
        return await connection.shared_sftp()

    # -- roots --------------------------------------------------------------------------

    async def resolve(self) -> tuple[Roots, Identity]:
        """The roots as real paths and who we are, asked of the cluster once (concurrent
        first requests share the one ask; a failure is not kept, the next request asks again)."""
        if self._resolved is not None:
            return self._resolved
        if self._resolving is None or self._resolving.done():
            self._resolving = asyncio.ensure_future(self._resolve())
        self._resolved = await asyncio.shield(self._resolving)
        return self._resolved

    async def _resolve(self) -> tuple[Roots, Identity]:
        connection = await get_pool().connect(self.target)
        result = await connection.run(["sh", "-lc", ENVIRONMENT_SCRIPT], timeout=60)
        output = str(result.stdout)
        _, _, after = output.rpartition(MARKER + "\n")
        uid_line, gids_line, environment_text = (after.split("\n", 2) + ["", ""])[:3]
        environment = dict(
            item.split("=", 1) for item in environment_text.split("\0") if "=" in item
        )
        identity = Identity(int(uid_line), frozenset(int(g) for g in gids_line.split()))
        sftp = await connection.shared_sftp()
        paths: dict[str, str] = {}
        for name, expression in self.root_expressions.items():
            try:
                paths[name] = await sftp.realpath(expand(name, expression, environment))
            except HPCError as exc:
                log.warning("Site %s: %s The root is not shown.", self.site, exc)
            except asyncssh.SFTPError as exc:
                log.warning("Site %s: the root %r (%s) does not exist on the cluster (%s); not shown.",
                            self.site, name, expression, exc.reason)
        log.info("Site %s: file roots %s", self.site, paths)
        return Roots(paths), identity

    # -- looking ------------------------------------------------------------------------

    def _entry(self, name: str, remote: str, attrs: asyncssh.SFTPAttrs, identity: Identity, link=False) -> Entry:
        kind = kind_of(attrs)
        return Entry(
            name=name, remote=remote, kind=kind,
            size=attrs.size if kind == "file" else None,
            mtime=float(attrs.mtime or 0), writable=identity.can_write(attrs), link=link,
        )

    async def inside(self, location: Location) -> str:
        """The real path of ``location``, refused (403) when a symlink leads it out of its root."""
        sftp = await self.sftp()
        real = await sftp.realpath(location.remote)
        if not self.follow_links_out and not Roots.contains(location, real):
            raise HTTPError(
                403, f"{location.api_path} is a link to {real}, outside {location.root or 'the home'}: not followed"
            )
        return real

    async def entry(self, location: Location) -> Entry:
        """``stat`` (through links) and ``realpath`` together, in one round trip."""
        roots, identity = await self.resolve()
        sftp = await self.sftp()
        attrs, real = await asyncio.gather(sftp.stat(location.remote), self.inside(location))
        return self._entry(posixpath.basename(location.remote), real, attrs, identity)

    async def lentry(self, location: Location) -> Entry | None:
        """``lstat``: the path itself (a link as a link), None when missing. Its parent must be inside."""
        roots, identity = await self.resolve()
        sftp = await self.sftp()
        parent = dataclasses.replace(location, remote=posixpath.dirname(location.remote))
        if location.is_root:
            parent = location
        try:
            attrs, _ = await asyncio.gather(sftp.lstat(location.remote), self.inside(parent))
        except asyncssh.SFTPNoSuchFile:
            await self.inside(parent)
            return None
        return self._entry(posixpath.basename(location.remote), location.remote, attrs, identity,
                           link=stat.S_ISLNK(attrs.permissions or 0))

    async def listing(self, location: Location) -> list[Entry]:
        """One pipelined ``readdir`` with attributes (:mod:`.readdir`); a ``stat`` only for
        each symlink."""
        roots, identity = await self.resolve()
        sftp = await self.sftp()
        directory = await self.inside(location)
        listed = await read_directory(sftp, directory.encode())
        entries: list[Entry] = []
        links: list[tuple[str, str]] = []
        uid, gids, root = identity.uid, identity.gids, identity.uid == 0
        base = location.remote.rstrip("/") + "/"
        for filename, size, owner, group, mode, mtime in listed:
            try:
                name = filename.decode()
            except UnicodeDecodeError:
                log.warning("Skipping a name in %s that is not UTF-8: %r", directory, filename)
                continue
            if name == "." or name == "..":
                continue
            mode = mode or 0
            kind = _KINDS.get(mode & 0o170000)
            if kind is None:
                if stat.S_ISLNK(mode):
                    links.append((name, base + name))
                    continue
                kind = "other"
            if root:
                writable = True
            elif owner == uid:
                writable = bool(mode & 0o200)
            elif group in gids:
                writable = bool(mode & 0o020)
            else:
                writable = bool(mode & 0o002)
            entries.append(Entry(name, base + name, kind, size if kind == "file" else None,
                                 float(mtime or 0), writable))
        if links:
            found = await asyncio.gather(*(sftp.stat(remote) for _, remote in links), return_exceptions=True)
            for (name, remote), attrs in zip(links, found):
                if isinstance(attrs, asyncssh.SFTPAttrs):
                    entries.append(self._entry(name, remote, attrs, identity, link=True))
                elif not isinstance(attrs, asyncssh.SFTPError):
                    raise attrs
        return entries

    async def is_empty_dir(self, remote: str, ignore: set[str]) -> bool:
        sftp = await self.sftp()
        async for item in sftp.scandir(remote.encode()):
            if item.filename not in (b".", b"..") and item.filename.decode(errors="replace") not in ignore:
                return False
        return True

    # -- reading ------------------------------------------------------------------------

    async def read(self, remote: str) -> bytes:
        sftp = await self.sftp()
        async with sftp.open(remote, "rb") as handle:
            return await handle.read()

    async def open_for_streaming(self, remote: str) -> asyncssh.SFTPClientFile:
        sftp = await self.sftp()
        return await sftp.open(remote, "rb")

    # -- writing ------------------------------------------------------------------------

    def _beside(self, real: str, suffix: str) -> str:
        return posixpath.join(posixpath.dirname(real), f".~{posixpath.basename(real)}.{suffix}")

    async def writable_target(self, location: Location) -> tuple[str, int | None]:
        """Where a save of ``location`` lands (through a link, to its real file) and the mode
        to keep; 403 when the file is there and not ours to write, 404 without a parent folder."""
        roots, identity = await self.resolve()
        sftp = await self.sftp()
        try:
            attrs, real = await asyncio.gather(sftp.stat(location.remote), self.inside(location))
        except asyncssh.SFTPNoSuchFile:
            parent = dataclasses.replace(location, remote=posixpath.dirname(location.remote))
            real_parent = await self.inside(parent)
            if kind_of(await sftp.stat(real_parent)) != "directory":
                raise HTTPError(400, f"Not a directory: {posixpath.dirname(location.api_path)}") from None
            return posixpath.join(real_parent, posixpath.basename(location.remote)), None
        if kind_of(attrs) != "file":
            raise HTTPError(400, f"{location.api_path} is a directory, not a file")
        if not identity.can_write(attrs):
            raise HTTPError(403, f"Permission denied: {location.api_path} (on {self.site})")
        return real, stat.S_IMODE(attrs.permissions or 0o644)

    async def write_atomic(self, location: Location, data: bytes) -> None:
        """The bytes go to a hidden name beside the file, then are renamed over it in one step."""
        real, mode = await self.writable_target(location)
        temporary = self._beside(real, f"{secrets.token_hex(4)}.jupyter-save")
        sftp = await self.sftp()
        try:
            await self._write(sftp, temporary, data, "wb", mode)
            await self._replace(sftp, temporary, real)
        except BaseException:
            await self._discard(temporary)
            raise

    async def copy_file(self, source: str, location: Location) -> None:
        """``source`` (a real file) copied over SFTP to a hidden name beside ``location``, given
        the source's mode, then renamed over it in one step (as a save)."""
        real, _ = await self.writable_target(location)
        temporary = self._beside(real, f"{secrets.token_hex(4)}.jupyter-copy")
        sftp = await self.sftp()
        try:
            async with sftp.open(temporary, "wb", asyncssh.SFTPAttrs(permissions=0o600)):
                pass  # created private: nobody else opens it before its mode is set
            mode = stat.S_IMODE((await sftp.stat(source)).permissions or 0o644)
            await sftp.copy(source, temporary)
            await sftp.chmod(temporary, mode)
            await self._replace(sftp, temporary, real)
        except BaseException:
            await self._discard(temporary)
            raise

    async def write_chunk(self, location: Location, data: bytes, chunk: int) -> str:
        """A chunk of JupyterLab's upload: 1 starts a hidden upload file beside the target,
        later ones append to it, and -1 appends the last and renames it over the target.
        Nothing is kept between chunks but that file. Returns the upload file's path."""
        real, mode = await self.writable_target(location)
        upload = self._beside(real, "jupyter-upload")
        sftp = await self.sftp()
        await self._write(sftp, upload, data, "wb" if chunk == 1 else "ab", mode if chunk == -1 else None)
        if chunk == -1:
            await self._replace(sftp, upload, real)
        return upload

    @staticmethod
    async def _write(sftp: asyncssh.SFTPClient, path: str, data: bytes, how: str, mode: int | None) -> None:
        async with sftp.open(path, how) as handle:
            if data:
                await handle.write(data, None if how == "ab" else 0)
            if mode is not None:
                await handle.chmod(mode)

    async def _replace(self, sftp: asyncssh.SFTPClient, source: str, destination: str) -> None:
        try:
            await sftp.posix_rename(source, destination)
        except asyncssh.SFTPOpUnsupported:  # plain SFTP v3 rename refuses an existing destination
            log.warning("%s has no posix-rename: replacing %s in two steps", self.site, destination)
            try:
                await sftp.rename(source, destination)
            except asyncssh.SFTPFailure:
                await sftp.remove(destination)
                await sftp.rename(source, destination)

    async def _discard(self, path: str) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self._remove_quietly(path)), 5)
        except (asyncio.TimeoutError, *UNREACHABLE):
            pass

    async def _remove_quietly(self, path: str) -> None:
        try:
            await (await self.sftp()).remove(path)
        except (asyncssh.SFTPError, *UNREACHABLE):
            pass

    async def mkdir(self, location: Location) -> None:
        sftp = await self.sftp()
        parent = dataclasses.replace(location, remote=posixpath.dirname(location.remote))
        real_parent = await self.inside(parent)
        try:
            await sftp.mkdir(posixpath.join(real_parent, posixpath.basename(location.remote)))
        except asyncssh.SFTPFailure:
            if kind_of(await sftp.stat(location.remote)) != "directory":
                raise HTTPError(400, f"Not a directory: {location.api_path}") from None

    async def remove(self, entry: Entry, recursive: bool) -> None:
        sftp = await self.sftp()
        if entry.kind == "directory" and not entry.link:
            if recursive:
                await sftp.rmtree(entry.remote)
            else:
                await sftp.rmdir(entry.remote)
        else:
            await sftp.remove(entry.remote)

    async def tree(self, remote: str, limit: int) -> tuple[int, list[tuple[bytes, int]]]:
        """The sum of the file sizes under ``remote`` (links not followed), and the mode of each
        folder and file by its path relative to ``remote``; one ``readdir`` per folder. The walk
        stops as soon as the sum passes ``limit``."""
        sftp = await self.sftp()
        total, modes, folders = 0, [], [b""]
        top = remote.encode()
        while folders and total <= limit:
            folder = folders.pop()
            for item in await read_directory(sftp, posixpath.join(top, folder) if folder else top):
                if item.filename in (b".", b".."):
                    continue
                mode = item.permissions or 0
                relative = posixpath.join(folder, item.filename) if folder else item.filename
                if stat.S_ISDIR(mode):
                    folders.append(relative)
                    modes.append((relative, stat.S_IMODE(mode)))
                elif stat.S_ISREG(mode):
                    total += item.size or 0
                    modes.append((relative, stat.S_IMODE(mode)))
        return total, modes

    async def copy_tree(self, source: str, location: Location, modes: list[tuple[bytes, int]]) -> None:
        """``source`` (a real directory) copied to ``location``; its missing parents are made,
        after checking that the nearest existing one is inside the root. Links inside are
        copied as links, never followed. Each folder and file gets its original's mode
        (``modes``, from :meth:`tree`: a script stays executable, a private file private), as
        ``shutil.copytree`` keeps them. The copy is made inside a hidden 0700 folder beside the
        target, so nobody else can open a file before its mode is set, and renamed into place
        when whole: a copy that fails halfway leaves nothing under the target's name. Nothing
        is replaced: an existing target is a 409."""
        sftp = await self.sftp()
        if await sftp.exists(location.remote):
            raise HTTPError(409, f"File already exists: {location.api_path}")
        parent = posixpath.dirname(location.remote)
        existing = parent
        while not await sftp.exists(existing):
            existing = posixpath.dirname(existing)
        real = await self.inside(dataclasses.replace(location, remote=existing))
        missing = posixpath.relpath(parent, existing)
        real_parent = real if missing == "." else posixpath.join(real, missing)
        if real_parent == source or real_parent.startswith(source.rstrip("/") + "/"):
            raise HTTPError(400, f"Cannot copy a folder into itself: {location.api_path}")
        if missing != ".":
            await sftp.makedirs(real_parent, exist_ok=True)
        name = posixpath.basename(location.remote)
        staging = posixpath.join(real_parent, f".~{name}.{secrets.token_hex(4)}.jupyter-copy")
        await sftp.mkdir(staging, asyncssh.SFTPAttrs(permissions=0o700))
        try:
            await sftp.chmod(staging, 0o700)  # whatever the umask made of it
            copied = posixpath.join(staging, name)
            await sftp.copy(source, copied, recurse=True, follow_symlinks=False)
            base = copied.encode()
            # Deepest first: a folder without x for its owner would stop its files' chmod.
            ordered = sorted(modes, key=lambda item: item[0].count(b"/"), reverse=True)
            for start in range(0, len(ordered), 64):
                await asyncio.gather(*(sftp.chmod(posixpath.join(base, relative), mode)
                                       for relative, mode in ordered[start:start + 64]))
            await sftp.chmod(copied, stat.S_IMODE((await sftp.stat(source)).permissions or 0o755))
            await sftp.rename(copied, posixpath.join(real_parent, name))
        finally:
            try:
                await sftp.rmtree(staging)
            except (asyncssh.SFTPError, *UNREACHABLE):
                log.warning("%s: could not remove the copy's staging folder %s", self.site, staging)

    async def rename(self, old: str, new: str) -> None:
        await (await self.sftp()).rename(old, new)

    async def chunks(self, handle: asyncssh.SFTPClientFile, size: int) -> AsyncIterator[bytes]:
        while True:
            data = await handle.read(size)
            if not data:
                return
            yield data
