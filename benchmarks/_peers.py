"""The peers for kernel_start.py: remote_ikernel and gateway_provisioners' DistributedProvisioner,
installed in a venv of their own and given kernelspecs for the namespace's sshd.

* The peers go to ``/opt/jupyter-hpc-bench/peers``, a venv made with ``--system-site-packages``
  from this Python: it sees jupyter_hpc and jupyter_client from here and adds remote_ikernel,
  gateway_provisioners, paramiko and notebook without touching the environment the tests use.
  ``kernel_start.py`` re-executes itself with that venv's python.
* gateway_provisioners' launcher (``launch_ipykernel.py`` + ``server_listener.py``, assembled by
  its own ``jupyter-ssh-spec install``) imports ``Cryptodome`` on the remote side: pycryptodomex
  goes to ``/opt/jupyter-hpc-bench/gp-remote-lib`` (``pip --target``, for the remote Python)
  and the kernelspec's ``env`` puts it on the remote ``PYTHONPATH``; the test bed's venv itself
  is not changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

PEERS_VENV = Path("/opt/jupyter-hpc-bench/peers")
REMOTE_LIB = Path("/opt/jupyter-hpc-bench/gp-remote-lib")
PEER_PACKAGES = ["remote_ikernel==0.4.6", "gateway_provisioners==0.5.0"]
SSH_ALIAS = "bench-ns"


def peers_importable() -> str | None:
    """None if both peers are installed here, else what is missing. Not imported: gateway_provisioners
    reads its GP_* settings from the environment at import, and they are set later."""
    import importlib.util

    missing = [name for name in ("remote_ikernel", "gateway_provisioners", "paramiko")
               if importlib.util.find_spec(name) is None]
    return f"not importable here: {', '.join(missing)}" if missing else None


def ensure_peers_venv() -> Path:
    """The peers' venv python (made and filled once); raises CalledProcessError if pip fails."""
    python = PEERS_VENV / "bin" / "python"
    if not python.exists():
        PEERS_VENV.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(PEERS_VENV)], check=True)
    probe = [str(python), "-c", "import remote_ikernel.kernel, gateway_provisioners.distributed"]
    if subprocess.run(probe, capture_output=True).returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)
    return python


def ensure_remote_lib(remote_python: str) -> Path:
    if not (REMOTE_LIB / "Cryptodome").exists():
        subprocess.run([remote_python, "-m", "pip", "install", "-q", "--target", str(REMOTE_LIB), "pycryptodomex"],
                       check=True)
        subprocess.run(["chmod", "-R", "a+rX", str(REMOTE_LIB)], check=True)
    return REMOTE_LIB


def remote_ikernel_spec(bed, name: str = "bench-remote-ikernel") -> str:
    """remote_ikernel's ``--interface ssh`` against a private OpenSSH config Host entry.

    remote_ikernel runs plain ``ssh -o StrictHostKeyChecking=no HOST`` (a login shell it types
    into) and ``ssh -L … HOST sleep 600`` (the tunnel), with no way to pass ``-F`` to the
    tunnel: an ``ssh`` wrapper first on the kernel's PATH adds ``-F <our config>``, so root's own
    ``~/.ssh`` is not touched. Its ``StrictHostKeyChecking=no`` stays in force (a command-line
    ``-o`` wins over the config file)."""
    daemon = bed.sshd
    root = bed.root / "remote_ikernel"
    wrappers = root / "bin"
    wrappers.mkdir(parents=True, exist_ok=True)
    config = root / "ssh_config"
    config.write_text(
        f"Host {SSH_ALIAS}\n"
        f"  HostName {daemon.host}\n"
        f"  Port {daemon.port}\n"
        f"  User {bed.user.pw_name}\n"
        f"  IdentityFile {daemon.client_key}\n"
        f"  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {daemon.known_hosts}\n"
        f"  BatchMode yes\n"
        f"  LogLevel ERROR\n"
    )
    ssh = wrappers / "ssh"
    ssh.write_text(f'#!/bin/sh\nexec /usr/bin/ssh -F {config} "$@"\n')
    ssh.chmod(0o755)
    argv = [
        str(PEERS_VENV / "bin" / "python"), "-m", "remote_ikernel", "--interface", "ssh", "--host", SSH_ALIAS,
        "--workdir", bed.user.pw_dir,
        "--kernel_cmd", f"{bed.remote_python} -m ipykernel_launcher -f {{host_connection_file}}",
        "{connection_file}",
    ]
    spec = {
        "argv": argv, "display_name": name, "language": "python", "interrupt_mode": "signal",
        "env": {"PATH": f"{wrappers}:{os.environ.get('PATH', '/usr/bin:/bin')}"}, "metadata": {},
    }
    directory = bed.jupyter_path / "kernels" / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "kernel.json").write_text(json.dumps(spec))
    return name


