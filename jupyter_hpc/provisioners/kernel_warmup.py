"""What the pool says to a pre-started kernel: its first requests while it waits, and on its
take the notebook's folder and session name.

A kernel's first execute costs more than the ones after it: IPython compiles and runs its
first cell through code paths (and lazy imports) that no request has touched yet, 5-10 ms on
this project's test bed against 3 ms for the next one. A pool kernel is started ahead of need
precisely so that its user waits only for the attach; so before it is offered, the pool asks
it for its ``kernel_info`` and, for a Python kernel, runs ``pass`` with ``store_history`` off
(no history, no execution count: the user's first cell is still ``In [1]``; what it publishes
reaches no subscriber), over a temporary forward of its shell channel to a private Unix socket
of the server's. Not ``silent``: a silent request skips the pre/post-run events and the
publishing, and left the user's first reply 10 ms slower here (29-32 ms against 20-21 ms from
start_kernel to the first reply, 10 interleaved starts each).

Best effort: a kernel that does not answer is offered all the same (its user then sees it as
any other start would).

A Python kernel's pool serves notebooks in every folder: it is started in the site's ``cwd``
(the home by default), and :func:`adopt` moves the taken kernel into the notebook's folder and
gives it the notebook's ``JPY_SESSION_NAME`` (and ipykernel's ``__session__``), with one
history-less request made before the manager's clients connect. Without that, a pool would
serve only notebooks of the folder its first kernel was started for.

Runs in the SSH loop, ZMQ included (zmq.asyncio): no worker thread is held while a kernel
finishes its start, so filling a pool never takes the threads a server's file operations use.
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
    try:
        return await _on_shell(remote, _warm_up, key, signature_scheme, timeout)
    except Exception as exc:  # noqa: BLE001 - best effort: the kernel is offered anyway
        log.info("pre-started kernel %s not warmed up: %s", remote.pid, exc)
        return False


async def adopt(remote: RemoteKernel, key: str, signature_scheme: str, cwd: str | None,
                session_name: str | None, timeout: float = WARMUP_TIMEOUT) -> str | None:
    """Move a taken Python kernel into ``cwd`` ('~' expands there) and give it ``session_name``;
    None once done (or when there is nothing to do), else why not (the folder does not exist):
    the caller then starts a kernel of its own, whose start reports the problem as usual."""
    lines = []
    if cwd:
        lines.append(f"__hpc_os.chdir(__hpc_os.path.expanduser({cwd!r}))")
    if session_name:
        lines.append(f"__hpc_os.environ['JPY_SESSION_NAME'] = {session_name!r}")
        lines.append(f"get_ipython().user_ns['__session__'] = {session_name!r}")
    if not lines:
        return None
    code = "\n".join(["import os as __hpc_os", "try:", *(f"    {line}" for line in lines), "finally:", "    del __hpc_os"])
    try:
        return await _on_shell(remote, _adopt, key, signature_scheme, timeout, code)
    except Exception as exc:  # noqa: BLE001 - the pooled kernel is not used; a new start says more
        return str(exc) or type(exc).__name__


async def _on_shell(remote: RemoteKernel, exchange: Any, key: str, signature_scheme: str, timeout: float, *args: Any) -> Any:
    """Await ``exchange(socket, session, deadline, *args)`` on a temporary forward of the
    kernel's shell channel to a private Unix socket (a zmq.asyncio DEALER in this loop)."""
    import zmq
    import zmq.asyncio
    from jupyter_client.session import Session

    answer = remote.answer
    if answer.get("transport") != "ipc":
        raise ValueError("not a kernel on Unix sockets")
    remote_path = f"{answer['ip']}-{int(answer['ports']['shell'])}"
    directory = tempfile.mkdtemp(prefix="jupyter-hpc-warm-")  # 0700: the kernel's key signs here
    local_path = f"{directory}/shell"
    try:
        listener = await remote.connection.forward_path_to_path(local_path, remote_path)
        socket = zmq.asyncio.Context.instance().socket(zmq.DEALER)
        socket.linger = 0
        try:
            socket.connect(f"ipc://{local_path}")
            session = Session(key=key.encode(), signature_scheme=signature_scheme)
            return await exchange(socket, session, time.monotonic() + timeout, *args)
        finally:
            socket.close()
            listener.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def _warm_up(socket: Any, session: Any, deadline: float) -> bool:
    """kernel_info, then ``pass`` (no history) for a Python kernel."""
    info = await _request(socket, session, "kernel_info_request", {}, deadline)
    if info is None:
        return False
    language = ((info.get("content") or {}).get("language_info") or {}).get("name")
    if language == "python":
        return await _request(socket, session, "execute_request", PASS_WITHOUT_HISTORY, deadline) is not None
    return True


async def _adopt(socket: Any, session: Any, deadline: float, code: str) -> str | None:
    reply = await _request(socket, session, "execute_request", dict(PASS_WITHOUT_HISTORY, code=code), deadline)
    if reply is None:
        return "no answer"
    content = reply.get("content") or {}
    if content.get("status") != "ok":
        return f"{content.get('ename')}: {content.get('evalue')}"
    return None


async def _request(socket: Any, session: Any, msg_type: str, content: dict, deadline: float) -> dict | None:
    """Send one request; its reply, or None if none came before ``deadline``."""
    sent = session.send(socket, msg_type, content)
    while (left := deadline - time.monotonic()) > 0:
        try:
            frames = await asyncio.wait_for(socket.recv_multipart(), left)
        except asyncio.TimeoutError:
            break
        _, message = session.feed_identities(frames)
        reply = session.deserialize(message)
        if reply.get("parent_header", {}).get("msg_id") == sent["header"]["msg_id"]:
            return reply
    log.info("pre-started kernel did not answer its %s within the warm-up's time", msg_type)
    return None
