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

That hidden name is where a neighbour on a shared folder would attack (a symlink planted at
it, so our bytes land in a file of theirs, or overwrite one of ours): so it is unpredictable
(128 random bits; an upload's, which later chunks must find again, a keyed hash of the
target's path), and the file is created with ``O_CREAT|O_EXCL`` (SFTP ``FXF_CREAT|FXF_EXCL``),
which fails on anything already there, a dangling symlink included, and mode 0600 from birth.
Its final mode (the replaced file's, a copy's source's, or the login's umask for a new file)
is set on the open handle before the rename, so nobody else can read it at any moment.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
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
ENVIRONMENT_SCRIPT = f"printf '%s\\n' {MARKER}; id -u; id -G; umask; env -0"
# A new file, 0600 from birth; fails if the name exists, even as a symlink. (Integer flags open in
# text mode unless encoding=None is given.)
CREATE_NEW = asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_EXCL
PRIVATE = asyncssh.SFTPAttrs(permissions=0o600)
COPY_BLOCK = 1024 * 1024

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
    umask: int = 0o022

    @property
    def new_file_mode(self) -> int:
        """The mode a new file gets, as the user's login shell would make it."""
        return 0o666 & ~self.umask

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
        # Names an upload's hidden file: the same for each chunk, unguessable by anyone else.
        self._upload_key = secrets.token_bytes(32)

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
        uid_line, gids_line, umask_line, environment_text = (after.split("\n", 3) + ["", "", ""])[:4]
        environment = dict(
            item.split("=", 1) for item in environment_text.split("\0") if "=" in item
        )
        try:
            umask = int(umask_line.strip(), 8) & 0o777
        except ValueError:
            umask = 0o022
        identity = Identity(int(uid_line), frozenset(int(g) for g in gids_line.split()), umask)
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

    async def read(self, remote: str, limit: int | None = None) -> bytes:
        """The file's bytes; with ``limit``, at most ``limit + 1`` of them (more than ``limit``
        means too large: the caller refuses it, and a file that grew since its ``stat`` still
        never fills the server's memory)."""
        sftp = await self.sftp()
        async with sftp.open(remote, "rb") as handle:
            return await handle.read(-1 if limit is None else limit + 1)

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

    async def mode_of(self, remote: str) -> int | None:
        """The permission bits of ``remote`` (through links), None when it does not exist."""
        try:
            return stat.S_IMODE((await (await self.sftp()).stat(remote)).permissions or 0)
        except asyncssh.SFTPNoSuchFile:
            return None

    async def _final_mode(self, existing: int | None, mode: int | None) -> int:
        """``mode`` if given, else the replaced file's, else a new file's under the login's umask."""
        if mode is not None:
            return mode
        if existing is not None:
            return existing
        return (await self.resolve())[1].new_file_mode

    async def write_atomic(self, location: Location, data: bytes, mode: int | None = None) -> None:
        """The bytes go to a new private file under a random hidden name beside the file, which
        gets its final mode (``mode``, else the replaced file's) and is renamed over it in one step."""
        real, existing = await self.writable_target(location)
        final = await self._final_mode(existing, mode)
        temporary = self._beside(real, f"{secrets.token_hex(16)}.jupyter-save")
        sftp = await self.sftp()
        try:
            async with sftp.open(temporary, CREATE_NEW, PRIVATE, encoding=None) as handle:
                if data:
                    await handle.write(data, 0)
                await handle.chmod(final)
            await self._replace(sftp, temporary, real)
        except BaseException:
            await self._discard(temporary)
            raise

    async def copy_file(self, source: str, location: Location) -> None:
        """``source`` (a real file) copied on the cluster (SFTP ``copy-data`` where offered, else
        in blocks through this server) into a new private file beside ``location``, which gets
        the source's mode and is renamed over it in one step (as a save)."""
        real, _ = await self.writable_target(location)
        temporary = self._beside(real, f"{secrets.token_hex(16)}.jupyter-copy")
        sftp = await self.sftp()
        try:
            async with sftp.open(source, "rb", block_size=0) as reader, \
                    sftp.open(temporary, CREATE_NEW, PRIVATE, block_size=0, encoding=None) as writer:
                mode = stat.S_IMODE((await reader.stat()).permissions or 0o644)
                try:
                    await sftp.remote_copy(reader, writer)
                except asyncssh.SFTPOpUnsupported:
                    offset = 0
                    while block := await reader.read(COPY_BLOCK, offset):
                        await writer.write(block, offset)
                        offset += len(block)
                await writer.chmod(mode)
            await self._replace(sftp, temporary, real)
        except BaseException:
            await self._discard(temporary)
            raise

    def upload_path(self, real: str) -> str:
        """The hidden file an upload to ``real`` grows in: the same name for every chunk of it,
        one nobody without this server's key can predict (or plant a link at in advance)."""
        tag = hmac.new(self._upload_key, real.encode(), hashlib.sha256).hexdigest()[:32]
        return self._beside(real, f"{tag}.jupyter-upload")

    async def write_chunk(self, location: Location, data: bytes, chunk: int) -> str:
        """A chunk of JupyterLab's upload: 1 starts a new private upload file beside the target
        (removing a stale one of an abandoned upload), later ones append to it after checking
        it is still our own regular file, and -1 appends the last, sets the final mode and
        renames it over the target. Nothing is kept between chunks but that file. Returns the
        upload file's path."""
        real, existing = await self.writable_target(location)
        upload = self.upload_path(real)
        sftp = await self.sftp()
        if chunk == 1:
            await self._remove_quietly(upload)  # an abandoned upload's file (a link is removed, not followed)
            handle = await sftp.open(upload, CREATE_NEW, PRIVATE, encoding=None)
        else:
            try:
                handle = await sftp.open(upload, asyncssh.FXF_WRITE | asyncssh.FXF_APPEND, encoding=None)
            except asyncssh.SFTPNoSuchFile:
                raise HTTPError(409, f"The upload of {location.api_path} was interrupted (its partial file is "
                                     "gone, e.g. after a server restart); upload it again.") from None
        async with handle:
            if chunk != 1:
                await self._check_own_file(handle, location)
            if data:
                await handle.write(data, 0 if chunk == 1 else None)
            if chunk == -1:
                await handle.chmod(await self._final_mode(existing, None))
        if chunk == -1:
            await self._replace(sftp, upload, real)
        return upload

    async def _check_own_file(self, handle: asyncssh.SFTPClientFile, location: Location) -> None:
        """Refuse to go on writing an upload whose file is no longer a regular file of ours."""
        attrs = await handle.stat()
        if not stat.S_ISREG(attrs.permissions or 0) or attrs.uid != (await self.resolve())[1].uid:
            raise HTTPError(409, f"The upload of {location.api_path} was tampered with; upload it again.")

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
        staging = posixpath.join(real_parent, f".~{name}.{secrets.token_hex(16)}.jupyter-copy")
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
