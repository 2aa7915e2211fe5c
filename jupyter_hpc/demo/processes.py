"""Accounting for every process the demo starts, so that stopping it can leave none behind.

The demo's process tree is deep and not all of it is ours to wait on: JupyterLab starts
kernels' launchers over SSH, the login node runs them through a shell, and each launcher
starts its kernel in a session of its own. If a launcher dies first, its kernel would be
re-parented to init and forgotten. The demo therefore makes itself a *child subreaper*
(Linux ``PR_SET_CHILD_SUBREAPER``): orphans below it are re-parented to it instead, so
"every process the demo started" is exactly "every descendant of the demo's process", which
:func:`descendants` reads from ``/proc``. After the polite shutdown (JupyterLab shuts its
kernels down, the login node ends its sessions), :func:`kill_descendants` sweeps what is
left and reaps it.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import signal
import time
from collections.abc import Collection

log = logging.getLogger("jupyter_hpc.demo")

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux 3.4+); False where the system cannot."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _stat(pid: int) -> tuple[int, int, str] | None:
    """(parent pid, session id, state) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = text[text.rfind(")") + 2:].split()
    return int(fields[1]), int(fields[3]), fields[0]


def descendants(root: int | None = None, *, spare_sessions: Collection[int] = ()) -> list[int]:
    """Pids below ``root`` (default: this process), minus those in ``spare_sessions``.

    Zombies are included: they are still ours to reap.
    """
    root = os.getpid() if root is None else root
    children: dict[int, list[int]] = {}
    sessions: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        stat = _stat(int(name))
        if stat is not None:
            children.setdefault(stat[0], []).append(int(name))
            sessions[int(name)] = stat[1]
    found: list[int] = []
    todo = list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        if sessions.get(pid) in spare_sessions:
            continue
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


async def kill_descendants(*, spare_sessions: Collection[int] = (), keep_waiting: Collection[int] = (),
                     timeout: float = 5.0) -> list[int]:
    """SIGKILL every descendant until none is left; reap the ones nobody else waits for.

    ``keep_waiting`` are pids of children that asyncio still waits on: they are killed but
    left to their watcher to reap. Returns the pids that were killed.
    """
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [pid for pid in descendants(spare_sessions=spare_sessions)
                 if (_stat(pid) or (0, 0, "Z"))[2] != "Z"]
        if not alive:
            break
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
        await asyncio.sleep(0.05)
    else:
        log.warning("processes still alive after the sweep: %s", descendants(spare_sessions=spare_sessions))
    reap(keep_waiting=keep_waiting)
    if killed:
        log.info("killed %d leftover process(es): %s", len(set(killed)), sorted(set(killed)))
    return killed


def reap(*, keep_waiting: Collection[int] = ()) -> None:
    """Collect exited children (adopted orphans included), except those asyncio waits on."""
    for pid in descendants():
        if pid in keep_waiting:
            continue
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
