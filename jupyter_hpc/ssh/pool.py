"""One SSH connection per (credential, host, port, user, jump host), shared by every kernel.

Kernel starts after the first pay no key exchange, and a site sees one login per user rather
than one per kernel. Concurrent first use awaits one shared connect per key, so ten kernels
started at once still open a single connection. Everything here runs in the SSH loop
(:mod:`jupyter_hpc.ssh.loop`).

Each kernel holds one session channel (its launcher) for its lifetime, and OpenSSH allows
``MaxSessions`` of those per connection, 10 unless the site changed it. When the server
refuses another session, the connection opens a sibling (one more login, same credential)
and starts the session there; forwards, which are not sessions, stay on the connection of
the kernel they serve. So the eleventh kernel, or a ``%squeue`` beside ten kernels, works.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import shlex
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from .quiet_import import asyncssh

from ..errors import HostKeyError, PTYRefusedError, RemoteCommandError, SSHConnectError
from .coalesce import coalesce_writes
from .forward import LocalForward, forward_local
from .ignore_packets import skip_ignore_packets
from .target import SSHTarget

log = logging.getLogger("jupyter_hpc.ssh")

S = TypeVar("S", asyncssh.SSHClientProcess, asyncssh.SFTPClient)

# A busy login node drops new connections before login (sshd's MaxStartups: 10 unauthenticated
# at once by default, then a growing share dropped), e.g. when many servers reconnect at once.
# Such a drop is retried, with growing, jittered pauses; anything else fails at once.
DROPPED = (ConnectionResetError, asyncssh.ConnectionLost)
DROP_RETRY_PAUSES = (0.2, 0.5, 1.0)


class SiteConnection:
    """A pooled asyncssh connection with the few operations the rest of jupyter_hpc needs.

    Commands are given as argv and quoted once with :func:`shlex.join` for the remote
    shell; no caller ever joins user values into a command string.
    """

    def __init__(
        self,
        target: SSHTarget,
        conn: asyncssh.SSHClientConnection,
        open_sibling: Callable[[], Awaitable["SiteConnection"]] | None = None,
    ) -> None:
        self.target = target
        self.conn = conn
        self._stream_local: bool | None = None
        self._open_sibling = open_sibling
        self._sibling: asyncio.Task[SiteConnection] | None = None
        self.sessions = 0  # session channels open here now
        self._session_limit: int | None = None  # how many were open when the server refused one
        self._overflow = False  # opened as a sibling: closed once its last session ends
        self._retired = False
        self._shared_sftp: asyncio.Task[tuple[SiteConnection, asyncssh.SFTPClient]] | None = None

    @property
    def closed(self) -> bool:
        return self._retired or self.conn.is_closed()

    async def wait_closed(self) -> None:
        await self.conn.wait_closed()

    def siblings(self) -> list["SiteConnection"]:
        """The connections opened because this one's server allowed no more sessions."""
        task = self._sibling
        if task is None or not task.done() or task.cancelled() or task.exception() is not None:
            return []
        sibling = task.result()
        return [sibling, *sibling.siblings()]

    async def _in_session(self, open_here: Callable[["SiteConnection"], Awaitable[S]]) -> tuple["SiteConnection", S]:
        """Open a session channel with ``open_here`` on this connection, or on a sibling when
        the server refuses one more. A connection with no session of ours open that refuses is
        an error of its own (a forced command, a policy) and is raised, not worked around.

        A session counts from its request (so concurrent opens see each other) until its
        channel closes. Once refused, sessions go straight to the sibling while this
        connection is as full as it was then."""
        if self._session_limit is not None and self.sessions >= self._session_limit:
            return await (await self._sibling_connection())._in_session(open_here)
        self.sessions += 1
        try:
            opened = await open_here(self)
        except asyncssh.ChannelOpenError as exc:
            self.sessions -= 1
            if self.sessions == 0 or self._open_sibling is None:
                raise
            self._session_limit = min(self.sessions, self._session_limit or self.sessions)
            log.info(
                "%s refused another session on a connection with %d (%s; sshd's MaxSessions is "
                "10 by default): opening another connection", self.target.host, self.sessions, exc.reason,
            )
        except BaseException:
            self.sessions -= 1
            raise
        else:
            asyncio.ensure_future(opened.wait_closed()).add_done_callback(self._closed_session)
            return self, opened
        return await (await self._sibling_connection())._in_session(open_here)

    async def _sibling_connection(self) -> "SiteConnection":
        task = self._sibling
        if task is not None and task.done() and (
            task.cancelled() or task.exception() is not None or task.result().closed
        ):
            task = None
        if task is None:
            task = self._sibling = asyncio.ensure_future(self._open_sibling())
        sibling = await asyncio.shield(task)
        sibling._overflow = True
        if sibling._stream_local is None:
            sibling._stream_local = self._stream_local  # same server, same answer
        return sibling

    def _closed_session(self, _: Any) -> None:
        self.sessions -= 1
        if self._overflow and self.sessions == 0:  # kept for overflow only: no idle logins
            self._retired = True
            self.conn.close()

    async def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        check: bool = True,
        timeout: float | None = None,
    ) -> asyncssh.SSHCompletedProcess:
        """Run ``argv`` on the remote; with ``check``, a non-zero exit raises with stderr."""
        command = shlex.join(argv)
        _, process = await self._in_session(lambda here: here.conn.create_process(command, input=input))
        try:
            result = await process.wait(check=False, timeout=timeout)
        finally:
            process.close()
        if check and result.exit_status != 0:
            stderr = str(result.stderr or "").strip()
            raise RemoteCommandError(
                f"{argv[0]} failed on {self.target.host} "
                f"(exit status {result.exit_status}): {stderr or 'no error output'}",
                argv=argv,
                exit_status=result.exit_status,
                stderr=stderr,
            )
        return result

    async def start(self, argv: Sequence[str], **kwargs: Any) -> tuple["SiteConnection", asyncssh.SSHClientProcess]:
        """Start ``argv`` as a long-lived remote process with pipes (e.g. the launcher).

        Returns the connection it runs on, which is a sibling of this one when this one's
        server allowed no more sessions: reach what the process serves through that one.
        """
        command = shlex.join(argv)
        return await self._in_session(lambda here: here.conn.create_process(command, **kwargs))

    async def terminal(
        self, session: asyncssh.SSHClientSession, argv: Sequence[str] | None = None, **kwargs: Any
    ) -> tuple["SiteConnection", asyncssh.SSHClientChannel]:
        """A session with a PTY (``term_type``, ``term_size`` in ``kwargs``) whose events go to
        ``session`` (its ``data_received`` gets the output as it arrives, with no reader task
        between): the user's login shell when ``argv`` is None, as ``ssh host`` gives, else
        ``argv`` (``srun --pty …``). Returns the connection and the channel (write, resize, close).

        A session past ``MaxSessions`` goes to a sibling connection as :meth:`start`'s do. A
        PTY the server refuses raises :class:`PTYRefusedError`, so it is never mistaken for a
        full connection (that refusal comes at the channel's open, this one after it)."""
        command = shlex.join(argv) if argv is not None else None

        async def open_here(here: "SiteConnection") -> asyncssh.SSHClientChannel:
            try:
                channel, _ = await here.conn.create_session(lambda: session, command, **kwargs)
                return channel
            except asyncssh.ChannelOpenError as exc:
                if exc.code == asyncssh.OPEN_REQUEST_PTY_FAILED:
                    raise PTYRefusedError(
                        f"{here.target.host} refused a terminal (PTY) for this session. The site "
                        "may forbid interactive logins from here (sshd's PermitTTY, a forced "
                        "command): ask its admins, or log in with ssh instead.",
                    ) from exc
                raise

        return await self._in_session(open_here)

    @contextlib.asynccontextmanager
    async def sftp(self) -> AsyncIterator[asyncssh.SFTPClient]:
        """An SFTP client (a session too): ``async with connection.sftp() as sftp: …``."""
        _, client = await self._in_session(lambda here: here.conn.start_sftp_client())
        try:
            yield client
        finally:
            client.exit()

    async def shared_sftp(self) -> asyncssh.SFTPClient:
        """One long-lived SFTP client on this connection, for callers of many small requests
        (the contents manager lists, stats and saves per click): a session per request would
        pay a channel open and SFTP's version exchange each time, and hold sessions against
        MaxSessions. Concurrent first callers share one open; once its channel closes (the
        connection dropped, the server ended it), the next call opens another. Never exit it."""
        task = self._shared_sftp
        if task is not None and task.done() and (task.cancelled() or task.exception() is not None):
            task = None
        if task is None:
            task = self._shared_sftp = asyncio.ensure_future(
                self._in_session(lambda here: here.conn.start_sftp_client())
            )

            def forget(_: Any, opened: asyncio.Task = task) -> None:
                if self._shared_sftp is opened:
                    self._shared_sftp = None

            def watch(done: asyncio.Task) -> None:
                if not done.cancelled() and done.exception() is None:
                    asyncio.ensure_future(done.result()[1].wait_closed()).add_done_callback(forget)

            task.add_done_callback(watch)
        _, client = await asyncio.shield(task)
        return client

    async def forward_port_to_path(self, remote_path: str, local_port: int = 0) -> LocalForward:
        """Listen on 127.0.0.1:``local_port`` and forward each connection to a remote socket."""
        return await forward_local(self.conn, listen_port=local_port, remote_path=remote_path)

    async def forward_path_to_path(self, local_path: str, remote_path: str) -> LocalForward:
        """Listen on a local Unix socket and forward each connection to a remote one."""
        return await forward_local(self.conn, listen_path=local_path, remote_path=remote_path)

    async def forward_port(self, remote_port: int, local_port: int = 0, remote_host: str = "127.0.0.1") -> LocalForward:
        """Listen on 127.0.0.1:``local_port``, forward to ``remote_host``:``remote_port`` as
        seen from the server (its own loopback by default)."""
        return await forward_local(self.conn, listen_port=local_port, remote_host=remote_host, remote_port=remote_port)

    async def forward_path_to_port(self, local_path: str, remote_port: int, remote_host: str = "127.0.0.1") -> LocalForward:
        return await forward_local(self.conn, listen_path=local_path, remote_host=remote_host, remote_port=remote_port)

    @property
    def stream_local(self) -> bool | None:
        """Whether the server forwards to Unix sockets; None until :meth:`probe_stream_local`."""
        return self._stream_local

    async def probe_stream_local(self, path: str) -> bool:
        """Try a forward to a Unix socket that is listening now; remember the answer.

        OpenSSH answers "connect failed" both when ``AllowStreamLocalForwarding no`` forbids
        it and when nothing listens at the path, so only a socket known to be listening (a
        kernel's, just bound) tells the two apart.
        """
        try:
            _reader, writer = await self.conn.open_unix_connection(path)
        except asyncssh.ChannelOpenError as exc:
            log.info("%s refuses stream-local forwarding: %s", self.target.host, exc.reason)
            self._stream_local = False
        else:
            writer.close()
            self._stream_local = True
        return self._stream_local


