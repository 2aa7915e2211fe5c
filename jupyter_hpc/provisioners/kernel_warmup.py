"""A pre-started kernel's first requests, made while it waits in the pool rather than by its user.

A kernel's first execute costs more than the ones after it: IPython compiles and runs its
first cell through code paths (and lazy imports) that no request has touched yet, 5-10 ms on
this project's test bed against 3 ms for the next one. A pool kernel is started ahead of need
precisely so that its user waits only for the attach; so before it is offered, the pool asks
it for its ``kernel_info`` and, for a Python kernel, runs ``pass`` with ``store_history`` off
(no history, no execution count: the user's first cell is still ``In [1]``; what it publishes
reaches no subscriber), over a temporary forward of its shell channel to a private Unix socket
of the server's. Not ``silent``: a silent request skips the pre/post-run events and the
publishing, and left the user's first reply 5-10 ms slower here than a non-silent one.

Best effort: a kernel that does not answer is offered all the same (its user then sees it as
any other start would). Runs in the SSH loop; the ZMQ exchange itself runs in a worker thread,
so the loop never blocks on it.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from typing import Any

from ..launcher import RemoteKernel

log = logging.getLogger("jupyter_hpc.provisioners")

WARMUP_TIMEOUT = 10.0  # seconds a pool kernel may take over its first requests
PASS_WITHOUT_HISTORY = {
    "code": "pass", "silent": False, "store_history": False,
    "user_expressions": {}, "allow_stdin": False, "stop_on_error": False,
}


async def warm_up(remote: RemoteKernel, key: str, signature_scheme: str, timeout: float = WARMUP_TIMEOUT) -> bool:
    """Make ``remote``'s first requests (see the module's docstring); whether it answered."""
    answer = remote.answer
    if answer.get("transport") != "ipc":
        return False
    remote_path = f"{answer['ip']}-{int(answer['ports']['shell'])}"
    directory = tempfile.mkdtemp(prefix="jupyter-hpc-warm-")  # 0700: the kernel's key signs here
    local_path = f"{directory}/shell"
    try:
        listener = await remote.connection.forward_path_to_path(local_path, remote_path)
        try:
            return await asyncio.to_thread(_exchange, f"ipc://{local_path}", key, signature_scheme, timeout)
        finally:
            listener.close()
    except Exception as exc:  # noqa: BLE001 - best effort: the kernel is offered anyway
        log.info("pre-started kernel %s not warmed up: %s", remote.pid, exc)
        return False
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _exchange(address: str, key: str, signature_scheme: str, timeout: float) -> bool:
    """In a worker thread: kernel_info, then ``pass`` (no history) for a Python kernel."""
    import zmq
    from jupyter_client.session import Session

    session = Session(key=key.encode(), signature_scheme=signature_scheme)
    deadline = time.monotonic() + timeout
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.linger = 0
    try:
        socket.connect(address)
        info = _request(socket, session, "kernel_info_request", {}, deadline)
        if info is None:
            return False
        language = ((info.get("content") or {}).get("language_info") or {}).get("name")
        if language == "python":
            return _request(socket, session, "execute_request", PASS_WITHOUT_HISTORY, deadline) is not None
        return True
    finally:
        socket.close()


def _request(socket: Any, session: Any, msg_type: str, content: dict, deadline: float) -> dict | None:
    """Send one request; its reply, or None if none came before ``deadline``."""
    sent = session.send(socket, msg_type, content)
    while (left := deadline - time.monotonic()) > 0:
        if not socket.poll(int(left * 1000) + 1):
            break
        _, reply = session.recv(socket)
        if reply is not None and reply.get("parent_header", {}).get("msg_id") == sent["header"]["msg_id"]:
            return reply
    log.info("pre-started kernel did not answer its %s within the warm-up's time", msg_type)
    return None
