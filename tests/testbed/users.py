"""Unix users for the test bed: the scientist who logs in, and a neighbour on the same node."""

from __future__ import annotations

import os
import pwd
import subprocess

KERNEL_USER = "hpcuser"
NEIGHBOUR_USER = "hpcspy"


def ensure_user(name: str) -> pwd.struct_passwd:
    """Create ``name`` with a home if missing, unlocked for key logins (``useradd`` locks)."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True)
        entry = pwd.getpwnam(name)
    subprocess.run(["usermod", "-p", "*", name], check=True)
    return entry


def run_as(name: str, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run argv as another unix user (root only), with that user's home as HOME."""
    entry = pwd.getpwnam(name)
    env = {"HOME": entry.pw_dir, "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    return subprocess.run(["runuser", "-u", name, "--", *argv], env=env, **kwargs)
