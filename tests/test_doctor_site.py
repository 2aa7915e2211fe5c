"""`jupyter hpc doctor SITE` names the failing step of a site and its fix; a good site passes all."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import asyncssh
import pytest

from testbed.sshd import free_port


@pytest.fixture
def site_config(tmp_path, monkeypatch, sshd, kernel_user, remote_python):
    """Write c.HPCSites.sites into a fresh JUPYTER_CONFIG_DIR, as `jupyter hpc site add` does."""
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "config"))
    (tmp_path / "config").mkdir()

    def write(**site) -> str:
        entry = sshd.provisioner_config(kernel_user.pw_name, remote_python=remote_python, display_name="Cori")
        entry.update(site)
        (tmp_path / "config" / "jupyter_server_config.json").write_text(
            json.dumps({"HPCSites": {"sites": {"cori": entry}}}))
        return "cori"

    return write


def doctor(name: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jupyter_hpc.cli.main", "doctor", name],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ))


def test_a_good_site_with_a_slurm_target_passes_every_step(site_config, slurm, sshd):
    result = doctor(site_config(targets={"login": {}, "cpu": {"provisioner": "hpc-slurm", "node_port": sshd.port}}))
    assert result.returncode == 0, result.stdout + result.stderr
    for step in ("name", "network", "host key", "login", "remote python", "transport", "slurm cpu", "partition cpu", "nodes cpu"):
        assert f"[ok  ] {step}" in result.stdout, result.stdout
    assert "SSH to compute node" in result.stdout


def test_a_changed_host_key_is_the_failing_step(site_config, tmp_path, sshd):
    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[{sshd.host}]:{sshd.port} {impostor}\n")
    result = doctor(site_config(known_hosts=str(known_hosts)))
    assert result.returncode == 1
    assert "[FAIL] host key" in result.stdout and "ssh-keygen -R" in result.stdout
    assert "[ok  ] login" not in result.stdout


def test_a_python_without_ipykernel_is_named_with_the_fix(site_config):
    from jupyter_hpc.cli.config import load_sites
    from jupyter_hpc.doctor import render
    from jupyter_hpc.site_doctor import diagnose_site
    from jupyter_hpc.ssh import run_in_ssh_loop_sync

    name = site_config()
    site = load_sites().site(name)
    # Debian's own python3 on the "cluster" has no ipykernel; the test venv's python has.
    kernels = [("bare", ["/usr/bin/python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"]),
               ("venv", [site.remote_python, "-m", "ipykernel_launcher", "-f", "{connection_file}"])]
    report = render("Cori:", run_in_ssh_loop_sync(diagnose_site(site, kernels)))
    assert "[FAIL] kernel bare" in report and "/usr/bin/python3 cannot import ipykernel" in report
    assert "pip install --user ipykernel" in report
    assert "[ok  ] kernel venv" in report


def test_compute_nodes_refusing_ssh_name_node_port_and_direct(site_config, slurm):
    result = doctor(site_config(targets={"cpu": {"provisioner": "hpc-slurm", "node_port": free_port(),
                                                 "launch_timeout": 10}}))
    assert result.returncode == 1
    assert "[FAIL] nodes cpu" in result.stdout and "compute node" in result.stdout
    assert "node_port" in result.stdout and 'node_access = "direct"' in result.stdout


def test_an_unresolvable_host_stops_at_the_name(site_config):
    result = doctor(site_config(host="no-such-host.invalid"))
    assert result.returncode == 1 and "[FAIL] name" in result.stdout and "does not resolve" in result.stdout
