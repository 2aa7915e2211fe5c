"""A data packet and the small packets written just before it leave the SSH connection in one send.

asyncssh puts an ``SSH_MSG_IGNORE`` packet before every packet it encrypts (RFC 4251's
countermeasure for CBC ciphers, kept for every cipher) and writes each packet on its own. With
TCP_NODELAY, each write is a ``send`` syscall and a TCP segment of its own, and sshd wakes once
for the 36-byte ignore packet and again for the data. A forwarded ZMQ message, the kernel's
round trip, thus cost two sends here and two wake-ups there.

:func:`coalesce_writes` wraps the connection's transport: a small write (up to
``SMALL`` bytes: the ignore packet, a window adjust, an EOF) is held back and goes out with the
next write, in one ``writelines`` (one ``writev`` under uvloop), or on its own as soon as the
loop turns. A larger write is never delayed, so a callback that writes a request and then works
on for a while (parsing a long SFTP reply) does not hold the request back. The bytes and their
order are unchanged; only the syscalls and TCP segments are fewer. ``benchmarks/transport.py``
keeps a connection without it as a row of its own.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

log = logging.getLogger("jupyter_hpc.ssh")


SMALL = 64  # bytes: an encrypted packet with next to no payload (36 for AES-GCM, 52 with an ETM MAC)


class CoalescingTransport:
    """A transport that holds small writes back to go out with the next one.

    Anything but writing, closing and aborting is the wrapped transport's own (``__getattr__``).
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.wrapped = transport
        self._loop = loop
        self._loop_thread = threading.get_ident()  # made in the loop's own thread
        self._pending: list[bytes] = []
        self.sends = 0  # calls reaching the wrapped transport (for the benchmarks)

    def write(self, data: bytes) -> None:
        if threading.get_ident() != self._loop_thread:
            # Not this loop's thread (asyncssh objects belong to the SSH loop, but a stray caller
            # must not leave bytes waiting for a loop that nothing wakes): hand it over.
            self._loop.call_soon_threadsafe(self.write, data)
            return
        if len(data) <= SMALL:
            if not self._pending:
                self._loop.call_soon(self._flush)
            self._pending.append(data)
            return
        if self._pending:
            self._pending.append(data)
            self._flush()
        else:
            self.sends += 1
            self.wrapped.write(data)

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending or self.wrapped.is_closing():
            return
        self.sends += 1
        if len(pending) == 1:
            self.wrapped.write(pending[0])
        else:
            self.wrapped.writelines(pending)

    def get_write_buffer_size(self) -> int:
        return self.wrapped.get_write_buffer_size() + sum(map(len, self._pending))

    def write_eof(self) -> None:
        self._flush()
        self.wrapped.write_eof()

    def close(self) -> None:
        self._flush()
        self.wrapped.close()

    def abort(self) -> None:
        self._pending.clear()
        self.wrapped.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


def flush_writes(conn: Any) -> None:
    """Send what ``conn`` holds back now, in the loop's thread, for a caller that knows nothing
    follows in this turn and waits on the answer (a terminal's keystroke: its data packet is
    small too, and would otherwise wait for the loop to turn)."""
    transport = getattr(conn, "_transport", None)
    if isinstance(transport, CoalescingTransport) and threading.get_ident() == transport._loop_thread:
        transport._flush()


def coalesce_writes(conn: Any) -> bool:
    """Wrap an open asyncssh connection's transport (its private ``_transport``, present from
    asyncssh 2.0 to at least 2.24). Where a later asyncssh has none, nothing changes and the
    connection works as before, only with a send per packet."""
    transport = getattr(conn, "_transport", None)
    if transport is None or isinstance(transport, CoalescingTransport) or not hasattr(transport, "write"):
        log.debug("asyncssh connection without a plain _transport: writes not coalesced")
        return False
    conn._transport = CoalescingTransport(transport, asyncio.get_running_loop())
    return True
