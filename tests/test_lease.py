"""A kernel outlives its server for a lease: a restarted server reattaches; else it is reaped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jupyter_client
from jupyter_client.provisioning import KernelProvisionerFactory
from jupyter_core.utils import run_sync

from kernel_helpers import execute
from remote_inspect import process_alive

SERVER = Path(__file__).with_name("lease_server.py")


def kill_server_after_start(kernel_name: str) -> dict:
    server = subprocess.Popen([sys.executable, str(SERVER), kernel_name], stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(server.stdout.readline())
    finally:
        server.kill()  # SIGKILL: no shutdown, the SSH connection just drops
        server.wait()
    return info


def test_restarted_server_reattaches_with_state_intact(ssh_spec):
    name = ssh_spec(lease=30)
    info = kill_server_after_start(name)
    assert process_alive(info["pid"])
    time.sleep(1.0)  # the remote side has seen the connection drop; the kernel waits
    assert process_alive(info["pid"])

    km = jupyter_client.KernelManager(kernel_name=name)
    km.kernel_id = info["kernel_id"]
    km.provisioner = KernelProvisionerFactory.instance().create_provisioner_instance(
        info["kernel_id"], km.kernel_spec, parent=km
    )
    run_sync(km.provisioner.load_provisioner_info)(info)
    assert km.provisioner.has_process and km.is_alive()
    km.load_connection_info(info["connection_info"])
    client = km.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=30)
        assert execute(client, "print(x)")["stdout"].strip() == "kept"
    finally:
        client.stop_channels()
        km.shutdown_kernel(now=True)
    assert not process_alive(info["pid"])
    assert not os.path.exists(info["kernel_dir"])


def test_without_renewal_the_lease_ends_the_kernel(ssh_spec):
    info = kill_server_after_start(ssh_spec(lease=2))
    assert process_alive(info["pid"])
    deadline = time.monotonic() + 10
    while process_alive(info["pid"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not process_alive(info["pid"])
    time.sleep(0.5)
    assert not os.path.exists(info["kernel_dir"])


def test_reattach_to_an_ended_kernel_says_so(ssh_spec, caplog):
    name = ssh_spec(lease=1)
    info = kill_server_after_start(name)
    time.sleep(4)
    km = jupyter_client.KernelManager(kernel_name=name)
    km.provisioner = KernelProvisionerFactory.instance().create_provisioner_instance(
        info["kernel_id"], km.kernel_spec, parent=km
    )
    run_sync(km.provisioner.load_provisioner_info)(info)
    assert not km.provisioner.has_process
    assert "cannot be reattached" in caplog.text
