"""Local forwards of a kernel's channels: a local listener, an SSH channel per connection.

asyncssh's own ``forward_local_*`` hand each SSH data packet to the local socket as it is
decrypted: a stream of kernel output arrives in packets of about 32 KiB (sshd's size), several
per read from the SSH connection, and each became a ``send`` of its own into the client's ZMQ
socket, waking its I/O thread each time; with the default 64 KiB write-buffer limit, a client
that fell behind paused and resumed the channel every few packets (``benchmarks/README.md``,
"Where the round trip and the stream spend their time").

Here the packets a channel receives in one turn of the loop go to the local socket together,
in one ``writelines`` at the end of that turn (one ``writev`` under uvloop), and the local
transport may hold a whole SSH window before it pauses the channel. A request from the client
is sent on the SSH channel as soon as it is read, as before. The listeners are shaped like
asyncssh's (``close``, ``wait_closed``, ``get_port``) and close with the SSH connection.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from .quiet_import import asyncssh

log = logging.getLogger("jupyter_hpc.ssh")

WINDOW = 2 * 1024 * 1024  # bytes: asyncssh's default channel window, kept
WRITE_HIGH = WINDOW  # the local transport pauses the channel only past a window of unsent bytes
# A local Unix socket's send buffer (Linux caps it at net.core.wmem_max, doubled): with the
# default ~208 KiB a stream fills it every few packets, and each partial send costs a loop turn
# to resume; in a jupyter_server that loop is the one decoding the messages too.
UNIX_SEND_BUFFER = WINDOW

OpenChannel = Callable[[Callable[[], Any]], Awaitable[tuple[Any, Any]]]


class _ChannelEnd(asyncssh.SSHTCPSession):
    """The SSH channel's side: what the kernel sends goes to the local connection, batched per
    loop turn (the packets of one read from the SSH connection arrive in one turn)."""

    def __init__(self, local: _LocalEnd, conn: Any) -> None:
        self._local = local
        self._conn = conn
        self._loop = asyncio.get_running_loop()
        self._pending: list[bytes] = []

    def data_received(self, data: bytes, datatype: Any = None) -> None:
        self._pending.append(data)
        # More bytes already read from the SSH connection, still to be parsed in this same call:
        # likely more packets, of this channel too; they go out together at the loop's next
        # turn. Otherwise (a round trip's reply: one packet per read) at once, no turn waited.
        # asyncssh keeps them in ``_inpbuf`` (2.x); without it, every packet goes at once.
        if getattr(self._conn, "_inpbuf", b""):
            if len(self._pending) == 1:
                self._loop.call_soon(self._flush)
            return
        self._flush()

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        transport = self._local.transport
        if not pending or transport is None or transport.is_closing():
            return
        if len(pending) == 1:
            transport.write(pending[0])
        else:
            transport.writelines(pending)

    def eof_received(self) -> bool:
        self._flush()
        transport = self._local.transport
        if transport is not None and not transport.is_closing() and transport.can_write_eof():
            transport.write_eof()
        return True  # keep the channel open for the other direction's remaining bytes

    def connection_lost(self, exc: Exception | None) -> None:
        self._flush()
        self._local.close()

    def pause_writing(self) -> None:  # the SSH window is full: stop reading the local socket
        self._local.pause_reading()

    def resume_writing(self) -> None:
        self._local.resume_reading()


class _LocalEnd(asyncio.Protocol):
    """One local connection (a client's ZMQ socket): its bytes go onto a channel of their own."""

    def __init__(self, open_channel: OpenChannel, conn: Any) -> None:
        self._open_channel = open_channel
        self._conn = conn
        self.transport: asyncio.Transport | None = None
        self.channel: Any = None
        self._early: list[bytes] = []  # read before the channel opened (uvloop may read at once)
        self._early_eof = False
        self._reading_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        elif sock is not None and sock.family == socket.AF_UNIX and UNIX_SEND_BUFFER:
            # Not on TCP: a set SO_SNDBUF turns off the kernel's own tuning of that buffer.
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, UNIX_SEND_BUFFER)
            except OSError:
                pass
        self.transport.set_write_buffer_limits(high=WRITE_HIGH)
        self.transport.pause_reading()  # until the channel is open (asyncio's transports heed it)
        asyncio.ensure_future(self._connect())

    async def _connect(self) -> None:
        try:
            channel, _ = await self._open_channel(lambda: _ChannelEnd(self, self._conn))
        except (asyncssh.Error, OSError) as exc:
            log.info("forwarded connection refused on the far side: %s", exc)
            self.close()
            return
        if self.transport is None or self.transport.is_closing():
            channel.close()
            return
        self.channel = channel
        early, self._early = self._early, []
        try:
            if early:
                channel.write(b"".join(early))
            if self._early_eof:
                channel.write_eof()
        except OSError:
            pass
        if not self._reading_paused:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.channel is None:
            self._early.append(data)
            return
        try:
            self.channel.write(data)
        except OSError:  # the channel closed in this same turn; its connection_lost closes us
            pass

    def eof_received(self) -> bool:
        if self.channel is None:
            self._early_eof = True
        else:
            try:
                self.channel.write_eof()
            except OSError:
                pass
        return True  # half-close: the kernel's side may still answer

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.channel is not None:
            self.channel.close()
            self.channel = None

    def pause_writing(self) -> None:  # the local client fell a window behind: stop the channel
        if self.channel is not None:
            self.channel.pause_reading()

    def resume_writing(self) -> None:
        if self.channel is not None:
            self.channel.resume_reading()

    def pause_reading(self) -> None:
        self._reading_paused = True
        if self.transport is not None and self.channel is not None:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        self._reading_paused = False
        if self.transport is not None and self.channel is not None:
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class LocalForward:
    """A local listener forwarding each connection over ``conn``; shaped like asyncssh's
    ``SSHListener``. Closes with the connection."""

    def __init__(self, server: asyncio.AbstractServer, port: int, conn: Any) -> None:
        self._server = server
        self._port = port
        self._watch = asyncio.ensure_future(conn.wait_closed())
        self._watch.add_done_callback(lambda _: self.close())

    def get_port(self) -> int:
        return self._port

    def close(self) -> None:
        self._server.close()
        if not self._watch.done():
            self._watch.cancel()

    async def wait_closed(self) -> None:
        await self._server.wait_closed()


async def forward_local(conn: Any, *, listen_path: str | None = None, listen_port: int = 0,
                        remote_path: str | None = None, remote_host: str = "127.0.0.1",
                        remote_port: int = 0) -> LocalForward:
    """Listen on a Unix socket (``listen_path``) or 127.0.0.1:``listen_port`` (0: any free
    one) and forward each connection over ``conn`` to ``remote_path`` or
    ``remote_host``:``remote_port`` as the server sees it."""
    if remote_path is not None:
        def open_channel(factory):
            return conn.create_unix_connection(factory, remote_path, window=WINDOW)
    else:
        def open_channel(factory):
            return conn.create_connection(factory, remote_host, remote_port, window=WINDOW)

    loop = asyncio.get_running_loop()
    if listen_path is not None:
        server = await loop.create_unix_server(lambda: _LocalEnd(open_channel, conn), listen_path)
        port = 0
    else:
        server = await loop.create_server(lambda: _LocalEnd(open_channel, conn), "127.0.0.1", listen_port)
        port = server.sockets[0].getsockname()[1]
    return LocalForward(server, port, conn)
