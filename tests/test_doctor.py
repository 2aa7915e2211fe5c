"""`jupyter hpc doctor KERNEL` says which transport a site gets, and why; or what to fix."""

from __future__ import annotations

import os
import subprocess
import sys



def doctor(kernel: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jupyter_hpc.cli.main", "doctor", kernel],
        capture_output=True, text=True, timeout=60, env=dict(os.environ),
    )


def test_doctor_reports_unix_socket_transport(kernelspecs, sshd, kernel_user, remote_python):
    config = sshd.provisioner_config(kernel_user.pw_name, remote_python=remote_python)
    result = doctor(kernelspecs("cori-login", config, display_name="Cori: Python 3 (login)"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("Cori: Python 3 (login) (hpcuser@127.0.0.1):")
    assert "[ok  ] login" in result.stdout
    assert "[ok  ] transport      ipc: kernels listen on Unix sockets" in result.stdout


def test_doctor_reports_curve_fallback_and_why(kernelspecs, sshd_without_streamlocal, kernel_user, remote_python):
    config = sshd_without_streamlocal.provisioner_config(kernel_user.pw_name, remote_python=remote_python)
    result = doctor(kernelspecs("nosl", config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tcp+curve" in result.stdout and "AllowStreamLocalForwarding no" in result.stdout


def test_doctor_stops_at_the_first_failure(ssh_spec):
    result = doctor(ssh_spec(remote_python="/no/python3"))
    assert result.returncode == 1
    assert "[FAIL] remote python" in result.stdout and "set remote_python" in result.stdout
    assert "transport" not in result.stdout


def test_doctor_names_unknown_kernels(kernelspecs):
    result = doctor("no-such-kernel")
    assert result.returncode == 2 and "jupyter kernelspec list" in result.stdout


def test_doctor_names_a_misspelt_setting(ssh_spec):
    result = doctor(ssh_spec(hots="cori"))
    assert result.returncode == 2 and "'hots'" in result.stdout and "Traceback" not in result.stderr
