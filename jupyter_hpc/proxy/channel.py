"""One ``direct-tcpip`` channel from the login node to ``host:port``, driven from the server's loop.

The channel lives in the SSH layer's loop (:mod:`jupyter_hpc.ssh.loop`), on the user's pooled
connection to the site, and waits for SSH's flow control, so neither direction ever holds more
than a window of data. A request or a websocket opens its own channel and closes it when it
ends, whatever happened.

In a jupyter_server the SSH layer runs in the server's own loop (``adopt_loop``): then a
request's handler drives its channel directly, with no lock, no thread hand-over and no extra
loop turn between SSH delivering the app's answer and the handler sending it on (a small
request's latency is mostly such turns). Where the SSH loop is a thread of its own
(``JUPYTER_HPC_SSH_LOOP=thread``, or a host without a running loop), reads come from a locked
inbox and everything else crosses with :func:`run_in_ssh_loop`.

Failures are :class:`ProxyConnectError` with a ``kind`` the handler turns into a page:
``refused`` (nothing listens on that port), ``unreachable`` (the login node cannot reach the
host), ``timeout`` (no answer in ``connect_timeout``), ``ssh`` (the site itself is unreachable),
``dropped`` (the SSH connection went away mid-request), ``idle`` (no byte either way in
``idle_timeout``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
from typing import Any

from ..ssh.quiet_import import asyncssh

from ..errors import HPCError
from ..ssh import SSHTarget, get_pool, run_in_ssh_loop, ssh_loop
from ..ssh.loop import in_ssh_loop

log = logging.getLogger("jupyter_hpc.proxy")

READ_SIZE = 256 * 1024  # bytes handed across loops at a time, at most
INBOX_LIMIT = 1024 * 1024  # bytes a channel's session holds before it pauses the channel


# The pooled connection each target's channels were last opened on (SSH loop only): a request
# skips the pool's lookup, whose key names the credential (a key's fingerprint, computed anew).
_connections: dict[SSHTarget, Any] = {}


async def within(awaitable, seconds: float):
    """``awaitable`` or TimeoutError after ``seconds``; without wait_for's extra task where the
    Python has ``asyncio.timeout`` (3.11+): one less loop turn per read on a request's path."""
    if hasattr(asyncio, "timeout"):
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)


