"""Kernelspec discovery, run by the remote python: every kernelspec the user has, in one answer.

Sent on the SSH channel's stdin behind the launcher's bootstrap (see
:func:`jupyter_hpc.launcher.script_argv`), so nothing is installed on the cluster: standard
library only, Python 3.8 and newer. It reads one JSON request line (limits), walks the Jupyter
data paths in jupyter_client's order, and prints one line, ``MARKER`` then JSON::

    {"ok": true, "kernel_dirs": [...], "prefix": sys.prefix, "executable": sys.executable,
     "python_version": "3.11",
     "specs": [{"name", "dir", "file", "kernel_json": text, "resources": {name: base64}}],
     "warnings": ["<remote file>: why it was skipped", ...]}

It runs with the site module (``python -I``, no ``-S``), so that ``sys.prefix`` is a venv's
own, as its kernels and ``jupyter kernelspec list`` see it, and the venv's
``share/jupyter/kernels`` (where ``pip install ipykernel`` or xeus-python put their specs) is
listed. ``executable`` and ``python_version`` let the server give a spec whose argv starts
with ``python``, ``python3`` or ``python3.X`` this python, as jupyter_client does locally.

The marker lets the server find the answer behind whatever a login shell prints to stdout.
kernel.json is sent as text and checked by the server, which is the side that trusts nothing.

Order and shadowing are jupyter_client's (``KernelSpecManager.find_kernel_specs``): for each
directory in ``jupyter_path("kernels")`` and then ``~/.ipython/kernels``, each subdirectory
holding a ``kernel.json`` is a spec named by its lowercased directory name, and the first
directory to hold a name wins, even when its kernel.json then turns out to be unusable.

What is read is bounded: only regular files (a FIFO or a device named kernel.json would block
or never end), kernel.json up to ``max_kernel_json`` bytes, each logo up to ``max_resource``,
at most ``max_specs`` specs and ``max_total`` bytes in all. ``kernel.js`` is never read: a
launcher must not run code from a spec; nor is ``logo-svg.svg`` (an SVG can hold script, and
the server would serve it from its own origin): the PNG logos are enough for the launcher.
A spec whose directory, kernels directory or kernel.json belongs to another user (not this
user, not root) or can be written by anyone is skipped with a warning, unless it lies under
one of the site's ``trusted_dirs`` (a group software stack): its kernel would run that
user's code as this user. Symlinks: a kernel directory, kernel.json or logo reached through a symlink is followed
only when its target lies in the user's home or belongs to the user or to root; a symlink to
another user's file elsewhere (their kernel would run as this user) is skipped with a warning.
"""

import base64
import json
import os
import stat
import sys

MARKER = "JUPYTER-HPC-DISCOVERY "
RESOURCES = ("logo-32x32.png", "logo-64x64.png")
FALSE = ("no", "n", "false", "off", "0", "0.0")


class Skip(Exception):
    """A file that is not read; its text says why."""


def owned_by_me(path):
    try:
        return os.stat(path).st_uid == os.getuid()
    except OSError:
        return False


def prefer_environment_over_user(environ):
    """jupyter_core's rule: JUPYTER_PREFER_ENV_PATH, else a venv or a non-base conda env of ours."""
    if "JUPYTER_PREFER_ENV_PATH" in environ:
        return environ["JUPYTER_PREFER_ENV_PATH"].lower() not in FALSE
    if sys.prefix != getattr(sys, "base_prefix", sys.prefix) and owned_by_me(sys.prefix):
        return True
    conda = environ.get("CONDA_PREFIX")
    return bool(
        conda and sys.prefix.startswith(conda)
        and environ.get("CONDA_DEFAULT_ENV", "base") != "base" and owned_by_me(sys.prefix)
    )


def kernel_dirs(environ=None, home=None):
    """The directories searched, highest priority first (jupyter_core's jupyter_path, then
    IPython's legacy one), without duplicates."""
    environ = os.environ if environ is None else environ
    home = home or os.path.expanduser("~")
    paths = []
    if environ.get("JUPYTER_PATH"):
        paths.extend(p.rstrip(os.sep) for p in environ["JUPYTER_PATH"].split(os.pathsep) if p)
    data = environ.get("JUPYTER_DATA_DIR") or os.path.join(
        environ.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share"), "jupyter"
    )
    user = [data]
    userbase = os.path.join(home, ".local", "share", "jupyter")  # site.getuserbase() on Linux
    if userbase not in user:
        user.append(userbase)
    system = ["/usr/local/share/jupyter", "/usr/share/jupyter"]
    env = [p for p in [os.path.join(sys.prefix, "share", "jupyter")] if p not in system]
    paths.extend(env + user if prefer_environment_over_user(environ) else user + env)
    paths.extend(system)
    dirs = []
    for path in [os.path.join(p, "kernels") for p in paths]:
        if path not in dirs:
            dirs.append(path)
    ipython = environ.get("IPYTHONDIR") or os.path.join(home, ".ipython")
    legacy = os.path.join(os.path.expanduser(ipython), "kernels")
    if legacy not in dirs:
        dirs.append(legacy)
    return dirs


def within(path, directory):
    directory = directory.rstrip(os.sep) + os.sep
    return path == directory.rstrip(os.sep) or path.startswith(directory)


