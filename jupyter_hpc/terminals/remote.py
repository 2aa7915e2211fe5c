"""One terminal: an SSH session with a PTY on the pooled connection, and the browsers attached.

The session lives in the SSH loop (:mod:`jupyter_hpc.ssh.loop`), the browsers' websockets in
the server's loop. In a jupyter_server they are one loop (the SSH layer adopts the server's):
the shell's output goes from the SSH channel's ``data_received`` straight into each websocket,
and a keystroke from the websocket's ``on_message`` straight into the channel, with no task,
stream buffer or loop turn between (a keystroke's echo is a few of those long). Where the SSH
loop is a thread of its own (``JUPYTER_HPC_SSH_LOOP=thread``, or a client in another loop),
output and input cross with ``call_soon_threadsafe`` instead, so keystrokes stay in order and
no thread ever blocks on the other. A bounded replay buffer of recent output lets a reloaded page or a second tab reattach to the
same shell and see its screen, as terminado's ``read_buffer`` does. Nothing here writes the
traffic anywhere else: no file, no log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ..errors import HPCError
from ..ssh import SiteConnection
from ..ssh.coalesce import flush_writes
from ..ssh.loop import call_in_ssh_loop
from ..ssh.quiet_import import asyncssh

log = logging.getLogger("jupyter_hpc.terminals")

#: What xterm.js (JupyterLab's terminal) understands, as terminado sets it.
TERM_TYPE = "xterm-256color"
DEFAULT_SIZE = (24, 80)  # rows, cols until a browser says

STARTING, RUNNING, ENDED = "starting", "running", "ended"

#: ``open_session(session, **pty_options)`` opens a PTY session whose events go to ``session``
#: (an ``asyncssh.SSHClientSession``), and gives the connection and the channel it is on.
OpenSession = Callable[..., Awaitable[tuple[SiteConnection, "asyncssh.SSHClientChannel"]]]
#: ``why_ended(exit_status)`` says why the session ended when it is worth a line (a job that
#: ended), or None for a plain exit of the shell.
WhyEnded = Callable[[int | None], Awaitable[str | None]]


class TerminalClient(Protocol):
    """A browser attached to a terminal (the websocket handler)."""

    loop: asyncio.AbstractEventLoop
    size: tuple[int | None, int | None]

    def on_output(self, text: str) -> None: ...

    def on_end(self, exited: bool) -> None: ...


def end_line(text: str) -> str:
    """A line the terminal prints about itself, set apart from the shell's own output."""
    return f"\r\n[{text}]\r\n"


def deliver(client: TerminalClient, loop: asyncio.AbstractEventLoop, method: Callable[..., None], *args: Any) -> None:
    """Call a client's ``method`` now when it lives in ``loop`` (the one running), else in its
    own loop. Called from the SSH channel's callbacks: a client's failure is logged, never
    raised into asyncssh (it would take the session down for every other client)."""
    if client.loop is not loop:
        client.loop.call_soon_threadsafe(method, *args)
        return
    try:
        method(*args)
    except Exception:
        log.exception("terminal client %r failed", client)


class ShellSession(asyncssh.SSHClientSession):
    """The SSH channel's events for one terminal: output goes to it as it arrives."""

    def __init__(self, terminal: "RemoteTerminal") -> None:
        self.terminal = terminal
        self.lost: Exception | None = None

    def data_received(self, data: str, datatype: Any) -> None:
        self.terminal._output(data)  # stdout; a PTY merges stderr into it

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc


