"""Drive kernels the way users' tools do: jupyter_client's KernelManager and its clients."""

from __future__ import annotations

import contextlib
import time

import jupyter_client


def execute(client, code: str, timeout: float = 30) -> dict:
    """Run ``code``; return its stdout, error (ename) and reply content."""
    msg_id = client.execute(code)
    stdout, error = [], None
    deadline = time.monotonic() + timeout
    reply = None
    while reply is None:
        msg = client.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") == msg_id:
            reply = msg
    while True:
        msg = client.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            stdout.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            error = msg["content"]["ename"]
        elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    return {"stdout": "".join(stdout), "error": error, "reply": reply["content"]}


@contextlib.contextmanager
def running_kernel(kernel_name: str, **km_kwargs):
    """A started kernel and a ready blocking client; shut down on exit."""
    km = jupyter_client.KernelManager(kernel_name=kernel_name, **km_kwargs)
    km.start_kernel()
    client = km.client()
    try:
        client.start_channels()
        client.wait_for_ready(timeout=60)
        yield km, client
    finally:
        client.stop_channels()
        if km.has_kernel:
            km.shutdown_kernel(now=False)


def provisioner_info(km) -> dict:
    from jupyter_core.utils import run_sync

    return run_sync(km.provisioner.get_provisioner_info)()


def start_failure(kernel_name: str) -> tuple[Exception, float]:
    """Start a kernel that must fail: the error, and how long the failure took to arrive."""
    import pytest

    km = jupyter_client.KernelManager(kernel_name=kernel_name)
    started = time.monotonic()
    with pytest.raises(Exception) as info:
        km.start_kernel()
    assert not km.has_kernel
    return info.value, time.monotonic() - started
