"""Every way a start can go wrong fails fast, with a message that names the problem and the fix."""

from __future__ import annotations

import os

import asyncssh

from jupyter_hpc.errors import HostKeyError, KernelLaunchError, SSHConnectError
from testbed.sshd import free_port, write_private
from kernel_helpers import start_failure as start_error


def test_changed_host_key_names_host_and_fingerprint(ssh_spec, tmp_path, sshd):
    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[{sshd.host}]:{sshd.port} {impostor}")
    error, _ = start_error(ssh_spec(known_hosts=str(known_hosts)))
    assert isinstance(error, HostKeyError)
    offered = asyncssh.import_public_key(sshd.host_public_key).get_fingerprint("sha256")
    assert sshd.host in str(error) and str(sshd.port) in str(error)
    assert offered in str(error) and str(known_hosts) in str(error)


def test_unknown_host_key_is_refused(ssh_spec, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    error, _ = start_error(ssh_spec(known_hosts=str(empty)))
    assert isinstance(error, HostKeyError) and "SHA256:" in str(error)


def test_unreachable_host_fails_within_launch_timeout(ssh_spec):
    error, elapsed = start_error(ssh_spec(port=free_port(), launch_timeout=5))
    assert isinstance(error, SSHConnectError)
    assert "Cannot reach 127.0.0.1 port" in str(error)
    assert elapsed < 5


def test_silent_host_times_out_within_launch_timeout(ssh_spec):
    """A port that accepts TCP but never speaks SSH (a black hole) must not hang the start."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        error, elapsed = start_error(ssh_spec(port=listener.getsockname()[1], launch_timeout=3))
    assert isinstance(error, SSHConnectError)
    assert elapsed < 3 + 1


def test_refused_key_says_so(ssh_spec, tmp_path):
    stranger = write_private(
        tmp_path / "stranger", asyncssh.generate_private_key("ssh-ed25519").export_private_key()
    )
    error, elapsed = start_error(ssh_spec(client_keys=[str(stranger)], launch_timeout=10))
    assert isinstance(error, SSHConnectError)
    assert "refused the login of hpcuser" in str(error)
    assert elapsed < 10


def test_missing_remote_python_says_what_to_set(ssh_spec):
    error, elapsed = start_error(ssh_spec(remote_python="/opt/no-such/python3", launch_timeout=10))
    assert isinstance(error, KernelLaunchError)
    assert "/opt/no-such/python3" in str(error) and "remote_python" in str(error)
    assert elapsed < 10


def test_kernel_that_dies_at_start_shows_its_output(ssh_spec, remote_python):
    name = ssh_spec()
    import json, os

    path = os.path.join(os.environ["JUPYTER_PATH"], "kernels", name, "kernel.json")
    spec = json.load(open(path))
    spec["argv"] = [remote_python, "-c", "import sys; sys.exit('no ipykernel here, sorry')"]
    json.dump(spec, open(path, "w"))
    error, _ = start_error(name)
    assert isinstance(error, KernelLaunchError)
    assert "no ipykernel here, sorry" in str(error)


def test_missing_working_directory(ssh_spec):
    error, _ = start_error(ssh_spec(cwd="/no/such/dir"))
    assert isinstance(error, KernelLaunchError) and "/no/such/dir" in str(error)


def test_hostile_values_reach_the_remote_as_single_arguments(ssh_spec, tmp_path):
    """Shell metacharacters in argv, env and remote_python are data, never commands."""
    canary = f"/tmp/jupyter-hpc-canary-{os.getpid()}"
    name = ssh_spec(remote_python=f"python3; touch {canary}", launch_timeout=10)
    error, _ = start_error(name)
    assert isinstance(error, KernelLaunchError)
    assert not os.path.exists(canary)


def test_misspelt_setting_is_named(ssh_spec):
    error, _ = start_error(ssh_spec(hots="cori.nersc.gov"))
    assert isinstance(error, ValueError)
    assert "'hots'" in str(error) and "host" in str(error)