class ProxyConnectError(HPCError):
    """The route could not reach (or lost) the web UI; ``kind`` says how."""

    def __init__(self, kind: str, message: str, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.kind = kind


class _ChannelSession(asyncssh.SSHTCPSession):
    """The SSH-loop end of a proxied channel: a bounded inbox its reader takes from, and a gate
    for writes.

    Arriving data is put in the inbox and wakes a waiting reader directly: a small response
    costs one wake-up, not a request and a reply per read. With ``shared`` (the reader is in
    another thread's loop) the inbox is locked and the wake-up crosses with
    ``call_soon_threadsafe``; otherwise the reader is in this loop and its future is resolved
    in place, so it runs in the very next loop turn (before, e.g., the close SSH answers with).

    asyncssh's stream API pauses and resumes its channel as its reader's buffer fills and
    drains; on each resume the channel sends SSH's window adjust for everything it has
    received, including what a re-pause during the resume leaves buffered, so a consumer slower
    than the network (a browser behind another thread's loop) lets the channel's buffer grow
    without bound: a 150 MB download held 150 MB here. This session pauses when its inbox holds
    ``limit`` bytes and, when it resumes, takes everything the channel had buffered (at most
    one window) without pausing again; so the inbox never exceeds ``limit`` plus one window.
    """

    def __init__(self, limit: int, shared: bool) -> None:
        self._limit = limit
        self._shared = shared
        # inbox, size, paused, eof: shared by the two loops when there are two
        self._lock = threading.Lock() if shared else contextlib.nullcontext()
        self._loop = asyncio.get_running_loop()  # the SSH loop, where asyncssh calls us
        self._inbox: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._paused = False
        self._resuming = False
        self._eof = False
        self._error: Exception | None = None
        self._waiter: asyncio.Future | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self._chan: asyncssh.SSHTCPChannel | None = None

    def connection_made(self, chan: asyncssh.SSHTCPChannel) -> None:
        self._chan = chan

    def _wake(self) -> None:
        """(SSH loop, lock held) Tell a waiting reader."""
        waiter, self._waiter = self._waiter, None
        if waiter is None:
            return
        if self._shared:
            waiter.get_loop().call_soon_threadsafe(_resolve, waiter)
        else:
            _resolve(waiter)

    def data_received(self, data: bytes, datatype) -> None:
        with self._lock:
            self._inbox.append(data)
            self._size += len(data)
            if self._size >= self._limit and not self._paused and not self._resuming:
                self._paused = True
                self._chan.pause_reading()
            self._wake()

    def eof_received(self) -> bool:
        with self._lock:
            self._eof = True
            self._wake()
        return True  # half open: a request body may still be on its way

    def connection_lost(self, exc: Exception | None) -> None:
        with self._lock:
            self._eof = True
            self._error = exc
            self._wake()
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def _maybe_resume(self) -> None:
        """(SSH loop) Resume a paused channel once the reader has drained the inbox enough."""
        with self._lock:
            if not self._paused or self._size >= self._limit // 2 or self._chan is None:
                return
            self._paused = False
            self._resuming = True
        try:
            self._chan.resume_reading()  # delivers the channel's buffer here, synchronously
        finally:
            with self._lock:
                self._resuming = False

    async def read(self, size: int, timeout: float) -> bytes:
        """(Reader's loop) Up to ``size`` bytes, waiting at most ``timeout`` for the first."""
        while True:
            with self._lock:
                if self._inbox or self._eof:
                    break
                self._waiter = future = asyncio.get_running_loop().create_future()
            await within(future, timeout)
        with self._lock:
            inbox = self._inbox
            if not inbox:
                if self._error is not None:
                    raise self._error
                return b""
            if len(inbox[0]) >= size or len(inbox) == 1:
                data = inbox.popleft()  # the common case: one piece, no copy
            else:
                parts, taken = [], 0
                while inbox and taken < size:
                    parts.append(inbox.popleft())
                    taken += len(parts[-1])
                data = b"".join(parts)
            before = self._size
            self._size -= len(data)
            resume = self._paused and self._size < self._limit // 2 <= before
        if resume:
            if self._shared:
                self._loop.call_soon_threadsafe(self._maybe_resume)
            else:
                self._maybe_resume()
        return data

    async def write(self, data: bytes, timeout: float) -> None:
        """(SSH loop) Send ``data``; wait (at most ``timeout``) only while SSH's buffer is full."""
        if self._error is not None or self._chan is None or self._chan.is_closing():
            raise BrokenPipeError("the channel is closed")
        self._chan.write(data)
        if not self._writable.is_set():
            await within(self._writable.wait(), timeout)
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        if self._chan is not None:
            self._chan.close()


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


class RemoteStream:
    """Bytes to and from ``host:port`` as the site's login node reaches it."""

    def __init__(self, connection, session: _ChannelSession, where: str, idle_timeout: float) -> None:
        self._connection = connection
        self._session = session
        self._local = not session._shared  # driven from the SSH loop itself
        self.where = where
        self.idle_timeout = idle_timeout
        self.closed = False

    @classmethod
    async def open(cls, target: SSHTarget, host: str, port: int, *, connect_timeout: float,
                   idle_timeout: float, first: bytes = b"") -> "RemoteStream":
        """Connect (pooled) to the site and open the channel, within ``connect_timeout`` for the
        channel itself (the SSH login has its own timeout); ``first`` (a request's head) is
        sent at once, in the same crossing into the SSH loop (if any)."""
        where = f"{host}:{port}"
        shared = not in_ssh_loop()

        async def go() -> RemoteStream:
            connection = _connections.get(target)
            if connection is None or connection.closed:
                connection = await get_pool().connect(target)
                for stale in [known for known, each in _connections.items() if each.closed]:
                    del _connections[stale]
                _connections[target] = connection
            try:
                _, session = await within(
                    connection.conn.create_connection(lambda: _ChannelSession(INBOX_LIMIT, shared), host.strip("[]"), port),
                    connect_timeout,
                )
            except asyncio.TimeoutError:
                raise ProxyConnectError(
                    "timeout", f"{where} did not answer within {connect_timeout:g} s, as seen from "
                    f"{target.host}.",
                ) from None
            except asyncssh.ChannelOpenError as exc:
                reason = exc.reason or "connect failed"
                kind = "refused" if "refused" in reason.lower() else "unreachable"
                raise ProxyConnectError(kind, f"{target.host} could not connect to {where}: {reason}.") from exc
            except (asyncssh.Error, OSError) as exc:  # the connection dropped while opening
                raise ProxyConnectError("dropped", f"The SSH connection to {target.host} was lost: {exc}.") from exc
            if first:
                session._chan.write(first)
            return cls(connection, session, where, idle_timeout)

        try:
            return await run_in_ssh_loop(go())
        except ProxyConnectError:
            raise
        except HPCError as exc:
            raise ProxyConnectError("ssh", str(exc), log_detail=exc.log_detail) from exc

    async def write(self, data: bytes) -> None:
        """Send ``data``; returns once SSH's send buffer has room again (back-pressure)."""
        if not data:
            return
        if self._local:
            await self._guarded(self._session.write(data, self.idle_timeout))
        else:
            await self._guarded(run_in_ssh_loop(self._session.write(data, self.idle_timeout)))

    async def read(self, size: int = READ_SIZE) -> bytes:
        """Up to ``size`` bytes as they arrive; ``b""`` at the end of the stream. Read in this
        (the server's) loop, from the session's inbox: no crossing."""
        return await self._guarded(self._session.read(size, self.idle_timeout))

    async def _guarded(self, awaitable):
        """``awaitable``'s result, its failures as the :class:`ProxyConnectError` they mean."""
        try:
            return await awaitable
        except asyncio.TimeoutError:
            raise ProxyConnectError(
                "idle", f"{self.where} sent and took nothing for {self.idle_timeout:g} s (idle_timeout)."
            ) from None
        except (asyncssh.Error, OSError) as exc:
            raise ProxyConnectError("dropped", f"The connection to {self.where} was lost: {exc}.") from exc

    @property
    def connection_lost(self) -> bool:
        """Whether the SSH connection under the channel has closed (vs. the web UI ending it)."""
        return self._connection.closed

    async def close(self) -> None:
        """Close the channel (idempotent); the SSH connection stays for everything else."""
        if self.closed:
            return
        self.closed = True
        if self._local:
            self._session.close()
            return
        try:
            ssh_loop().call_soon_threadsafe(self._session.close)  # nothing to wait for
        except RuntimeError:  # the SSH loop is gone (process exit)
            pass
