"""SSHProvisioner against a real OpenSSH sshd, through jupyter_client's own KernelManager."""

from __future__ import annotations

import jupyter_client
import pytest


def execute(client, code: str, timeout: float = 30) -> dict:
    """Run code; return {'stdout': ..., 'reply': ...}."""
    msg_id = client.execute(code)
    stdout = []
    reply = client.get_shell_msg(timeout=timeout)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = client.get_shell_msg(timeout=timeout)
    while True:
        msg = client.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            stdout.append(msg["content"]["text"])
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    return {"stdout": "".join(stdout), "reply": reply["content"]}


def test_kernel_runs_as_the_remote_user(ssh_spec, kernel_user):
    km = jupyter_client.KernelManager(kernel_name=ssh_spec())
    km.start_kernel()
    try:
        client = km.client()
        client.start_channels()
        client.wait_for_ready(timeout=60)
        out = execute(client, "import os; print(os.getuid())")
        assert out["stdout"].strip() == str(kernel_user.pw_uid)
        client.stop_channels()
    finally:
        km.shutdown_kernel()
