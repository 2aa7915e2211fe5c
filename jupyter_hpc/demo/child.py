"""A server the demo runs as its child: JupyterLab or JupyterHub.

Each runs in a session (and process group) of its own, so that a Ctrl-C at the terminal
reaches only the demo, which then stops it in order; its output goes to a log file in the
demo's state directory (or to the terminal with ``--debug``), whose end is quoted when it
fails to start. What "ready" means, and how a polite stop asks, is each server's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

from ..errors import HPCError


class ChildStartError(HPCError):
    """A child server did not come up; the message carries the end of its log."""


class ChildServer:
    """:meth:`spawn` it, :meth:`wait_ready`, and :meth:`kill` its whole group at the end."""

    #: How messages name it, e.g. "JupyterLab".
    name = "The server"
    start_error: type[ChildStartError] = ChildStartError

    def __init__(self, log_path: Path, *, show_log: bool = False) -> None:
        self.log_path = log_path
        self.show_log = show_log
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def spawn(self, argv: list[str], *, env: dict[str, str], cwd: str | None = None) -> None:
        output = None if self.show_log else open(self.log_path, "ab")
        try:
            self.process = await asyncio.create_subprocess_exec(
                *argv, env=env, cwd=cwd,
                stdin=asyncio.subprocess.DEVNULL, stdout=output, stderr=output,
                start_new_session=True,
            )
        finally:
            if output is not None:
                output.close()

    async def wait_ready(self, answers: Callable[[], Awaitable[bool]], timeout: float, interval: float = 0.2) -> None:
        """Until ``answers()`` says so; a clear error, with its log's end, if the server exits
        or ``timeout`` seconds pass first."""
        async def poll() -> None:
            assert self.process is not None
            while True:
                if self.process.returncode is not None:
                    raise self.start_error(
                        f"{self.name} exited with status {self.process.returncode} while starting.{self.log_tail()}"
                    )
                if await answers():
                    return
                await asyncio.sleep(interval)

        try:
            await asyncio.wait_for(poll(), timeout)
        except asyncio.TimeoutError:
            raise self.start_error(f"{self.name} did not answer within {timeout:.0f} s.{self.log_tail()}") from None

    def log_tail(self, limit: int = 3000) -> str:
        if self.show_log:
            return " Its output is above."
        try:
            text = self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""
        return f" The end of its log:\n{text}" if text.strip() else ""

    async def kill(self) -> None:
        """SIGKILL its whole process group at once."""
        process = self.process
        if process is None or process.returncode is not None:
            return  # its group's survivors, if any, are left to the demo's sweep
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
