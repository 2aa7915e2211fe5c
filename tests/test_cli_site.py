"""`jupyter hpc site add` adds targets and changes only what it names; `jupyter hpc doctor`
takes a SLURM kernelspec and names the failing step (the real sshd and SLURM)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def hpc(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jupyter_hpc.cli.main", *args],
                          capture_output=True, text=True, timeout=timeout, env=dict(os.environ))


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "config"))
    return tmp_path / "config"


def test_site_add_adds_targets_and_a_second_add_keeps_them(config_dir):
    added = hpc("site", "add", "cori", "--host", "cori.example.org", "--user", "alice",
                "--target", "knl:hpc-slurm", "--target-set", "knl.partition=regular",
                "--target-set", "knl.time=01:00:00", "--target-set", "knl.nodes=2")
    assert added.returncode == 0, added.stdout + added.stderr
    assert "Targets: login (hpc-ssh), knl (hpc-slurm)." in added.stdout
    sites = hpc("sites")
    assert sites.returncode == 0, sites.stdout + sites.stderr
    row = next(line for line in sites.stdout.splitlines() if line.startswith("cori "))
    assert "alice@cori.example.org" in row and row.endswith("login (hpc-ssh), knl (hpc-slurm)"), sites.stdout

    # A setting written by hand beside the command's, then a second add changing the host only.
    path = config_dir / "jupyter_server_config.json"
    config = json.loads(path.read_text())
    config["HPCSites"]["sites"]["cori"]["targets"]["knl"]["constraint"] = "knl"
    config["ServerApp"] = {"kernel_manager_class": "jupyter_hpc.server.HPCMappingKernelManager"}
    path.write_text(json.dumps(config))
    changed = hpc("site", "add", "cori", "--host", "cori2.example.org")
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert changed.stdout.startswith("Changed site 'cori'")
    config = json.loads(path.read_text())
    entry = config["HPCSites"]["sites"]["cori"]
    assert entry["host"] == "cori2.example.org" and entry["username"] == "alice"
    assert entry["targets"] == {"login": {}, "knl": {"provisioner": "hpc-slurm", "partition": "regular",
                                                     "time": "01:00:00", "nodes": 2, "constraint": "knl"}}
    assert config["ServerApp"] == {"kernel_manager_class": "jupyter_hpc.server.HPCMappingKernelManager"}

    # Mistakes are said with the form to use, and change nothing.
    before = path.read_text()
    for argv, said in (
        (["--target-set", "gpu.partition=x"], "no target 'gpu'; add it with --target gpu:hpc-slurm"),
        (["--target-set", "knl.partitio=x"], "Unknown setting(s) 'partitio' in target 'knl'"),
        (["--target-set", "knl=x"], "NAME.KEY=VALUE"),
        (["--target", "gpu:slurm"], "names provisioner 'slurm'"),
    ):
        refused = hpc("site", "add", "cori", *argv)
        assert refused.returncode == 2 and said in refused.stdout, (argv, refused.stdout)
    assert path.read_text() == before
    new = hpc("site", "add", "perlmutter")
    assert new.returncode == 2 and "needs --host" in new.stdout
    removed = hpc("site", "add", "cori", "--remove-target", "knl")
    assert removed.returncode == 0 and "Targets: login (hpc-ssh)." in removed.stdout


def scontrol(*args: str) -> None:
    subprocess.run(["scontrol", *args], check=True, capture_output=True, timeout=30)


def test_doctor_takes_a_slurm_kernelspec_and_names_a_partition_held_down(kernelspecs, sshd, kernel_user,
                                                                          remote_python, slurm):
    config = sshd.provisioner_config(kernel_user.pw_name, remote_python=remote_python)
    name = kernelspecs("cori-knl", {**config, "partition": "regular", "node_port": sshd.port},
                       provisioner="hpc-slurm", display_name="Cori: Python 3 (KNL)")
    good = hpc("doctor", name)
    assert good.returncode == 0, good.stdout + good.stderr
    for step in ("login", "remote python", "slurm", "partition", "nodes"):
        assert f"[ok  ] {step}" in good.stdout, good.stdout
    assert "partition regular is up" in good.stdout and "SSH to compute node" in good.stdout

    scontrol("update", "PartitionName=regular", "State=DOWN")
    try:
        down = hpc("doctor", name)
    finally:
        scontrol("update", "PartitionName=regular", "State=UP")
    assert down.returncode == 1, down.stdout + down.stderr
    assert "[FAIL] partition" in down.stdout and "partition regular is down" in down.stdout, down.stdout
    assert "choose another partition" in down.stdout and "nodes" not in down.stdout.split("[FAIL] partition")[1]

    missing = kernelspecs("cori-nowhere", {**config, "partition": "nowhere"}, provisioner="hpc-slurm")
    result = hpc("doctor", missing)
    assert result.returncode == 1 and "partition nowhere does not exist" in result.stdout, result.stdout