def read_bounded(path, expected, limit, real_home, trusted=()):
    """The bytes of ``path``, a regular file of at most ``limit`` bytes, or Skip.

    ``expected`` is where the file would be without symlinks in the kernel's directory; when
    it resolves elsewhere, the target must be in the home, in a trusted directory, or the
    user's or root's.
    """
    real = os.path.realpath(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise Skip("cannot be read (%s)" % (exc.strerror or exc))
    try:
        info = os.fstat(fd)
        if (real != expected and not within(real, real_home) and info.st_uid not in (os.getuid(), 0)
                and not any(within(real, t) for t in trusted)):
            raise Skip(
                "is a symlink to %s, owned by another user (uid %d), outside the home: not followed"
                % (real, info.st_uid)
            )
        if not stat.S_ISREG(info.st_mode):
            raise Skip("is not a regular file")
        if info.st_size > limit:
            raise Skip("is %d bytes, more than the %d allowed" % (info.st_size, limit))
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(65536, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise Skip("grew past the %d bytes allowed while read" % limit)
        return b"".join(chunks)
    except OSError as exc:
        raise Skip("cannot be read (%s)" % (exc.strerror or exc))
    finally:
        os.close(fd)


def foreign(path):
    """Why ``path`` could be changed by someone else (another user's, or writable by anyone), or ''."""
    try:
        info = os.stat(path)
    except OSError:
        return ""
    if info.st_uid not in (os.getuid(), 0):
        return "is owned by another user (uid %d)" % info.st_uid
    if info.st_mode & stat.S_IWOTH and not info.st_mode & stat.S_ISVTX:
        return "can be written by anyone"
    return ""


def untrusted(spec_dir, trusted):
    """Why the spec in ``spec_dir`` is not this user's own to run, or '' (trusted dirs exempt)."""
    real = os.path.realpath(spec_dir)
    if any(within(real, t) for t in trusted):
        return ""
    for path in (real, os.path.dirname(real), os.path.join(real, "kernel.json")):
        why = foreign(path)
        if why:
            return (
                "skipped: %s %s, so its kernel would run someone else's code as you (a site lists a "
                "shared software stack in its trusted_kernel_dirs)" % (path, why)
            )
    return ""


def is_kernel_dir(path):
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "kernel.json"))


def list_dir(directory, warnings):
    try:
        return sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        return []
    except OSError as exc:
        warnings.append("%s: cannot be listed (%s)" % (directory, exc.strerror or exc))
        return []


def discover(request, environ=None):
    """The answer dict for one request (limits); never raises for a bad spec."""
    max_json = int(request.get("max_kernel_json", 1 << 20))
    max_resource = int(request.get("max_resource", 512 << 10))
    max_specs = int(request.get("max_specs", 2000))
    max_total = int(request.get("max_total", 16 << 20))
    home = os.path.expanduser("~")
    real_home = os.path.realpath(home)
    trusted = [os.path.realpath(os.path.expanduser(t)) for t in request.get("trusted_dirs") or [] if t]
    total = 0
    dirs = kernel_dirs(environ, home)
    specs, warnings, seen = [], [], set()
    for directory in dirs:
        if not os.path.isdir(directory):
            continue
        real_directory = os.path.realpath(directory)
        for entry in list_dir(directory, warnings):
            path = os.path.join(directory, entry)
            if not is_kernel_dir(path):
                continue
            name = entry.lower()
            if name in seen:
                continue  # shadowed by a directory earlier on the path, as in jupyter_client
            seen.add(name)
            if len(specs) >= max_specs:
                warnings.append("%s: skipped, more than %d kernelspecs found" % (path, max_specs))
                continue
            kernel_file = os.path.join(path, "kernel.json")
            why = untrusted(path, trusted)
            if why:
                warnings.append("%s: %s" % (kernel_file, why))
                continue
            expected_dir = os.path.join(real_directory, entry)
            try:
                text = read_bounded(kernel_file, os.path.join(expected_dir, "kernel.json"), max_json, real_home, trusted)
                text = text.decode("utf-8")
            except Skip as exc:
                warnings.append("%s: %s" % (kernel_file, exc))
                continue
            except UnicodeDecodeError:
                warnings.append("%s: is not UTF-8 text" % kernel_file)
                continue
            resources = {}
            for resource in RESOURCES:
                resource_path = os.path.join(path, resource)
                if not os.path.lexists(resource_path):
                    continue
                try:
                    data = read_bounded(resource_path, os.path.join(expected_dir, resource), max_resource, real_home,
                                        trusted)
                except Skip as exc:
                    warnings.append("%s: %s" % (resource_path, exc))
                    continue
                resources[resource] = base64.b64encode(data).decode("ascii")
            size = len(text) + sum(len(r) for r in resources.values())
            if total + size > max_total:
                warnings.append("%s: skipped, the listing would pass %d bytes in all" % (kernel_file, max_total))
                continue
            total += size
            specs.append({"name": name, "dir": path, "file": kernel_file, "kernel_json": text,
                          "resources": resources})
    return {"ok": True, "kernel_dirs": dirs, "prefix": sys.prefix, "executable": sys.executable,
            "python_version": "%d.%d" % sys.version_info[:2], "specs": specs, "warnings": warnings}


def main():
    try:
        request = json.loads(sys.stdin.readline() or "{}")
        answer = discover(request if isinstance(request, dict) else {})
    except Exception as exc:  # the answer must always be one line the server can read
        answer = {"ok": False, "error": "%s: %s" % (type(exc).__name__, exc)}
    sys.stdout.write(MARKER + json.dumps(answer) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":  # as the bootstrap runs it; imported (tests), it only defines
    main()
