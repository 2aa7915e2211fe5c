"""One launcher started ahead of need per connection, so a warm start skips the launcher's own start.

On a warm connection, a launch spends 25–30 ms before the kernel is even started: a session
channel, the remote python, the launcher's imports and the compile of its source. That is a
tenth of a local kernel's whole start, and every kernel restart pays it too. So after a
launch one more launcher is started on the same connection, loaded and waiting on stdin for
its request, and the next launch (or restart) takes it.

It costs the login node one idle python (a few MB, no CPU) and the connection one of its
sessions (sshd's ``MaxSessions``). Unused for ``idle`` seconds it is sent EOF and exits
without a trace; it exits with its connection too. Everything here runs in the SSH loop.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..ssh.quiet_import import asyncssh

from ..ssh import SiteConnection

log = logging.getLogger("jupyter_hpc.launcher")


@dataclass
class _Waiting:
    connection: SiteConnection  # where it runs: the connection asked, or its sibling
    process: asyncssh.SSHClientProcess
    expiry: asyncio.TimerHandle


# Per connection asked, per remote python: a waiting launcher, or None while one is starting.
_waiting: weakref.WeakKeyDictionary[SiteConnection, dict[str, _Waiting | None]] = weakref.WeakKeyDictionary()


def take(connection: SiteConnection, remote_python: str) -> tuple[SiteConnection, asyncssh.SSHClientProcess] | None:
    """A loaded launcher waiting on ``connection`` for ``remote_python``, or None."""
    slots = _waiting.get(connection)
    waiting = slots.get(remote_python) if slots else None
    if waiting is None:
        return None
    del slots[remote_python]
    waiting.expiry.cancel()
    if waiting.connection.closed or waiting.process.exit_status is not None or waiting.process.is_closing():
        return None
    return waiting.connection, waiting.process


StartLauncher = Callable[[SiteConnection, str], Awaitable[tuple[SiteConnection, asyncssh.SSHClientProcess]]]


# After a launch, the next launcher starts this much later: not while the kernel just launched
# is starting and answering its first requests (on the same login node's CPUs, and through the
# same SSH loop). A script's only kernel is the one the delay favours.
START_DELAY = 1.0


def prepare(
    connection: SiteConnection, remote_python: str, idle: float, start: StartLauncher, delay: float = START_DELAY
) -> None:
    """Have one launcher wait on ``connection`` for up to ``idle`` seconds, unless one already
    waits or is starting. ``start(connection, remote_python)`` starts and loads one, ``delay``
    seconds from now."""
    if idle <= 0 or connection.closed:
        return
    slots = _waiting.setdefault(connection, {})
    if remote_python in slots:
        return
    slots[remote_python] = None

    async def start_one() -> None:
        if delay > 0:
            await asyncio.sleep(delay)
            if connection.closed:
                slots.pop(remote_python, None)
                return
        try:
            where, process = await start(connection, remote_python)
        except (asyncssh.Error, OSError) as exc:
            log.info("no launcher on standby on %s: %s", connection.target.host, exc)
            slots.pop(remote_python, None)
            return
        if slots.get(remote_python, "gone") is not None:  # the connection's slot went meanwhile
            dismiss(process)
            return
        expiry = asyncio.get_running_loop().call_later(idle, _expire, connection, remote_python)
        slots[remote_python] = _Waiting(where, process, expiry)

    asyncio.ensure_future(start_one())


def _expire(connection: SiteConnection, remote_python: str) -> None:
    slots = _waiting.get(connection) or {}
    waiting = slots.pop(remote_python, None)
    if waiting is not None:
        dismiss(waiting.process)


def dismiss(process: asyncssh.SSHClientProcess) -> None:
    """EOF before any request: the launcher exits quietly, having started nothing."""
    try:
        process.stdin.write_eof()
    except (asyncssh.Error, OSError):
        pass
    process.close()