class RemoteTerminal:
    """A named terminal: a shell on a login node (or in a job) and who is watching it.

    ``state`` goes starting → running → ended. A terminal that ends with a reason (its job
    ended, the login expired, the site refused it) keeps that line in its buffer and stays
    listed, so the open tab shows why; one whose shell simply exited is dropped at once, and
    JupyterLab closes its tab as it does for a local terminal.
    """

    def __init__(self, name: str, site: str, title: str, *, job: str | None = None,
                 replay_chars: int = 200_000) -> None:
        self.name = name
        self.site = site
        self.title = title
        self.job = job
        self.replay_chars = replay_chars
        self.created = self.last_activity = time.time()
        self.state = STARTING
        self.reason: str | None = None  # the line an ended terminal shows; None: a plain exit
        self.ended_at: float | None = None
        self.connection: SiteConnection | None = None
        self.channel: asyncssh.SSHClientChannel | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the SSH loop, once run
        self.clients: list[TerminalClient] = []
        self.on_ended: list[Callable[["RemoteTerminal"], None]] = []  # called in the SSH loop
        self._buffer: deque[str] = deque()
        self._buffered = 0
        self._pending: list[str] = []  # typed before the session was open
        self._size = DEFAULT_SIZE
        self._closing_reason: str | None = None
        self._closing = False

    @property
    def running(self) -> bool:
        return self.state != ENDED

    # -- in the SSH loop ----------------------------------------------------------------------

    async def run(self, open_session: OpenSession, why_ended: WhyEnded | None = None) -> None:
        """Open the session, pump its output to the clients until it ends, then say why."""
        rows, cols = self._size
        self._loop = asyncio.get_running_loop()
        session = ShellSession(self)
        try:
            self.connection, self.channel = await open_session(
                session, term_type=TERM_TYPE, term_size=(cols, rows), encoding="utf-8", errors="replace",
            )
        except HPCError as exc:
            log.warning("terminal %s on %s could not start: %s %s", self.name, self.site, exc, exc.log_detail)
            self._finish(f"No shell on {self.title}: {exc}")
            return
        except (asyncssh.Error, OSError) as exc:
            reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
            log.warning("terminal %s on %s could not start: %s", self.name, self.site, reason)
            self._finish(f"No shell on {self.title}: the login node refused the session ({reason}). Try again shortly.")
            return
        channel = self.channel
        if self._closing:  # deleted while it opened
            channel.close()
            self._finish(self._closing_reason)
            return
        self.state = RUNNING
        for text in self._pending:
            channel.write(text)
        self._pending.clear()
        if self._size != (rows, cols):  # a browser said its size while the session opened
            with contextlib.suppress(asyncssh.Error, OSError):
                channel.change_terminal_size(self._size[1], self._size[0])
        with contextlib.suppress(asyncssh.Error, OSError):
            await channel.wait_closed()
        lost: str | None = None
        if session.lost is not None:
            lost = getattr(session.lost, "reason", None) or str(session.lost) or type(session.lost).__name__
        status = channel.get_exit_status()
        if self._closing:
            self._finish(self._closing_reason)
        elif lost is not None or (status is None and channel.get_exit_signal() is None
                                  and self.connection is not None and self.connection.conn.is_closed()):
            self._finish(f"The connection to {self.title} was lost{': ' + lost if lost else ''}. "
                         "Open a new terminal to log in again.")
        else:
            self._finish(await why_ended(status) if why_ended is not None else None)

    def attach(self, client: TerminalClient) -> str:
        """Add a client; the recent screen to replay to it (atomic with the output pump)."""
        self.clients.append(client)
        self._apply_size()
        return "".join(self._buffer)

    def detach(self, client: TerminalClient) -> None:
        with contextlib.suppress(ValueError):
            self.clients.remove(client)
        self._apply_size()

    def close(self, reason: str | None = None) -> None:
        """End the shell: close its channel (sshd hangs the PTY up, the shell and its jobs get
        SIGHUP). ``reason`` is the line the clients read; None for a plain close (DELETE)."""
        self._closing = True
        self._closing_reason = reason
        if self.channel is not None:
            self.channel.close()

    def _output(self, text: str) -> None:
        self.last_activity = time.time()
        self._buffer.append(text)
        self._buffered += len(text)
        while self._buffered > self.replay_chars and len(self._buffer) > 1:
            self._buffered -= len(self._buffer.popleft())
        loop = self._loop
        for client in list(self.clients):
            deliver(client, loop, client.on_output, text)

    def _finish(self, reason: str | None) -> None:
        if self.state == ENDED:
            return
        if reason:
            self._output(end_line(reason))
        self.state = ENDED
        self.reason = reason
        self.ended_at = time.time()
        loop = self._loop or asyncio.get_running_loop()
        for client in list(self.clients):
            deliver(client, loop, client.on_end, reason is None)
        for callback in self.on_ended:
            try:
                callback(self)
            except Exception:  # a listener's failure must not stop the others
                log.exception("terminal %s: an end listener failed", self.name)

    def _write(self, text: str) -> None:
        self.last_activity = time.time()
        if self.state == STARTING:
            self._pending.append(text)
        elif self.state == RUNNING and self.channel is not None:
            with contextlib.suppress(asyncssh.Error, OSError, BrokenPipeError):
                self.channel.write(text)
                flush_writes(self.connection.conn)  # the keystroke leaves now, not at the loop's turn

    def _apply_size(self) -> None:
        """The PTY takes the smallest size among the clients, as terminado does: a screen
        that fits every browser beats one that overflows some."""
        sizes = [client.size for client in self.clients if None not in client.size]
        if not sizes:
            return
        size = (min(rows for rows, _ in sizes), min(cols for _, cols in sizes))
        if size == self._size:
            return
        self._size = size  # a session still opening takes it when it opens
        if self.state == RUNNING and self.channel is not None:
            with contextlib.suppress(asyncssh.Error, OSError):
                self.channel.change_terminal_size(size[1], size[0])

    # -- from any thread -----------------------------------------------------------------------

    def write(self, text: str) -> None:
        """Type ``text`` into the shell: now in the SSH loop's thread, else handed to it (order
        kept either way)."""
        call_in_ssh_loop(self._write, text)

    def resized(self) -> None:
        """A client's size changed."""
        call_in_ssh_loop(self._apply_size)

    def detach_soon(self, client: TerminalClient) -> None:
        """:meth:`detach`, from any thread."""
        call_in_ssh_loop(self.detach, client)

    def model(self) -> dict[str, Any]:
        """What /api/terminals lists: jupyter_server's two fields, and where the shell runs."""
        from datetime import datetime, timezone

        return {
            "name": self.name,
            "last_activity": datetime.fromtimestamp(self.last_activity, timezone.utc).isoformat().replace("+00:00", "Z"),
            "site": self.site,  # where the shell runs: never the server's host
            "jupyter_hpc": {"site": self.site, "title": self.title, "job": self.job, "state": self.state},
        }
