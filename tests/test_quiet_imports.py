"""Issue 30: what a process pays, and prints, for importing jupyter_hpc.

asyncssh's import makes cryptography print five "DSA is deprecated" warnings; every import of
asyncssh in jupyter_hpc goes through ``jupyter_hpc.ssh.quiet_import``, which filters exactly
those. Each check runs in a fresh interpreter (``sys.modules`` and the warnings registry of this
pytest process say nothing about a user's), with a control showing the warning would be seen.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

from server_helpers import Server

DSA = "DSA is deprecated"


def python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})


def test_asyncssh_warns_about_dsa_here_unless_imported_through_jupyter_hpc():
    bare = python("import asyncssh")
    assert DSA in bare.stderr, "control: this interpreter's asyncssh and cryptography no longer warn"
    # The filter covers asyncssh's own modules only: the same warning raised elsewhere still shows.
    quiet = python("""
        import warnings
        from jupyter_hpc.ssh.quiet_import import asyncssh
        from cryptography.utils import CryptographyDeprecationWarning
        warnings.warn("DSA is deprecated (from the user's code)", CryptographyDeprecationWarning)
    """)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr.count(DSA) == 1 and "from the user's code" in quiet.stderr, quiet.stderr


def test_every_module_gets_asyncssh_through_quiet_import():
    """A module importing asyncssh itself would, when imported first, print the warnings."""
    import re
    from pathlib import Path

    import jupyter_hpc

    package = Path(jupyter_hpc.__file__).parent
    direct = re.compile(r"^\s*(import asyncssh|from asyncssh\b)", re.M)
    offenders = [str(path.relative_to(package)) for path in package.rglob("*.py")
                 if path.name != "quiet_import.py" and direct.search(path.read_text())]
    assert offenders == [], "use `from jupyter_hpc.ssh.quiet_import import asyncssh` in: " + ", ".join(offenders)


def test_magics_and_an_ssh_kernels_provisioner_import_only_what_they_need():
    magics = python("""
        import sys
        import jupyter_hpc.magics
        print(sorted(m for m in sys.modules if m.split('.')[0] in ('asyncssh', 'cryptography')))
    """)
    assert magics.returncode == 0, magics.stderr
    assert magics.stdout.strip() == "[]", "import jupyter_hpc.magics pulled in " + magics.stdout

    # The entry point's import for an SSH kernel: no SLURM code, no server, hub or contents.
    provisioner = python("""
        import sys
        from jupyter_hpc.provisioners.ssh_provisioner import SSHProvisioner
        print(sorted(m for m in sys.modules if m.split('.')[0] in ('jupyter_server', 'jupyterhub')
                     or 'slurm' in m or m.startswith(('jupyter_hpc.server', 'jupyter_hpc.hub',
                     'jupyter_hpc.kernelspecs', 'jupyter_hpc.contents', 'jupyter_hpc.magics'))))
    """)
    assert provisioner.returncode == 0, provisioner.stderr
    assert provisioner.stdout.strip() == "[]", "the SSH provisioner's import pulled in " + provisioner.stdout
    assert DSA not in provisioner.stderr, provisioner.stderr


def test_a_script_and_a_fresh_server_with_one_site_print_no_dsa_warning(
    ssh_spec, sshd, kernel_user, remote_python, tmp_path
):
    # A script (the blocking KernelManager, as nbclient, papermill and jupyter console use it)
    # running a cell on an installed hpc-ssh kernelspec: no warning, and no SLURM code loaded.
    name = ssh_spec("hpc-quiet")
    script = python(f"""
        import sys
        from jupyter_client.manager import start_new_kernel
        km, kc = start_new_kernel(kernel_name={name!r})
        try:
            reply = kc.execute_interactive("print(6 * 7)", timeout=60)
            assert reply["content"]["status"] == "ok", reply
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
        print(sorted(m for m in sys.modules if 'slurm' in m or m.startswith(('jupyter_server', 'jupyterhub'))))
    """)
    assert script.returncode == 0, script.stderr
    assert "42" in script.stdout and script.stdout.strip().endswith("[]"), script.stdout
    assert DSA not in script.stderr, script.stderr

    # A fresh jupyter_server with one site: discovery imports asyncssh and logs in at start.
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    site = {"display_name": "Cori", **sshd.provisioner_config(kernel_user.pw_name, remote_python=remote_python)}
    (config_dir / "jupyter_server_config.json").write_text(json.dumps({
        "HPCSites": {"sites": {"cori": site}},
        "RemoteKernelSpecManager": {"include_local": False},
        "ServerApp": {"jpserver_extensions": {"jupyter_hpc": True}},
    }))
    server = Server(tmp_path, "--ServerApp.kernel_spec_manager_class=jupyter_hpc.kernelspecs.RemoteKernelSpecManager")
    try:
        deadline = time.monotonic() + 60
        while not [n for n in server.api("GET", "kernelspecs").json()["kernelspecs"] if n.startswith("cori-")]:
            assert time.monotonic() < deadline, "the site's kernelspecs never came:\n" + server.log
            time.sleep(0.2)
        assert DSA not in server.log, server.log
    finally:
        server.stop()
    assert DSA not in server.log, server.log
