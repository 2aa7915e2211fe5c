"""The SSH layer's event loop: a jupyter_server's own, else one background thread per process.

Forwarded kernel channels must keep flowing while the caller's loop is idle: jupyter_client's
blocking ``KernelManager`` runs its loop only inside each call, while jupyter_server and
nbclient keep theirs running. Running every asyncssh object in a loop of our own serves all
three; callers await our work across threads with :func:`run_in_ssh_loop`. A jupyter_server,
whose loop runs for its whole life, hands its loop over instead (:func:`adopt_loop`, from the
extension): there a thread only costs, since each forwarded message, keystroke and proxied
request would cross it twice, and :func:`run_in_ssh_loop` simply awaits.

Every forwarded ZMQ message crosses this loop twice (local socket, SSH channel), so the loop
itself is on each round trip's critical path: it is uvloop's where uvloop is installed (the
SSH thread spent 10–15 % less CPU per round trip in ``benchmarks/profile_transport.py``).
``JUPYTER_HPC_SSH_LOOP=asyncio`` keeps the standard loop, for comparison or if uvloop misbehaves.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_adopted = False  # the loop is a host's own (a jupyter_server's), not our thread's


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop where it is installed and not declined, else asyncio's."""
    if os.environ.get("JUPYTER_HPC_SSH_LOOP", "").lower() != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def ssh_loop() -> asyncio.AbstractEventLoop:
    """Return the SSH layer's loop, starting its thread on first use."""
    global _loop, _thread
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = new_loop()
            ready = threading.Event()

            def serve() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            _thread = threading.Thread(target=serve, name="jupyter-hpc-ssh", daemon=True)
            _thread.start()
            ready.wait()
            _loop = loop
        return _loop


def adopt_loop(loop: asyncio.AbstractEventLoop) -> bool:
    """Make ``loop`` the SSH layer's loop, in the calling thread, if none has started yet.

    A jupyter_server keeps its loop running for its whole life, so there the thread is not
    needed and only costs: every forwarded message, terminal keystroke and proxied request
    would cross between two threads twice (a wake-up and a GIL hand-over each way). In the
    server's own loop asyncssh's objects are driven where their callers await them. Call it
    before anything SSH is used (the extension does, when it is linked); False if too late.
    """
    global _loop, _thread, _adopted
    with _lock:
        if _loop is not None and not _loop.is_closed():
            return _loop is loop
        _loop, _thread, _adopted = loop, threading.current_thread(), True
        return True


def in_ssh_loop() -> bool:
    """Whether the current thread is the SSH loop's thread."""
    return _thread is not None and threading.current_thread() is _thread


def call_in_ssh_loop(callback: Callable[..., Any], *args: Any) -> None:
    """``callback(*args)`` now when called in the SSH loop's thread (a jupyter_server's own),
    else handed to that loop; either way calls keep their order."""
    if in_ssh_loop():
        callback(*args)
    else:
        ssh_loop().call_soon_threadsafe(callback, *args)


async def run_in_ssh_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` in the SSH loop from any other loop; cancellation crosses over too."""
    if in_ssh_loop():
        return await coro
    future = asyncio.run_coroutine_threadsafe(coro, ssh_loop())
    return await asyncio.wrap_future(future)


def run_in_ssh_loop_sync(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Block the calling (non-SSH) thread until ``coro`` finishes in the SSH loop."""
    if in_ssh_loop():
        raise RuntimeError("run_in_ssh_loop_sync would deadlock inside the SSH loop")
    return asyncio.run_coroutine_threadsafe(coro, ssh_loop()).result(timeout)


def _stop() -> None:
    loop = _loop
    if loop is not None and not loop.is_closed() and not _adopted:
        loop.call_soon_threadsafe(loop.stop)


atexit.register(_stop)
