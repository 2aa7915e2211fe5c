"""`jupyter hpc kernels|install|uninstall|kernel create` against the real sshd and a real server.

The user ``hpccli`` and its sshd are this module's own, so its remote kernelspecs collide with
no other test's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jupyter_client
import pytest

from kernel_helpers import execute
from server_helpers import Server
from testbed.sshd import running_sshd
from testbed.users import ensure_user

USER = "hpccli"


@pytest.fixture(scope="module")
def cli_user():
    return ensure_user(USER)


@pytest.fixture(scope="module")
def cli_sshd(cli_user):
    with running_sshd([USER], "cli") as daemon:
        yield daemon


@pytest.fixture
def cli_site(tmp_path, monkeypatch, cli_user, cli_sshd, remote_python):
    """A site "cori" for hpccli in a fresh config dir, a fresh data dir, and one remote kernelspec
    in the user's ~/.ipython/kernels/py3."""
    for name in ("config", "data", "runtime"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "data"))
    home = Path(cli_user.pw_dir)
    for kernels in (home / ".ipython" / "kernels", home / ".local" / "share" / "jupyter" / "kernels"):
        shutil.rmtree(kernels, ignore_errors=True)
    spec = home / ".ipython" / "kernels" / "py3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [remote_python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3", "language": "python",
    }))
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(home / ".ipython")], check=True)
    entry = cli_sshd.provisioner_config(USER, remote_python=remote_python, display_name="Cori")
    (tmp_path / "config" / "jupyter_server_config.json").write_text(
        json.dumps({"HPCSites": {"sites": {"cori": entry}}}))
    yield tmp_path
    subprocess.run(["rm", "-rf", str(home / ".ipython"), str(home / ".local")], check=False)


def hpc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jupyter_hpc.cli.main", *args],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ))


def test_install_then_plain_kernelspec_list_shows_the_sites_kernel_and_it_runs(cli_site):
    installed = hpc("install", "cori")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "installed cori-login-py3: Cori: Python 3 (login)" in installed.stdout
    listing = subprocess.run([sys.executable, "-m", "jupyter_client.kernelspecapp", "list", "--json"],
                             capture_output=True, text=True, check=True, env=dict(os.environ))
    specs = json.loads(listing.stdout)["kernelspecs"]
    assert specs["cori-login-py3"]["spec"]["display_name"] == "Cori: Python 3 (login)"
    km = jupyter_client.KernelManager(kernel_name="cori-login-py3")
    km.start_kernel()
    try:
        client = km.client()
        client.start_channels()
        client.wait_for_ready(timeout=60)
        out = execute(client, "import getpass, os; print(getpass.getuser(), 'SSH_CONNECTION' in os.environ)")
        assert out["stdout"].split() == [USER, "True"]
        client.stop_channels()
    finally:
        km.shutdown_kernel(now=True)
    removed = hpc("uninstall", "cori")
    assert removed.returncode == 0 and "removed cori-login-py3" in removed.stdout
    assert not (cli_site / "data" / "kernels" / "cori-login-py3").exists()
    assert hpc("uninstall", "cori").returncode == 2  # nothing left: says so


def test_kernel_create_then_kernels_refresh_shows_it_in_a_running_server(cli_site, cli_user, remote_python):
    server = Server(cli_site, "--ServerApp.kernel_spec_manager_class=jupyter_hpc.kernelspecs.RemoteKernelSpecManager",
                    "--RemoteKernelSpecManager.include_local=False")
    try:
        server.first_listing()
        assert "cori-login-py3" in server.api("GET", "kernelspecs").json()["kernelspecs"]
        made = hpc("kernel", "create", "cori", "--name", "made", "--python", remote_python,
                   "--display-name", "Made here", "--setup", "export MADE=1")
        assert made.returncode == 0, made.stdout + made.stderr
        remote_file = Path(cli_user.pw_dir) / ".local/share/jupyter/kernels/made/kernel.json"
        assert os.stat(remote_file).st_uid == cli_user.pw_uid
        assert json.loads(remote_file.read_text())["metadata"]["jupyter_hpc"]["setup"] == ["export MADE=1"]
        listed = hpc("kernels", "cori", "--refresh", "--json")
        assert listed.returncode == 0, listed.stdout + listed.stderr
        report = json.loads(listed.stdout)["cori"]
        by_name = {kernel["name"]: kernel for kernel in report["kernels"]}
        assert by_name["cori-login-made"]["display_name"] == "Cori: Made here (login)"
        assert by_name["cori-login-made"]["remote_file"] == str(remote_file)
        assert report["servers_refreshed"] == 1, (os.listdir(cli_site / "runtime"), listed.stderr)
        specs = server.api("GET", "kernelspecs").json()["kernelspecs"]
        assert specs["cori-login-made"]["spec"]["display_name"] == "Cori: Made here (login)"
    finally:
        server.stop()


def test_bad_names_and_unknown_sites_are_usage_errors(cli_site):
    assert hpc("kernel", "create", "cori", "--name", "../x", "--python", "p").returncode == 2
    unknown = hpc("install", "hopper")
    assert unknown.returncode == 2 and "No site named 'hopper'" in unknown.stdout
    assert hpc("kernels", "hopper").returncode == 2


def test_doctor_site_checks_each_discovered_kernels_python(cli_site, cli_user):
    bare = Path(cli_user.pw_dir) / ".ipython" / "kernels" / "bare"
    bare.mkdir()
    (bare / "kernel.json").write_text(json.dumps({  # Debian's own python3 there has no ipykernel
        "argv": ["/usr/bin/python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Bare", "language": "python",
    }))
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(bare)], check=True)
    result = hpc("doctor", "cori")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "[FAIL] kernel bare" in result.stdout and "cannot import ipykernel" in result.stdout
    assert "[ok  ] kernel py3" in result.stdout