def gateway_spec(bed, name: str = "bench-gateway") -> str:
    """DistributedProvisioner's kernelspec, made by its own ``jupyter-ssh-spec install
    --remote-hosts <namespace address>``; the launcher run by the test bed's remote python.

    Its SSH settings come from the environment (set in kernel_start.py before the import):
    ``GP_REMOTE_USER``, ``GP_SSH_PORT`` (22), ``GP_RESPONSE_IP`` (the host end of the veth, so
    the launcher in the namespace can answer), ``GP_RESPONSE_PORT``; paramiko loads the key and
    ``known_hosts`` from ``~/.ssh`` (HOME points at a private directory, see ``private_home``)
    with ``RejectPolicy`` for unknown hosts."""
    prefix = bed.root / "gateway"
    subprocess.run(
        [str(PEERS_VENV / "bin" / "jupyter-ssh-spec"), "install", f"--prefix={prefix}",
         f"--remote-hosts={bed.sshd.host}", f"--kernel-name={name}", "--log-level=ERROR"],
        check=True, capture_output=True, text=True,
    )
    source = prefix / "share" / "jupyter" / "kernels" / name
    directory = bed.jupyter_path / "kernels" / name
    shutil.copytree(source, directory, dirs_exist_ok=True)
    spec_path = directory / "kernel.json"
    spec = json.loads(spec_path.read_text())
    spec["argv"] = [bed.remote_python if arg == "python" else arg.replace(str(source), str(directory))
                    for arg in spec["argv"]]
    spec["env"] = dict(spec.get("env") or {}, PYTHONPATH=str(ensure_remote_lib(bed.remote_python)),
                       KERNEL_USERNAME=bed.user.pw_name)
    spec["display_name"] = name
    spec_path.write_text(json.dumps(spec))
    subprocess.run(["chmod", "-R", "a+rX", str(directory)], check=True)
    return name


@contextlib.contextmanager
def gateway_response_manager_only_while_starting():
    """Let gateway's ResponseManager poll only during gateway's own starts.

    Once created it runs ``PeriodicCallback(_process_connections, 0.1)`` on the process's
    event loop for good, and each call blocks that loop in ``accept()`` for up to
    ``GP_SOCKET_TIMEOUT`` (0.01 s): every await of every other variant measured afterwards in
    this process would wait up to 10 ms per wake-up (hpc-ssh pre-started went from 16 to 46 ms
    in ``start_kernel``). So it is stopped after each gateway start and restarted before the next.
    """
    from gateway_provisioners.response_manager import ResponseManager

    manager = ResponseManager._instance
    if manager is not None and manager._connection_processor is None:
        manager._start_response_manager()
    try:
        yield
    finally:
        manager = ResponseManager._instance
        if manager is not None:
            manager.stop_response_manager()


def private_home(bed) -> Path:
    """A HOME for this process with ``.ssh/id_ed25519`` and ``.ssh/known_hosts`` for the
    namespace's sshd: paramiko (DistributedProvisioner) reads only ``~/.ssh``."""
    home = bed.root / "home"
    ssh = home / ".ssh"
    ssh.mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.copy(bed.sshd.client_key, ssh / "id_ed25519")
    os.chmod(ssh / "id_ed25519", 0o600)
    shutil.copy(bed.sshd.known_hosts, ssh / "known_hosts")
    return home
