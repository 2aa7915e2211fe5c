"""The server's side of the remote launcher: send it, ask it to launch, listen to it.

The launcher's source travels on the SSH channel's stdin behind a one-line bootstrap given to
the remote python with ``-c``; the launch request (signing key included) follows on stdin.
Nothing is written to the cluster but the kernel's own private directory.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import lru_cache
from importlib import resources
from typing import Any

from ..ssh.quiet_import import asyncssh

from ..errors import KernelLaunchError
from ..ssh import SiteConnection
from . import standby as standby_launchers
from .remote_launcher import CHANNELS

log = logging.getLogger("jupyter_hpc.launcher")

BOOTSTRAP = (
    "import sys;n=int(sys.stdin.buffer.readline());"
    "exec(compile(sys.stdin.buffer.read(n),'jupyter-hpc-launcher','exec'))"
)
CONNECTION_LOST = 255  # what poll() reports when the monitor's channel died with no exit notice


@lru_cache(maxsize=1)
def launcher_source() -> bytes:
    return resources.files(__package__).joinpath("remote_launcher.py").read_bytes()


def script_argv(remote_python: str, *, site: bool = False) -> list[str]:
    """The remote command that runs a stdlib-only script sent on stdin (the launcher, discovery).

    -I -S: such a script needs no site packages, starts faster, and a cluster's PYTHONPATH or
    PYTHONSTARTUP cannot break it; a kernel it starts still gets the full environment.
    ``site``: run the site module (still -I), for a script that must see the environment as
    its kernels will: a venv's ``sys.prefix`` is the venv only once ``site`` has run.
    """
    return [remote_python, "-I", *([] if site else ["-S"]), "-c", BOOTSTRAP]


def script_stdin(source: bytes) -> bytes:
    """What BOOTSTRAP reads first: the source's length, then the source; the script's own
    input (a request line) may follow."""
    return b"%d\n" % len(source) + source


@lru_cache(maxsize=1)
def kernel_shim_source() -> str:
    """The listener shim the launcher installs for ``listeners`` 'private' or 'off'
    (:mod:`.kernel_shim`); it travels in the launch request."""
    return resources.files(__package__).joinpath("kernel_shim.py").read_text()


def launcher_stdin(request: dict[str, Any] | None = None) -> bytes:
    """What the remote python reads: the launcher, then the request line (which a launcher on
    standby gets later)."""
    loaded = script_stdin(launcher_source())
    return loaded if request is None else loaded + request_line(request)


def request_line(request: dict[str, Any]) -> bytes:
    return json.dumps(request).encode() + b"\n"


async def start_launcher(
    connection: SiteConnection, remote_python: str, prefix: Sequence[str] = ()
) -> tuple[SiteConnection, asyncssh.SSHClientProcess]:
    """Start the launcher and send it its source; it then waits for its request on stdin.

    Returns where it runs: on a sibling connection when the site allows no more sessions on
    this one, and the kernel's forwards must go through the connection its launcher runs on.
    """
    connection, process = await connection.start([*prefix, *script_argv(remote_python)], encoding=None)
    try:
        process.stdin.write(launcher_stdin())
    except BrokenPipeError:  # it ended at once (no such python): where its answer is read, its
        pass  # exit status and stderr say why, as a launch error the user can act on
    return connection, process


def parse_answer(line: bytes, *, host: str, remote_python: str, exit_status: int | None, stderr: str) -> dict:
    """Turn the launcher's first line into an answer dict, or a launch error a user can act on."""
    if not line.strip():
        if exit_status == 127 or "not found" in stderr or "No such file" in stderr:
            raise KernelLaunchError(
                f"The remote python {remote_python!r} was not found on {host}. Set the "
                "provisioner's remote_python to a Python 3.8+ that exists there "
                "(e.g. /usr/bin/python3).",
                log_detail=f"exit_status={exit_status} stderr={stderr!r}",
            )
        raise KernelLaunchError(
            f"The remote launcher on {host} ended without answering "
            f"(exit status {exit_status}): {stderr.strip() or 'no error output'}",
            log_detail=f"stderr={stderr!r}",
        )
    try:
        answer = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: deeply nested garbage
        raise KernelLaunchError(
            f"The remote launcher on {host} answered with something that is not JSON: "
            f"{line[:200]!r}. Is {remote_python} a real Python, and does the login print "
            "to stdout for non-interactive shells?",
        ) from None
    if not isinstance(answer, dict) or "ok" not in answer:
        raise KernelLaunchError(f"The remote launcher on {host} gave a malformed answer: {answer!r:.200}")
    if answer["ok"] is not True:
        raise KernelLaunchError(f"The kernel could not start on {host}: {answer.get('error') or 'no reason given'}")
    missing = {"pid", "transport", "ip", "ports", "kernel_dir"} - set(answer)
    if missing:
        raise KernelLaunchError(f"The remote launcher on {host} answered without {sorted(missing)}")
    problem = _answer_problem(answer)
    if problem:
        raise KernelLaunchError(f"The remote launcher on {host} gave a malformed answer ({problem}): {answer!r:.200}")
    return answer


def _answer_problem(answer: dict) -> str:
    """What is wrong with a successful answer's fields, so that no later step trips on a type."""
    pid, ports = answer["pid"], answer["ports"]
    if type(pid) is not int or pid <= 0:
        return "pid is not a process id"
    if answer["transport"] not in ("ipc", "tcp"):
        return "transport is neither ipc nor tcp"
    if not isinstance(answer["ip"], str) or not isinstance(answer["kernel_dir"], str):
        return "ip or kernel_dir is not text"
    if not isinstance(ports, dict) or any(type(ports.get(name)) is not int for name in CHANNELS):
        return "ports lack a channel's number"
    return ""


