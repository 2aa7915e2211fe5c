"""How users reach a site: ~/.ssh/config, a jump host, OpenSSH certificates on file or in memory."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import asyncssh
import jupyter_client
import pytest

from jupyter_hpc.errors import SSHConnectError
from jupyter_hpc.ssh import SSHTarget, get_pool, run_in_ssh_loop_sync
from kernel_helpers import execute, running_kernel
from testbed.sshd import SSHDaemon, write_private


def test_ssh_config_supplies_host_port_user_and_key(kernelspecs, sshd, remote_python, monkeypatch, tmp_path):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(
        f"Host cori-test\n  HostName {sshd.host}\n  Port {sshd.port}\n  User hpcuser\n"
        f"  IdentityFile {sshd.client_key}\n"
    )
    monkeypatch.setenv("HOME", str(home))
    name = kernelspecs("via-config", {"host": "cori-test", "known_hosts": str(sshd.known_hosts),
                                      "remote_python": remote_python})
    with running_kernel(name) as (km, client):
        assert execute(client, "import getpass; print(getpass.getuser())")["stdout"].strip() == "hpcuser"


def test_jump_host(ssh_spec, sshd):
    """Through a bastion (here the same sshd, reached first): two connections, one per hop."""
    run_in_ssh_loop_sync(get_pool().close())
    name = ssh_spec(jump_host=f"hpcuser@{sshd.host}:{sshd.port}")
    logins = sshd.accepted_logins()
    with running_kernel(name) as (km, client):
        out = execute(client, "import os; print(os.environ['SSH_CONNECTION'].split()[0])")
        assert out["stdout"].strip() == "127.0.0.1"
    time.sleep(0.2)
    assert sshd.accepted_logins() - logins == 2


@pytest.fixture(scope="module")
def ca_sshd(kernel_user):
    """An sshd that trusts only certificates signed by a per-run user CA (no authorized keys)."""
    root = Path(tempfile.mkdtemp(prefix="jupyter-hpc-sshd-ca-"))
    ca = asyncssh.generate_private_key("ssh-ed25519")
    write_private(root.parent / f"{root.name}-ca.pub", ca.export_public_key(), 0o644)
    daemon = SSHDaemon(root, users=[kernel_user.pw_name], options={
        "TrustedUserCAKeys": str(root.parent / f"{root.name}-ca.pub"),
        "AuthorizedKeysFile": "none",
    })
    daemon.ca = ca
    daemon.start()
    yield daemon
    daemon.stop()
    shutil.rmtree(root, ignore_errors=True)
    (root.parent / f"{root.name}-ca.pub").unlink()


def user_certificate(ca_sshd, valid_for: str = "+5m", valid_after: str = "-1m"):
    key = asyncssh.generate_private_key("ssh-ed25519")
    cert = ca_sshd.ca.generate_user_certificate(
        key, "hpcuser@test", principals=["hpcuser"], valid_after=valid_after, valid_before=valid_for
    )
    return key, cert


def test_certificate_beside_the_key_file(kernelspecs, ca_sshd, remote_python, tmp_path):
    key, cert = user_certificate(ca_sshd)
    key_path = write_private(tmp_path / "id_cert", key.export_private_key())
    write_private(tmp_path / "id_cert-cert.pub", cert.export_certificate(), 0o644)
    config = ca_sshd.provisioner_config("hpcuser", remote_python=remote_python, client_keys=[str(key_path)])
    with running_kernel(kernelspecs("cert-file", config)) as (km, client):
        assert execute(client, "print(1 + 1)")["stdout"].strip() == "2"


def test_certificate_from_memory_never_touches_disk(ca_sshd):
    key, cert = user_certificate(ca_sshd)
    target = SSHTarget(
        host=ca_sshd.host, port=ca_sshd.port, username="hpcuser", known_hosts=str(ca_sshd.known_hosts),
        identities=((key.export_private_key().decode(), cert.export_certificate().decode()),),
    )
    assert key.export_private_key().decode() not in repr(target)

    async def whoami():
        connection = await get_pool().connect(target)
        return (await connection.run(["id", "-un"])).stdout.strip()

    assert run_in_ssh_loop_sync(whoami()) == "hpcuser"


def test_expired_certificate_is_refused_clearly(kernelspecs, ca_sshd, remote_python, tmp_path):
    key, cert = user_certificate(ca_sshd, valid_for="-1m", valid_after="-10m")
    key_path = write_private(tmp_path / "id_old", key.export_private_key())
    write_private(tmp_path / "id_old-cert.pub", cert.export_certificate(), 0o644)
    config = ca_sshd.provisioner_config("hpcuser", remote_python=remote_python, client_keys=[str(key_path)])
    km = jupyter_client.KernelManager(kernel_name=kernelspecs("cert-old", config))
    with pytest.raises(SSHConnectError, match="refused the login of hpcuser.*expired"):
        km.start_kernel()