class ConnectionPool:
    """Shared SSH connections, opened on first use (or ahead of it) and dropped when they close."""

    def __init__(self) -> None:
        self._connecting: dict[tuple, asyncio.Task[SiteConnection]] = {}
        self._asked: set[tuple] = set()  # keys someone connected to (not only ahead of need)
        self.opened = 0

    async def connect(self, target: SSHTarget) -> SiteConnection:
        """The shared connection for ``target``, opened now or earlier (ahead or not)."""
        hop: SSHTarget | None = target
        while hop is not None:  # the jump hosts carry this connection: in use too
            self._asked.add(hop.pool_key())
            hop = hop.jump_target()
        return await self._shared(target)

    async def connect_ahead(self, target: SSHTarget, unused_lifetime: float) -> SiteConnection:
        """Open ``target``'s connection before anything needs it (a server with kernelspecs of
        a site, at its start), so the first kernel pays no key exchange. If nothing connects
        to it within ``unused_lifetime`` seconds, it is closed: no idle login is kept for a
        kernelspec nobody starts. Once used, it lives as any other pooled connection."""
        connection = await self._shared(target)
        loop = asyncio.get_running_loop()
        hop: SSHTarget | None = target
        while hop is not None:
            key = hop.pool_key()
            if key not in self._asked:
                loop.call_later(unused_lifetime, self._close_if_unasked, key)
            hop = hop.jump_target()
        return connection

    def _close_if_unasked(self, key: tuple) -> None:
        task = self._connecting.get(key)
        if key in self._asked or task is None or not task.done() or task.cancelled() or task.exception():
            return
        connection = task.result()
        if not connection.closed:  # its sessions, if any, are what was started ahead with it
            log.info("SSH connection to %s opened ahead and never used: closed", connection.target.host)
            del self._connecting[key]
            connection.conn.close()

    async def _shared(self, target: SSHTarget) -> SiteConnection:
        key = target.pool_key()
        task = self._connecting.get(key)
        if task is not None and task.done() and (task.cancelled() or task.exception() or task.result().closed):
            task = None
        if task is None:
            task = asyncio.ensure_future(self._open(target))
            self._connecting[key] = task
        try:
            return await asyncio.shield(task)
        except BaseException:
            if self._connecting.get(key) is task and task.done():
                del self._connecting[key]
            raise

    def primaries(self) -> list[SiteConnection]:
        return [
            task.result()
            for task in self._connecting.values()
            if task.done() and not task.cancelled() and not task.exception() and not task.result().closed
        ]

    async def close(self) -> None:
        for connection in self.connections():
            connection.conn.close()
        self._connecting.clear()

    def connections(self) -> list[SiteConnection]:
        """Every open connection: one per key, and the siblings they opened."""
        return [each for primary in self.primaries() for each in (primary, *primary.siblings()) if not each.closed]

    async def _open(self, target: SSHTarget) -> SiteConnection:
        tunnel = None
        jump = target.jump_target()
        if jump is not None:
            tunnel = (await self._shared(jump)).conn
        options = target.connect_options()
        where = f"{target.host} port {target.port or 22}"
        if tunnel is not None:
            options["tunnel"] = tunnel
        try:
            conn = await _connect_despite_drops(options, where)
        except DROPPED as exc:
            raise SSHConnectError(
                f"{where} dropped the connection before login, {len(DROP_RETRY_PAUSES) + 1} times "
                f"({exc or type(exc).__name__}). The login node is refusing new connections, e.g. "
                "too many logins at once (sshd's MaxStartups), or is overloaded: try again shortly.",
            ) from exc
        except asyncssh.HostKeyNotVerifiable as exc:
            raise HostKeyError(
                target.host, target.port or 22, await _offered_fingerprint(target, tunnel), target.known_hosts
            ) from exc
        except asyncssh.PermissionDenied as exc:
            raise SSHConnectError(
                f"{where} refused the login of {target.username or 'the default user'} "
                f"with the configured key: {exc.reason}. Check that the key (or certificate) "
                "is the one the site knows and has not expired.",
            ) from exc
        except ValueError as exc:  # e.g. asyncssh's SASLprep refusing a user name
            raise SSHConnectError(
                f"Cannot log in to {where} as {target.username!r}: {exc}. Check the user name.",
            ) from exc
        except (OSError, asyncio.TimeoutError, asyncssh.Error) as exc:
            reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
            raise SSHConnectError(
                f"Cannot reach {where} over SSH: {reason}. Check the host name and port, "
                "and that the site is up (try: ssh -p PORT USER@HOST).",
            ) from exc
        skip_ignore_packets(conn)
        coalesce_writes(conn)
        self.opened += 1
        log.info("SSH connection %d opened to %s as %s", self.opened, where, target.username)
        return SiteConnection(target, conn, open_sibling=lambda: self._open(target))


async def _connect_despite_drops(options: dict[str, Any], where: str) -> asyncssh.SSHClientConnection:
    for pause in DROP_RETRY_PAUSES:
        try:
            return await asyncssh.connect(**options)
        except DROPPED as exc:
            pause *= 1 + random.random()  # servers dropped together do not come back together
            log.info("%s dropped the connection before login (%s); trying again in %.1f s", where, exc, pause)
            await asyncio.sleep(pause)
    return await asyncssh.connect(**options)


async def _offered_fingerprint(target: SSHTarget, tunnel: Any) -> str:
    """The SHA256 fingerprint of the key the host offers, for the user-facing message."""
    extra = {"tunnel": tunnel} if tunnel is not None else {}
    try:
        key = await asyncio.wait_for(
            asyncssh.get_server_host_key(target.host, target.port, **extra),
            target.connect_timeout,
        )
    except (OSError, asyncssh.Error, asyncio.TimeoutError):
        return "an unknown key"
    return key.get_fingerprint("sha256") if key is not None else "no key"


_pool: ConnectionPool | None = None


def get_pool() -> ConnectionPool:
    """The process-wide pool; use it only from the SSH loop."""
    global _pool
    if _pool is None:
        _pool = ConnectionPool()
    return _pool