class RemoteKernel:
    """One kernel's monitor channel; lives in the SSH loop.

    ``exit_status`` is kept current by the monitor's own messages, so callers polling it cost
    nothing on the network. ``done`` is a thread-safe future resolved with the exit status.
    """

    def __init__(self, connection: SiteConnection, process: asyncssh.SSHClientProcess, answer: dict) -> None:
        self.connection = connection
        self.process = process
        self.answer = answer
        self.exit_status: int | None = None
        self.job_id: str | None = None  # the batch job the kernel runs in, if any
        self.node: str | None = None  # that job's batch host
        # Called (in the SSH loop) when the channel drops while the kernel runs; None: it is lost.
        self.on_lost: Callable[[RemoteKernel], Awaitable[None]] | None = None
        # The TCP listeners the kernel holds beyond its channels, as the launcher saw them on
        # the node just after its answer (None until then), and who wants to hear of them.
        self.tcp_listeners: list[str] | None = None
        self.on_listeners: Callable[[list[str]], None] | None = None
        self._closing = False
        self.done: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._cleaned = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read_events())

    @property
    def pid(self) -> int:
        return int(self.answer["pid"])

    @classmethod
    async def start(
        cls,
        connection: SiteConnection,
        remote_python: str,
        request: dict[str, Any],
        timeout: float,
        prefix: Sequence[str] = (),
        standby: float = 0.0,
    ) -> "RemoteKernel":
        """Send the launcher with ``request`` (launch, or attach to a running kernel).

        ``prefix`` runs the launcher through another command, e.g. ``srun --jobid=… --overlap``
        to reach a compute node where the site allows no SSH to nodes. ``standby``: seconds a
        launcher started after this one may wait on the connection for the next request
        (:mod:`.standby`); one already waiting is used now.
        """
        asked = connection
        taken = None if prefix else standby_launchers.take(asked, remote_python)
        if taken is None:
            connection, process = await start_launcher(asked, remote_python, prefix)
        else:
            connection, process = taken
        try:
            process.stdin.write(request_line(request))
        except BrokenPipeError:  # the launcher has ended: the empty answer below says why
            pass
        try:
            line = await asyncio.wait_for(process.stdout.readline(), timeout)
        except asyncio.TimeoutError:
            process.stdin.write(b'{"op": "cleanup"}\n')
            process.close()
            raise KernelLaunchError(
                f"The kernel did not start on {connection.target.host} within {timeout:.0f} s "
                "(launch_timeout). The login node may be overloaded, or the kernel's setup "
                "lines may be waiting for input."
            ) from None
        stderr = ""
        exit_status = None
        if not line.strip():
            await asyncio.wait_for(process.wait_closed(), 5)
            stderr = (await process.stderr.read()).decode("utf-8", "replace")
            exit_status = process.exit_status
        try:
            answer = parse_answer(
                line, host=connection.target.host, remote_python=remote_python,
                exit_status=exit_status, stderr=stderr,
            )
        except KernelLaunchError:
            process.close()
            if taken is not None and not line.strip():
                # The standby had died unseen (the node reaps idle processes?): start afresh.
                return await cls.start(asked, remote_python, request, timeout, prefix, standby)
            raise
        if not prefix:
            standby_launchers.prepare(asked, remote_python, standby, start_launcher)
        return cls(connection, process, answer)

    async def _read_events(self) -> None:
        try:
            async for line in self.process.stdout:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("event") == "exited":
                    self._set_exit(int(event["status"]))
                elif event.get("event") == "cleaned":
                    self._cleaned.set()
                elif event.get("event") == "listeners" and isinstance(event.get("tcp"), list):
                    self.tcp_listeners = [str(address) for address in event["tcp"][:100]]
                    if self.on_listeners is not None:
                        self.on_listeners(self.tcp_listeners)
        except (asyncssh.Error, OSError) as exc:
            log.warning("monitor channel of kernel %s lost: %s", self.answer.get("pid"), exc)
        finally:
            self._cleaned.set()
            if self.exit_status is None and self.on_lost is not None and not self._closing:
                asyncio.ensure_future(self.on_lost(self))  # the owner reconnects, or gives up
            else:
                self._set_exit(CONNECTION_LOST)

    def give_up(self) -> None:
        """Declare the kernel lost for good (a reconnection failed for the whole lease)."""
        self._set_exit(CONNECTION_LOST)

    def _set_exit(self, status: int) -> None:
        if self.exit_status is None:
            self.exit_status = status
            self.done.set_result(status)

    async def signal(self, signum: int) -> None:
        if self.exit_status is None:
            self._send({"op": "signal", "signum": int(signum)})

    def set_lease(self, seconds: float) -> None:
        """How long the kernel outlives this channel, should it drop (0: not at all)."""
        self._send({"op": "lease", "seconds": float(seconds)})

    def _send(self, message: dict[str, Any]) -> None:
        try:
            self.process.stdin.write(request_line(message))
        except (asyncssh.Error, OSError, BrokenPipeError):
            pass

    async def cleanup(self, timeout: float = 10.0) -> None:
        """Ask the monitor to stop the kernel and remove its files; wait for the word."""
        self._closing = True
        if not self._cleaned.is_set():
            self._send({"op": "cleanup"})
            try:
                await asyncio.wait_for(self._cleaned.wait(), timeout)
            except asyncio.TimeoutError:
                log.warning("kernel %s on %s did not confirm cleanup", self.pid, self.connection.target.host)
        self.process.close()
