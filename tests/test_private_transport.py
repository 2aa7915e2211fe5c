"""No one else on the login node can read a kernel: a second unix user tries, and fails.

The control test shows the same neighbour does read a kernel on plain 127.0.0.1 TCP, as the
peers start them, so the attempt is a real one.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from jupyter_client import BlockingKernelClient

from kernel_helpers import execute, provisioner_info, running_kernel
from remote_inspect import all_cmdlines, tcp_listeners, unix_listeners
from testbed import spy
from testbed.users import NEIGHBOUR_USER, run_as

SECRET = "SECRET-7f3a9c"
PRINT_SECRETS = f"import time\nfor i in range(40):\n    print('{SECRET}', i, flush=True)\n    time.sleep(0.1)\n"


@pytest.fixture(scope="module")
def spy_script():
    directory = Path(tempfile.mkdtemp(prefix="jupyter-hpc-spy-"))
    os.chmod(directory, 0o755)
    script = directory / "spy.py"
    shutil.copy(spy.__file__, script)
    os.chmod(script, 0o644)
    yield script
    shutil.rmtree(directory, ignore_errors=True)


def neighbour_reads(spy_script, remote_python, pid: int, client, seconds: float = 2.5) -> dict:
    """While the kernel prints secrets, the neighbour attacks every socket ``pid`` listens on."""
    tcp, paths = tcp_listeners(pid), unix_listeners(pid)
    assert tcp or paths, "the kernel listens nowhere?"
    msg_id = client.execute(PRINT_SECRETS)
    result = run_as(
        NEIGHBOUR_USER,
        [remote_python, str(spy_script), json.dumps(tcp), json.dumps(paths), str(seconds)],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    seen = []
    while True:  # the owner does read it, over the forwarded channels
        msg = client.get_iopub_msg(timeout=10)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            seen.append(msg["content"]["text"])
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    assert SECRET in "".join(seen)
    report = json.loads(result.stdout)
    report["tcp"], report["paths"] = tcp, paths
    return report


def test_neighbour_reads_nothing_from_an_ipc_kernel(ssh_spec, spy_script, remote_python):
    with running_kernel(ssh_spec()) as (km, client):
        info = provisioner_info(km)
        assert info["remote_transport"] == "ipc"
        report = neighbour_reads(spy_script, remote_python, info["pid"], client)
    assert len(report["paths"]) == 6  # five channels and the IOPub fork pipe (kernel_shim)
    assert SECRET not in report["received"]
    assert all("Permission denied" in error for error in report["errors"] if "/" in error.split(":")[0])


def test_neighbour_reads_a_plain_tcp_kernel(spy_script, remote_python, kernel_user, tmp_path):
    """The control: a kernel as the peers run it, on 127.0.0.1 TCP without encryption."""
    directory = Path(tempfile.mkdtemp(prefix="jupyter-hpc-plain-"))
    os.chown(directory, kernel_user.pw_uid, kernel_user.pw_gid)
    connection_file = directory / "kernel.json"
    client = BlockingKernelClient()
    client.write_connection_file()
    shutil.copy(client.connection_file, connection_file)
    os.chown(connection_file, kernel_user.pw_uid, kernel_user.pw_gid)
    kernel = subprocess.Popen(
        ["runuser", "-u", kernel_user.pw_name, "--", remote_python, "-m", "ipykernel_launcher", "-f", str(connection_file)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/tmp",
    )
    try:
        client.start_channels()
        client.wait_for_ready(timeout=60)
        pid = int(execute(client, "import os; print(os.getpid())")["stdout"])
        report = neighbour_reads(spy_script, remote_python, pid, client)
        client.stop_channels()
    finally:
        kernel.terminate()
        kernel.wait(10)
        shutil.rmtree(directory, ignore_errors=True)
        client.cleanup_connection_file()
    assert SECRET in report["received"]


def test_fallback_to_curve_tcp_where_streamlocal_is_refused(
    kernelspecs, sshd_without_streamlocal, kernel_user, remote_python, spy_script
):
    config = sshd_without_streamlocal.provisioner_config(kernel_user.pw_name, remote_python=remote_python)
    name = kernelspecs("hpc-nosl", config)
    with running_kernel(name) as (km, client):
        info = provisioner_info(km)
        assert info["remote_transport"] == "tcp"
        assert km.curve_secretkey is not None
        pid = info["pid"]
        assert all(address.startswith("127.0.0.1:") for address in tcp_listeners(pid))
        # The Curve secret is in the 0600 connection file only, never on a command line.
        secret = km.curve_secretkey.decode()
        assert not [p for p, cmd in all_cmdlines().items() if secret in cmd]
        for entry in Path(info["kernel_dir"]).iterdir():
            if entry.is_file():
                assert stat.S_IMODE(entry.stat().st_mode) & 0o077 == 0, entry
        report = neighbour_reads(spy_script, remote_python, pid, client)
        assert execute(client, "print(6 * 7)")["stdout"].strip() == "42"
    assert len(report["tcp"]) >= 5
    assert SECRET not in report["received"]
    assert not os.path.exists(info["kernel_dir"])


def test_ipc_only_refuses_with_the_setting_to_flip(kernelspecs, sshd_without_streamlocal, kernel_user, remote_python):
    import jupyter_client

    from jupyter_hpc.errors import TransportRefusedError

    config = sshd_without_streamlocal.provisioner_config(
        kernel_user.pw_name, remote_python=remote_python, remote_transport="ipc"
    )
    km = jupyter_client.KernelManager(kernel_name=kernelspecs("hpc-ipc-only", config))
    with pytest.raises(TransportRefusedError, match="AllowStreamLocalForwarding"):
        km.start_kernel()


def test_server_side_unix_sockets(ssh_spec, tmp_path):
    """local_transport='ipc': the server's own endpoints are Unix sockets in a 0700 directory."""
    with running_kernel(ssh_spec(local_transport="ipc")) as (km, client):
        assert km.transport == "ipc"
        local_dir = os.path.dirname(km.ip)
        assert stat.S_IMODE(os.stat(local_dir).st_mode) == 0o700
        assert execute(client, "print('over unix sockets')")["stdout"].strip() == "over unix sockets"
        km.restart_kernel()
        client.wait_for_ready(timeout=60)
        assert execute(client, "print('after restart')")["stdout"].strip() == "after restart"
        info = provisioner_info(km)
    assert not os.path.exists(local_dir)
    assert not os.path.exists(info["kernel_dir"])
