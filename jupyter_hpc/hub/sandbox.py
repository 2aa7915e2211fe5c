"""Each user's server in an unprivileged bubblewrap sandbox, as Flatpak runs its apps: argv, no root.

Every user's server runs as the hub's own unix user, which also owns the hub's database (every
user's encrypted key), its config and cookie secret, and every other user's server directory.
A hole in one server would reach all of that. So :class:`~jupyter_hpc.hub.spawner.HPCSpawner`
starts each server inside ``bwrap`` (Debian's ``bubblewrap``) with new user, mount, pid and IPC
namespaces, ``--die-with-parent`` and ``--new-session`` (bwrap always sets no-new-privileges
when unprivileged). The server's file system is:

- the Python environment and ``/usr`` read-only (``/lib``, ``/bin`` as the host links them);
- from ``/etc``, only what a Python process, TLS and name lookups need (:data:`ETC_FILES`), not
  ``/etc/jupyterhub``;
- the site files the server must read (``known_hosts``), read-only;
- its own user directory read-write (HOME, config, runtime, files);
- a private ``/tmp``, ``/dev`` and a ``/proc`` of its own pid namespace.

Nothing else of the host: not the hub's home, database, config or cookie secret, not another
user's directory; no other process is visible (their ``/proc/<pid>/environ`` included). The
network is shared: the server talks to the hub API and to the cluster.

Memory limits need a cgroup the hub's user may write (a systemd user slice with delegation);
bwrap sets none, so :func:`memory_limit_note` says so when ``Spawner.mem_limit`` is set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

#: What of /etc a sandboxed server sees (read-only, each where it exists).
ETC_FILES = (
    "/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/hosts", "/etc/host.conf", "/etc/resolv.conf",
    "/etc/gai.conf", "/etc/localtime", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d",
    "/etc/ssl", "/etc/ca-certificates", "/etc/alternatives", "/etc/mime.types", "/etc/jupyter",
)
#: Top-level paths that merged-/usr systems make links into /usr; bound as they are on the host.
USR_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")

WHAT_OFF_GIVES_UP = (
    "every user's server runs as the hub's unix user with the hub's whole file system and "
    "processes in view, so a hole in one server reads the hub's database (every user's encrypted SSH key), "
    "its config and cookie secret, other users' server directories and processes"
)


class SandboxUnavailable(RuntimeError):
    """bwrap is missing or cannot make unprivileged namespaces here."""


def bwrap() -> str | None:
    return shutil.which("bwrap")


def check_available() -> None:
    """Raise :class:`SandboxUnavailable` naming the fix, unless a sandbox starts here."""
    binary = bwrap()
    if binary is None:
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is not installed: install it (Debian: apt-get install bubblewrap), "
            f"or set c.HPCSpawner.sandbox = 'off' accepting that {WHAT_OFF_GIVES_UP}."
        )
    probe = [binary, "--unshare-user", "--unshare-pid", "--unshare-ipc", "--die-with-parent",
             "--ro-bind", "/", "/", "true"]
    try:
        result = subprocess.run(probe, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxUnavailable(f"bwrap could not run: {exc}") from None
    if result.returncode != 0:
        raise SandboxUnavailable(
            f"bwrap cannot make unprivileged namespaces here ({result.stderr.strip() or result.returncode}): "
            "allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 / "
            "user.max_user_namespaces), or set c.HPCSpawner.sandbox = 'off' accepting that "
            f"{WHAT_OFF_GIVES_UP}."
        )


def python_paths() -> list[str]:
    """The hub's Python environment: the venv, the interpreter it was made from, and
    jupyter_hpc's own source where it lives outside them (an editable install: its package
    directory and egg-info, never the whole checkout)."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    package = Path(__file__).resolve().parent.parent
    paths.add(str(package))
    paths.update(str(info) for info in package.parent.glob("jupyter_hpc*.egg-info"))
    paths = {os.path.realpath(path) for path in paths}
    # Only the outermost of nested paths (a venv's package inside the venv is bound with it).
    return sorted(path for path in paths if not any(path != other and path.startswith(other + os.sep) for other in paths))


def argv(user_dir: Path, read_only: Iterable[str] = ()) -> list[str]:
    """The bwrap argv before the server's own: ``[bwrap, ..., "--"]``."""
    binary = bwrap()
    if binary is None:
        raise SandboxUnavailable("bubblewrap (bwrap) is not installed")
    args = [binary, "--unshare-user", "--unshare-pid", "--unshare-ipc", "--die-with-parent", "--new-session",
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",  # first: binds below may be under /tmp
            "--ro-bind", "/usr", "/usr"]
    for link in USR_LINKS:
        if os.path.islink(link):
            args += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            args += ["--ro-bind", link, link]
    for path in ETC_FILES:
        args += ["--ro-bind-try", path, path]
    for path in python_paths():
        if path != "/usr" and not path.startswith("/usr/"):
            args += ["--ro-bind", path, path]
    for path in read_only:
        args += ["--ro-bind-try", path, path]
    user_dir = str(user_dir)
    args += ["--bind", user_dir, user_dir, "--chdir", user_dir, "--"]
    return args


def memory_limit_note(mem_limit: int | None) -> str | None:
    """What the log says when a memory limit is asked for: bwrap cannot set one."""
    if not mem_limit:
        return None
    return (
        f"Spawner.mem_limit ({mem_limit} bytes) is not enforced: a memory limit needs a cgroup the hub's "
        "user may write (a systemd user slice with delegation), which this sandbox does not set up"
    )
