"""The remote launcher: starts one kernel on the cluster and watches over it.

This file is sent, as it is, over the SSH channel to the remote python's stdin, so nothing
has to be installed on the cluster: it uses the standard library only and runs on
Python 3.8 and newer. It is also importable locally, where the tests drive its functions.

Protocol (one JSON object per line):

* in: a request, ``{"op": "launch", "argv": [...], "env": {...}, "cwd": ..., "setup": [...],
  "key": ..., "transport": "ipc" | "tcp", "lease": seconds, "listeners": "private" | "off" |
  "open", "shim": source, ...}`` (the shim keeps an ipykernel's other listeners private to
  its owner: kernel_shim.py, written once into the private runtime directory). The signing key arrives
  here, on stdin, never on a command line. Or ``{"op": "attach", "kernel_dir": ..., "pid":
  ...}`` to take over a kernel whose launcher lost its channel and waits out its lease.
* out: the answer, ``{"ok": true, "pid": ..., "host": ..., "transport": ..., "ip": ...,
  "ports": {...}, "kernel_dir": ..., "connection_file": ..., "listeners": {...} | null}`` or ``{"ok": false, "error":
  ...}``.
* then in: ``{"op": "signal", "signum": N}``, ``{"op": "lease", "seconds": N}`` or
  ``{"op": "cleanup"}``; out:
  ``{"event": "exited", "status": N}`` when the kernel ends and ``{"event": "cleaned"}``.

The launcher stays alive as the kernel's monitor: the server learns of the kernel's exit the
moment it happens (poll() answers from that, with no round trip), and signals travel over the
same channel. When the channel closes without a cleanup (the connection dropped), the kernel
is kept for ``lease`` seconds and then killed with its files removed, so nothing is orphaned.
"""

import json
import os
import shutil
import signal
import socket
import string
import subprocess
import stat
import sys
import tempfile
import threading
import time
import zlib

CHANNELS = ("shell", "iopub", "stdin", "control", "hb")
SOCKET_PREFIX = "k"
KERNEL_LOG = "kernel.log"
MONITOR_FILE = "monitor.pid"
CONNECTION_FILE = "kernel.json"
CONTAINER_MARKER = "container"  # in the kernel's directory: its argv starts a container
PROBE_SOCKET = "probe"  # the launcher's own socket: does the site forward to Unix sockets?
PROBE_WAIT = 30.0  # seconds the probe socket waits for the server's one connection
# A Unix socket's path has at most 107 bytes (sun_path holds 108 with its NUL, on Linux), and
# ZMQ's ipc transport refuses longer ones. The longest name a kernel directory holds: "pipe-999".
SOCKET_PATH_MAX = 107
LONGEST_SOCKET_NAME = 8
SHORT_DIR_PREFIX = "jh-"  # a directory made in TMPDIR (random name, 0700) where paths must be short
# xeus-zmq (xeus-python, xeus-cling, xeus-r...) reads each bound endpoint back into a 32-byte
# buffer and dies with "Invalid argument" when "ipc://<path>-<n>" is longer (xeus-zmq issue
# 15): a kernel's channel sockets go where their endpoints stay within 31 characters.
SHORT_ENDPOINT_MAX = 31
CONTAINER_GRACE = 5.0  # seconds a container kernel has between SIGTERM and SIGKILL


class LaunchFailure(Exception):
    """A request the launcher cannot carry out; its text is what the user reads."""


def seconds(request, name, default):
    """A duration from the request: a finite number >= 0 (NaN or infinity would wait forever)."""
    value = request.get(name, default)
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        number = float("nan")
    if isinstance(value, bool) or not 0 <= number < 1e9:
        raise LaunchFailure("%s must be a number of seconds, not %r" % (name, value))
    return number


def private_runtime_dir(environ=None):
    """A directory only this user can enter: $XDG_RUNTIME_DIR/jupyter-hpc or ~/.jupyter-hpc/run."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_RUNTIME_DIR")
    if not (base and os.path.isdir(base) and os.stat(base).st_uid == os.getuid()):
        base = os.path.join(os.path.expanduser("~"), ".jupyter-hpc")
        _make_private_dir(base)
        base = os.path.join(base, "run")
    else:
        base = os.path.join(base, "jupyter-hpc")
    _make_private_dir(base)
    return base


def _make_private_dir(path):
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not os.path.isdir(path) or os.path.islink(path) or info.st_uid != os.getuid():
        raise LaunchFailure("%s is not a directory owned by this user; remove it and retry" % path)
    if info.st_mode & 0o077:
        os.chmod(path, 0o700)


def make_kernel_dir(runtime_dir, kernel_id):
    """The kernel's own 0700 directory: its sockets, connection file and log live there.

    HPC homes are deep (``/global/homes/a/alice/.jupyter-hpc/run``): where the sockets' paths
    would pass the 107 bytes a Unix socket path may have, the directory is made in TMPDIR
    instead (a fresh 0700 directory with a random name), or the launch fails naming the limit.
    """
    safe = "".join(c for c in str(kernel_id) if c.isalnum())[:8] or "kernel"
    name_length = len(safe) + 2 * 12  # "-<pid>-<attempt>", generously
    if not socket_paths_fit(runtime_dir, name_length):
        return make_short_kernel_dir(runtime_dir, safe)
    for attempt in range(100):
        path = os.path.join(runtime_dir, "%s-%d-%d" % (safe, os.getpid(), attempt))
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        os.chmod(path, 0o700)
        return path
    raise LaunchFailure("could not create a kernel directory in %s" % runtime_dir)


def socket_paths_fit(parent, name_length):
    """Whether sockets in a directory of ``name_length`` characters in ``parent`` fit the limit."""
    return len(os.fsencode(parent)) + 1 + name_length + 1 + LONGEST_SOCKET_NAME <= SOCKET_PATH_MAX


def make_short_kernel_dir(runtime_dir, safe):
    """A kernel directory in TMPDIR (0700, random name, ours) for a runtime dir too deep."""
    base = tempfile.gettempdir()
    prefix = SHORT_DIR_PREFIX + safe + "-"
    if not socket_paths_fit(base, len(prefix) + 8):
        raise LaunchFailure(
            "the kernel's Unix socket paths would be longer than the %d bytes a socket path may "
            "have, in %s (%d bytes) and in %s alike. Set TMPDIR (or XDG_RUNTIME_DIR) to a short "
            "directory of yours in the login environment, or give the kernel a TCP transport "
            "(remote_transport, or the kernelspec's metadata.jupyter_hpc.transport: 'tcp-curve')"
            % (SOCKET_PATH_MAX, runtime_dir, len(os.fsencode(runtime_dir)), base)
        )
    return mark_host(tempfile.mkdtemp(prefix=prefix, dir=base))


def make_socket_dir(kernel_dir):
    """Where the channels' Unix sockets go: the kernel's directory when their endpoints are
    short enough for every kernel (SHORT_ENDPOINT_MAX), else a fresh 0700 directory with a
    random name in TMPDIR (``/tmp/jh-k2x9a1qz``), which is as private, or, where TMPDIR is
    long too, the kernel's directory again (xeus kernels then need a TCP transport)."""
    if len("ipc://" + os.path.join(kernel_dir, "k-5")) <= SHORT_ENDPOINT_MAX:
        return kernel_dir
    base = tempfile.gettempdir()
    if len("ipc://" + os.path.join(base, SHORT_DIR_PREFIX + "x" * 8, "k-5")) > SHORT_ENDPOINT_MAX:
        return kernel_dir
    return mark_host(tempfile.mkdtemp(prefix=SHORT_DIR_PREFIX, dir=base))


HOST_MARKER = ".host"  # in a short directory: "<node> <launcher pid>" (TMPDIR may be shared)
STALE_AFTER = 60.0  # seconds a short directory whose kernel's sockets all refuse must be unchanged


def mark_host(path):
    write_private_file(os.path.join(path, HOST_MARKER), "%s %d" % (socket.gethostname(), os.getpid()))
    return path


def made_by_a_gone_launcher_here(path):
    """Whether the launcher that made the short directory ``path`` ran on this node and has
    ended (while it runs, its kernel's files are its own to remove)."""
    with open(os.path.join(path, HOST_MARKER)) as handle:
        host, _, pid = handle.read().partition(" ")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        pass
    return False


def accepts_connections(path):
    """Whether a process accepts connections on the Unix socket ``path`` (a refusal or no
    such file means none does; anything else, e.g. a full backlog, counts as yes)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
        return True
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError:
        return True
    finally:
        probe.close()


def kernel_sockets(path):
    """The channel sockets a short directory holds, or that the connection file in it (a
    kernel directory) names; None for a kernel on TCP, whose liveness this cannot tell."""
    sockets = [os.path.join(path, entry) for entry in os.listdir(path)
               if entry.startswith(SOCKET_PREFIX + "-") and stat.S_ISSOCK(os.lstat(os.path.join(path, entry)).st_mode)]
    try:
        info = read_connection_file(os.path.join(path, CONNECTION_FILE))
    except FileNotFoundError:
        return sockets
    except (OSError, LaunchFailure):
        return None
    if info.get("transport") != "ipc":
        return None
    return sockets + ["%s-%d" % (info["ip"], info[name + "_port"]) for name in CHANNELS]


def sweep_short_dirs(keep=()):
    """Remove this user's short directories in TMPDIR (``jh-*``: socket and kernel directories)
    that a kernel on this node left when its launcher was killed (SIGKILL: nothing ran to
    clean up): each is marked with this host and a launcher that has ended, unchanged for
    STALE_AFTER seconds, and its kernel's channel sockets are gone or refuse connections. A
    directory without sockets (one about to bind), a kernel on TCP, or one made elsewhere (a
    TMPDIR shared with compute nodes) is left alone."""
    base = tempfile.gettempdir()
    try:
        names = [name for name in os.listdir(base) if name.startswith(SHORT_DIR_PREFIX)]
    except OSError:
        return
    for name in names:
        path = os.path.join(base, name)
        if path in keep or not is_short_kernel_dir(path):
            continue
        try:
            if time.time() - os.lstat(path).st_mtime < STALE_AFTER or not made_by_a_gone_launcher_here(path):
                continue
            sockets = kernel_sockets(path)
        except OSError:
            continue
        if sockets and not any(accepts_connections(sock) for sock in sockets):
            shutil.rmtree(path, ignore_errors=True)


def is_short_kernel_dir(path):
    """Whether ``path`` is a directory :func:`make_short_kernel_dir` or :func:`make_socket_dir`
    made in TMPDIR for this user."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return (
        os.path.dirname(path) == os.path.realpath(tempfile.gettempdir())
        and os.path.basename(path).startswith(SHORT_DIR_PREFIX)
        and stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077
    )


def pick_tcp_ports(ip, count=len(CHANNELS)):
    """Free TCP ports on ``ip``, chosen by the OS and held open until all are picked."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((ip, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def connection_info(request, kernel_dir):
    """The kernel's connection file contents for ``request``, placed in ``kernel_dir``."""
    transport = request.get("transport", "ipc")
    if transport == "ipc":
        ip = os.path.join(kernel_dir, SOCKET_PREFIX)
        ports = list(range(1, len(CHANNELS) + 1))
    elif transport == "tcp":
        ip = request.get("ip") or "127.0.0.1"
        if ip == "node":  # reached by address from the login node (batch jobs' direct mode)
            ip = socket.gethostbyname(socket.gethostname())
        ports = pick_tcp_ports(ip)
    else:
        raise LaunchFailure("unknown transport %r (expected 'ipc' or 'tcp')" % transport)
    info = {
        "transport": transport,
        "ip": ip,
        "key": request["key"],
        "signature_scheme": request.get("signature_scheme", "hmac-sha256"),
        "kernel_name": request.get("kernel_name", ""),
    }
    for name, port in zip(CHANNELS, ports):
        info[name + "_port"] = port
    for name in ("curve_publickey", "curve_secretkey"):
        if request.get(name):
            info[name] = request[name]
    return info


def write_private_file(path, text):
    """Write ``text`` to a new file that only its owner can read (mode 0600 from birth)."""
    if os.path.exists(path):
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def read_connection_file(path):
    """A kernel's connection file as the launcher wrote it, or a failure that names the file."""
    try:
        with open(path, "rb") as handle:
            info = json.loads(handle.read().decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise LaunchFailure("the kernel's connection file %s is unreadable (%s)" % (path, exc))
    ports = [name + "_port" for name in CHANNELS]
    if not (
        isinstance(info, dict) and info.get("transport") in ("ipc", "tcp") and isinstance(info.get("ip"), str)
        and all(type(info.get(name)) is int for name in ports)
    ):
        raise LaunchFailure("the kernel's connection file %s lacks a transport, ip or %s" % (path, ", ".join(ports)))
    return info


def socket_paths(info):
    if info["transport"] != "ipc":
        return []
    return ["%s-%d" % (info["ip"], info[name + "_port"]) for name in CHANNELS]


# A login bash runs ~/.bash_logout when a setup line calls `exit`; Debian's default one ends in
# `[ -x clear_console ] && clear_console`, which fails without a console and, under `set -e`,
# turns every `exit N` into exit status 1. `exit` therefore drops `set -e` before leaving.
SETUP_PREAMBLE = 'exit() { local status=$?; set +e; builtin exit "${1:-$status}"; }\nset -e\n'


def kernel_command(request, connection_file):
    """The argv to exec: the kernelspec's argv, behind the setup lines when there are any.

    ``{connection_file}`` is the connection file's path here, and ``{kernel_dir}`` the kernel's
    0700 directory, which holds it and the Unix sockets: a container's argv bind-mounts that
    directory at the same path (``podman run -v {kernel_dir}:{kernel_dir}``), so that the file
    and the sockets it names are where the kernel inside looks for them.

    Setup lines (``module load``, ``conda activate``, ``source venv/bin/activate``) are shell
    by nature and are written by the site or the user for themselves; the kernel argv is
    passed to that shell as positional parameters, never joined into its text.
    """
    kernel_dir = os.path.dirname(connection_file)
    argv = [arg.replace("{connection_file}", connection_file).replace("{kernel_dir}", kernel_dir)
            for arg in request["argv"]]
    if not argv:
        raise LaunchFailure("the kernelspec's argv is empty")
    setup = request.get("setup") or []
    if not setup:
        return argv
    script = SETUP_PREAMBLE + "\n".join(setup) + '\nexec "$@"\n'
    shell = request.get("setup_shell") or ["/bin/bash", "-l", "-c"]
    return list(shell) + [script, "jupyter-hpc-kernel"] + argv


def kernel_environment(request, environ=None):
    """The login environment plus the request's variables, ``${VAR}`` expanded here, remotely."""
    env = dict(os.environ if environ is None else environ)
    base = dict(env)
    for name, value in (request.get("env") or {}).items():
        env[str(name)] = string.Template(str(value)).safe_substitute(base)
    # Not JPY_PARENT_PID: ipykernel would exit when its parent (this launcher) does, and a
    # kernel must outlive its launcher while a new monitor takes it over (lease, reattach).
    env.pop("JPY_PARENT_PID", None)
    return env


SHIM_ENV = "JUPYTER_HPC_LISTENERS"
SHIM_MARKER = "listeners.json"


def install_shim(request, runtime_dir):
    """The directory holding the listener shim (see kernel_shim.py) as ``sitecustomize.py``,
    written once per version into the private runtime directory; None when none is asked for."""
    source = request.get("shim")
    if request.get("listeners") not in ("private", "off") or not isinstance(source, str):
        return None
    digest = "%08x" % (zlib.crc32(source.encode("utf-8")) & 0xFFFFFFFF)
    shim_dir = os.path.join(runtime_dir, "shim-" + digest)
    path = os.path.join(shim_dir, "sitecustomize.py")
    if not os.path.exists(path):
        _make_private_dir(shim_dir)
        partial = "%s.%d" % (path, os.getpid())
        write_private_file(partial, source)
        os.rename(partial, path)
    return shim_dir


def helper_environment(env, request, runtime_dir):
    """The request's ``pythonpath_files`` (e.g. jupyter_hpc.proxy_url) written once per version
    into a private directory appended to the kernel's PYTHONPATH (what the user set comes first)."""
    files = request.get("pythonpath_files")
    if not isinstance(files, dict) or not files:
        return env
    text = json.dumps(files, sort_keys=True)
    helper_dir = os.path.join(runtime_dir, "pythonpath-%08x" % (zlib.crc32(text.encode("utf-8")) & 0xFFFFFFFF))
    if not os.path.isdir(helper_dir):
        partial = "%s.%d" % (helper_dir, os.getpid())
        for name, source in files.items():
            parts = [part for part in str(name).split("/") if part not in ("", ".", "..")]
            for depth in range(len(parts)):
                _make_private_dir(os.path.join(partial, *parts[:depth]))
            write_private_file(os.path.join(partial, *parts), str(source))
        try:
            os.rename(partial, helper_dir)
        except OSError:
            shutil.rmtree(partial, ignore_errors=True)  # another launch wrote it first
    previous = env.get("PYTHONPATH") or None
    env["PYTHONPATH"] = os.pathsep.join(([previous] if previous else []) + [helper_dir])
    return env


def shim_environment(env, request, shim_dir, kernel_dir):
    """The kernel's environment with the shim first on PYTHONPATH, told what to do and where."""
    previous = env.get("PYTHONPATH") or None
    env[SHIM_ENV] = json.dumps({
        "mode": request["listeners"], "kernel_dir": kernel_dir, "shim_dir": shim_dir, "pythonpath": previous,
    })
    env["PYTHONPATH"] = os.pathsep.join([shim_dir] + ([previous] if previous else []))
    return env


def shim_report(kernel_dir):
    """What the shim did in the kernel (its IOPub pipe, its debugger), or None if it never ran:
    not a Python kernel, or a setup line replaced PYTHONPATH, or the python ran with -I/-E."""
    try:
        with open(os.path.join(kernel_dir, SHIM_MARKER)) as handle:
            report = json.load(handle)
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) else None


def stop_adapters(kernel_dir):
    """Kill the debugpy adapters the shim recorded: they left the kernel's process group."""
    directory = os.path.join(kernel_dir, "adapters")
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        process = AttachedProcess(int(name)) if name.isdigit() else None
        if process is not None and process.poll() is None and b"debugpy" in process.cmdline():
            try:
                os.kill(process.pid, signal.SIGKILL)
            except OSError:
                pass


def tail(path, limit=2000):
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - limit))
            return handle.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def listening(info):
    """Whether the kernel accepts connections on all its channels (ipc paths or TCP ports)."""
    if info["transport"] == "ipc":
        return all(os.path.exists(path) for path in socket_paths(info))
    for name in CHANNELS:
        try:
            socket.create_connection((info["ip"], info[name + "_port"]), timeout=0.5).close()
        except OSError:
            return False
    return True


class PortTaken(LaunchFailure):
    """Another process bound one of the TCP ports between choosing and binding them."""


TRANSPORT_HINT = (
    "A kernel that cannot listen on %s needs another transport: set its kernelspec's "
    "metadata.jupyter_hpc.transport, or the provisioner's remote_transport, to %s."
)


def transport_hint(info):
    if info["transport"] == "ipc":
        return TRANSPORT_HINT % ("Unix sockets (ipc)", "'tcp-curve' (or 'tcp' where it cannot do CurveZMQ)")
    if info.get("curve_secretkey"):
        return TRANSPORT_HINT % ("TCP with CurveZMQ", "'ipc' or plain 'tcp'")
    return TRANSPORT_HINT % ("TCP", "'ipc'")


def stray_sockets(info, kernel_dir):
    """Unix sockets in the kernel's directory that are none of the expected ones: a kernel
    that names its ipc sockets its own way (it will never bind the expected paths)."""
    if info["transport"] != "ipc":
        return []
    expected = set(os.path.basename(path) for path in socket_paths(info)) | {PROBE_SOCKET}
    found = []
    for name in os.listdir(kernel_dir):
        if name in expected or name.startswith("pipe-"):
            continue
        try:
            if stat.S_ISSOCK(os.lstat(os.path.join(kernel_dir, name)).st_mode):
                found.append(name)
        except OSError:
            pass
    return sorted(found)


STRAY_GRACE = 2.0  # seconds stray sockets may stand without the expected ones before the start fails


def wait_until_bound(process, info, log_path, timeout):
    """Wait for the kernel to listen on its channels; fail early if the kernel dies first, or
    binds sockets other than the expected ones (it would never answer on these).

    Checks every 5 ms while a kernel normally binds (a warm start waits on it), then every
    25 ms: thirty kernels starting at once on a busy node should not spend its CPU polling.
    """
    started = time.monotonic()
    deadline = started + timeout
    kernel_dir = os.path.dirname(info["ip"]) if info["transport"] == "ipc" else os.path.dirname(log_path)
    strays_since = None
    expected = ", ".join(socket_paths(info)) or ", ".join(
        "%s:%d" % (info["ip"], info[name + "_port"]) for name in CHANNELS)
    while True:
        status = process.poll()
        if status is not None:
            output = tail(log_path)
            failure = PortTaken if "Address already in use" in output else LaunchFailure
            raise failure(
                "the kernel exited with status %d before it listened on its sockets (%s transport). "
                "Its output:\n%s\n%s" % (status, info["transport"], output or "(none)", transport_hint(info))
            )
        if listening(info):
            return
        now = time.monotonic()
        strays = stray_sockets(info, kernel_dir)
        strays_since = (strays_since or now) if strays else None
        if strays and now - strays_since > STRAY_GRACE:
            raise LaunchFailure(
                "the kernel did not bind the sockets its connection file names (%s): it listens on %s "
                "in its directory instead. %s" % (expected, ", ".join(strays), transport_hint(info))
            )
        if now > deadline:
            raise LaunchFailure(
                "the kernel did not bind the sockets its connection file names (%s) within %.0f s. "
                "Its output:\n%s\n%s" % (expected, timeout, tail(log_path) or "(none)", transport_hint(info))
            )
        time.sleep(0.005 if now - started < 0.5 else 0.025)


def kernel_tcp_listeners(session_id, info):
    """The TCP addresses the kernel's processes (its session) listen on beyond its channels,
    as ``["127.0.0.1:41234", ...]``: what other users of the node can connect to. None where
    /proc does not tell (not Linux)."""
    listening_inodes = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                rows = handle.read().splitlines()[1:]
        except OSError:
            if table.endswith("tcp"):
                return None
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == "0A":  # LISTEN
                listening_inodes[fields[9]] = proc_address(fields[1])
    channels = set()
    if info["transport"] == "tcp":
        channels = set(info[name + "_port"] for name in CHANNELS)
    found = set()
    for pid in session_pids(session_id):
        try:
            fds = os.listdir("/proc/%d/fd" % pid)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in listening_inodes:
                address = listening_inodes[target[8:-1]]
                if int(address.rsplit(":", 1)[1]) not in channels:
                    found.add(address)
    return sorted(found)


def proc_address(text):
    """/proc/net/tcp's ``0100007F:A0B1`` (or an IPv6 one) as ``127.0.0.1:41137``."""
    host, port = text.split(":")
    if len(host) == 8:
        host = socket.inet_ntop(socket.AF_INET, bytes.fromhex(host)[::-1])
    else:
        words = bytes.fromhex(host)
        host = "[%s]" % socket.inet_ntop(socket.AF_INET6, b"".join(words[i:i + 4][::-1] for i in range(0, 16, 4)))
    return "%s:%d" % (host, int(port, 16))


def session_pids(session_id):
    """The kernel (the leader of session ``session_id``) and the processes it started, found
    through /proc's children lists (no walk over every process of a busy login node)."""
    pids, queue = [], [session_id]
    while queue and len(pids) < 1000:
        pid = queue.pop()
        pids.append(pid)
        try:
            tasks = os.listdir("/proc/%d/task" % pid)
        except OSError:
            continue
        for task in tasks:
            try:
                with open("/proc/%d/task/%s/children" % (pid, task)) as handle:
                    queue.extend(int(child) for child in handle.read().split())
            except (OSError, ValueError):
                pass
    return pids


def kill_by_argument(argument):
    """SIGKILL this user's processes with ``argument`` (a kernel's connection file) on their
    command line: a container's kernel runs outside the launcher's session (under the
    runtime's monitor, conmon for podman), and must not outlive the kernel's end."""
    needle = b"\0" + os.fsencode(argument) + b"\0"
    uid, me = os.getuid(), os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            if os.stat("/proc/" + name).st_uid != uid:
                continue
            with open("/proc/%s/cmdline" % name, "rb") as handle:
                if needle in b"\0" + handle.read():
                    os.kill(int(name), signal.SIGKILL)
        except OSError:
            continue


class AttachedProcess:
    """A kernel this launcher did not start: poll()/wait() by its pid, as Popen would."""

    def __init__(self, pid):
        self.pid = pid

    def cmdline(self):
        try:
            with open("/proc/%d/cmdline" % self.pid, "rb") as handle:
                return handle.read()
        except OSError:
            return b""

    def poll(self):
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return -1
        except PermissionError:
            return -1  # the pid was reused by another user's process
        try:
            with open("/proc/%d/stat" % self.pid) as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return -1
        except OSError:
            pass
        return None

    def wait(self):
        while self.poll() is None:
            time.sleep(0.2)
        return -1


class Monitor:
    """Owns one kernel process: answers the launch, relays signals, reports the exit."""

    def __init__(self, request, stdin, stdout):
        self.request = request
        self.stdin = stdin
        self.stdout = stdout
        self.write_lock = threading.Lock()
        self.process = None
        self.kernel_dir = None
        self.socket_dir = None  # where the channels' Unix sockets are: kernel_dir, or a short one
        self.runtime_dir = None  # the private runtime directory: shim and helpers live there
        self.info = None  # the connection info the kernel was started with (or found with)
        self.probe = None  # the launcher's own socket for the server's stream-local probe
        # A container's runtime client (podman run) passes signals on, but SIGKILL kills only
        # the client and leaves the container running: such a kernel is killed with SIGTERM
        # first, which the runtime forwards, and SIGKILL after CONTAINER_GRACE seconds.
        self.container = any("{kernel_dir}" in str(arg) for arg in request.get("argv") or [])
        self.in_container = self.container  # SIGKILL still to be softened (see signal())
        self.exited = threading.Event()

    def send(self, message):
        data = (json.dumps(message) + "\n").encode()
        with self.write_lock:
            try:
                self.stdout.write(data)
                self.stdout.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass

    def launch(self, attempts=3):
        """Start the kernel and wait until it listens; TCP ports lost to a race are re-picked."""
        request = self.request
        runtime_dir = self.runtime_dir = request.get("runtime_dir") or private_runtime_dir()
        _make_private_dir(runtime_dir)
        self.kernel_dir = make_kernel_dir(runtime_dir, request.get("kernel_id", ""))
        # A container mounts {kernel_dir} alone: its sockets must be there too.
        if request.get("transport", "ipc") == "ipc" and not any("{kernel_dir}" in arg for arg in request.get("argv") or []):
            self.socket_dir = make_socket_dir(self.kernel_dir)
        for attempt in range(attempts):
            try:
                return self._start(request)
            except PortTaken:
                if attempt == attempts - 1:
                    raise

    def _start(self, request):
        info = connection_info(request, self.socket_dir or self.kernel_dir)
        connection_file = os.path.join(self.kernel_dir, CONNECTION_FILE)
        write_private_file(connection_file, json.dumps(info, indent=1))
        log_path = os.path.join(self.kernel_dir, KERNEL_LOG)
        cwd = os.path.expanduser(request.get("cwd") or "~")
        if not os.path.isdir(cwd):
            raise LaunchFailure("the working directory %s does not exist on %s" % (cwd, socket.gethostname()))
        argv = kernel_command(request, connection_file)
        env = helper_environment(kernel_environment(request), request, self.runtime_dir)
        shim_dir = install_shim(request, self.runtime_dir)
        if shim_dir is not None:
            env = shim_environment(env, request, shim_dir, self.kernel_dir)
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            self.process = subprocess.Popen(
                argv,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise LaunchFailure("cannot run %s: %s" % (argv[0], exc.strerror or exc))
        finally:
            os.close(log_fd)
        wait_until_bound(self.process, info, log_path, seconds(request, "ready_timeout", 60))
        if self.container:  # a monitor that attaches later must know it too
            write_private_file(os.path.join(self.kernel_dir, CONTAINER_MARKER), "")
        self.claim()
        return self.answer(info)

    def open_probe(self):
        """Listen on a socket of the launcher's own in the kernel's 0700 directory, for the
        server's one test of stream-local forwarding (asked with ``"probe": true``): a kernel's
        own socket would tell a refusing site from a kernel that bound elsewhere or not yet."""
        path = os.path.join(self.kernel_dir, PROBE_SOCKET)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            server.bind(path)
            server.listen(1)
        except OSError:
            server.close()
            return None

        def serve():
            server.settimeout(PROBE_WAIT)
            try:
                server.accept()[0].close()
            except OSError:
                pass
            finally:
                server.close()
                try:
                    os.unlink(path)
                except OSError:
                    pass

        threading.Thread(target=serve, daemon=True).start()
        return path

    def report_listeners(self):
        """Tell the server, after the answer (reading /proc/net/tcp takes milliseconds a start
        should not wait for), the TCP listeners the kernel holds beyond its channels."""
        try:
            found = kernel_tcp_listeners(self.process.pid, self.info)
        except (OSError, ValueError):
            found = None
        self.send({"event": "listeners", "tcp": found})

    def answer(self, info):
        self.info = info
        if self.request.get("probe") and self.probe is None:
            self.probe = self.open_probe()
        return {
            "ok": True,
            "pid": self.process.pid,
            "host": socket.gethostname(),
            "transport": info["transport"],
            "ip": info["ip"],
            "ports": {name: info[name + "_port"] for name in CHANNELS},
            "kernel_dir": self.kernel_dir,
            "connection_file": os.path.join(self.kernel_dir, CONNECTION_FILE),
            "log_file": os.path.join(self.kernel_dir, KERNEL_LOG),
            "listeners": shim_report(self.kernel_dir),
            "probe": self.probe,
        }

    def claim(self):
        """Record this launcher as the kernel's monitor; an earlier one, on its lease, yields."""
        write_private_file(os.path.join(self.kernel_dir, MONITOR_FILE), str(os.getpid()))

    def claimed_by_another(self):
        try:
            with open(os.path.join(self.kernel_dir, MONITOR_FILE)) as handle:
                return handle.read().strip() != str(os.getpid())
        except OSError:
            return False

    def attach(self):
        """Take over a kernel left running by a launcher whose channel dropped (its lease runs).

        The kernel is verified to be ours: its directory is in our private runtime directory,
        its connection file is there, and the process runs with that file on its command line.
        """
        request = self.request
        if request.get("answer_file"):
            request = dict(request, **read_batch_answer(request["answer_file"], seconds(request, "ready_timeout", 60)))
        runtime_dir = os.path.realpath(request.get("runtime_dir") or private_runtime_dir())
        kernel_dir = os.path.realpath(str(request["kernel_dir"]))
        if (os.path.dirname(kernel_dir) != runtime_dir and not is_short_kernel_dir(kernel_dir)) or not os.path.isdir(kernel_dir):
            raise LaunchFailure("no kernel directory %s in %s: the kernel has ended" % (kernel_dir, runtime_dir))
        connection_file = os.path.join(kernel_dir, CONNECTION_FILE)
        info = read_connection_file(connection_file)
        socket_dir = os.path.dirname(info["ip"]) if info["transport"] == "ipc" else kernel_dir
        self.socket_dir = socket_dir if is_short_kernel_dir(socket_dir) else None  # else never removed here
        process = AttachedProcess(int(request["pid"]))
        if process.poll() is not None or connection_file.encode() not in process.cmdline():
            raise LaunchFailure("kernel process %s is no longer running" % request["pid"])
        self.kernel_dir, self.process = kernel_dir, process
        self.container = self.in_container = os.path.exists(os.path.join(kernel_dir, CONTAINER_MARKER))
        self.claim()
        return self.answer(info)

    def signal(self, signum):
        if self.process is None or self.process.poll() is not None:
            return
        if signum == signal.SIGKILL and self.in_container and not self.exited.is_set():
            self.in_container = False  # once: the escalation below ends in a real SIGKILL
            self.signal(signal.SIGTERM)
            threading.Timer(CONTAINER_GRACE, self.signal, (signal.SIGKILL,)).start()
            return
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass

    def watch(self):
        status = self.process.wait()
        self.exited.set()
        self.send({"event": "exited", "status": status})

    def cleanup(self, grace=3.0):
        """Stop the kernel's process group if it still runs, and remove every file it had."""
        if self.process is not None and self.process.poll() is None:
            self.signal(signal.SIGTERM)
            if not self.exited.wait(grace):
                self.signal(signal.SIGKILL)
                self.exited.wait(grace)
        if self.process is not None:
            try:  # stragglers the kernel left in its session
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.container and self.kernel_dir:
            kill_by_argument(os.path.join(self.kernel_dir, CONNECTION_FILE))
        if self.kernel_dir and os.path.isdir(self.kernel_dir):
            stop_adapters(self.kernel_dir)
            shutil.rmtree(self.kernel_dir, ignore_errors=True)
        if self.socket_dir and self.socket_dir != self.kernel_dir:
            shutil.rmtree(self.socket_dir, ignore_errors=True)

    def serve(self):
        """Relay requests until cleanup, or until the channel closes and the lease runs out."""
        threading.Thread(target=self.watch, daemon=True).start()
        for line in iter(self.stdin.readline, b""):
            try:
                message = json.loads(line)
            except ValueError:
                continue
            op = message.get("op")
            if op == "signal":
                self.signal(int(message["signum"]))
            elif op == "lease":  # a pre-started kernel, taken: it gets its owner's lease
                try:
                    self.request["lease"] = seconds(message, "seconds", 0)
                except LaunchFailure:
                    pass
            elif op == "cleanup":
                self.cleanup()
                self.send({"event": "cleaned"})
                return
        deadline = time.monotonic() + seconds(self.request, "lease", 0)
        while time.monotonic() < deadline and not self.exited.is_set():
            if self.claimed_by_another():
                return  # reattached: the new monitor owns the kernel now
            self.exited.wait(0.2)
        if not self.claimed_by_another():
            self.cleanup()


def main(stdin=None, stdout=None):
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout.buffer
    line = stdin.readline()
    if not line:  # dismissed from standby before any request: nothing was started
        return 0
    try:
        request = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: deeply nested garbage
        request = None
    if not isinstance(request, dict) or request.get("op") not in ("launch", "attach"):
        stdout.write(b'{"ok": false, "error": "expected a JSON launch or attach request"}\n')
        stdout.flush()
        return 2
    argv = request.get("argv", [])
    if not isinstance(argv, list) or not all(isinstance(arg, str) for arg in argv):
        # Checked before anything reads it: a container's {kernel_dir} is looked for at once.
        stdout.write(b'{"ok": false, "error": "the request\'s argv must be a list of strings (the kernelspec\'s argv)"}\n')
        stdout.flush()
        return 2
    monitor = Monitor(request, stdin, stdout)
    stop_on_sigterm(monitor)
    try:
        for name, default in (("ready_timeout", 60), ("lease", 0), ("restart_window", 0)):
            seconds(request, name, default)  # refuse a bad duration now, not after the launch
        answer = monitor.launch() if request["op"] == "launch" else monitor.attach()
    except (LaunchFailure, KeyError, OSError, ValueError) as exc:
        if request["op"] == "launch":
            monitor.cleanup()
        text = "the request lacks %s" % exc if isinstance(exc, KeyError) else str(exc)
        monitor.send({"ok": False, "error": text})
        return 1
    except Exception as exc:  # report anything else instead of dying silently
        if request["op"] == "launch":
            monitor.cleanup()
        monitor.send({"ok": False, "error": "%s: %s" % (type(exc).__name__, exc)})
        return 1
    monitor.send(answer)
    threading.Thread(target=monitor.report_listeners, daemon=True).start()
    threading.Thread(target=sweep_short_dirs, args=({monitor.kernel_dir, monitor.socket_dir},), daemon=True).start()
    monitor.serve()
    return 0


def stop_on_sigterm(monitor):
    """SIGTERM to the launcher (a node's cleanup of a user's processes, a session's or a
    demo's end) ends its kernel and removes the kernel's directory (its signing key) and its
    short socket directory in TMPDIR, as a cleanup request does. The kernel runs in a session
    of its own, so without this it would outlive the launcher and its files would stay. A
    kernel another monitor has taken over (after a reconnect) is that monitor's to end."""

    def stop(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if not (monitor.kernel_dir and monitor.claimed_by_another()):
            monitor.cleanup()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def read_batch_answer(path, timeout):
    """Wait for a batch job's answer file (the job may still be starting its kernel)."""
    path = os.path.expanduser(path)
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise LaunchFailure("the batch job wrote no answer within %.0f s" % timeout)
        time.sleep(0.05)
    with open(path) as handle:
        answer = json.load(handle)
    os.unlink(path)
    if not answer.get("ok"):
        raise LaunchFailure(answer.get("error") or "the batch job could not start the kernel")
    return {"pid": answer["pid"], "kernel_dir": answer["kernel_dir"]}


def wait_for_file(path, timeout):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def batch_main(request_path, answer_path):
    """Inside a batch job: start the kernel, publish the answer, live as long as the kernel.

    The request (signing key included) comes from a 0600 file in the user's private
    directory, removed once read. A monitor attached over SSH relays signals and exits. When
    the kernel ends, the job waits ``restart_window`` seconds for the next request at the same
    path, so that a restart keeps the allocation instead of queueing again.
    """
    started = time.monotonic()  # the lease runs from the job's first line
    request_path, answer_path = os.path.expanduser(request_path), os.path.expanduser(answer_path)
    current = {}

    def stop(signum, frame):
        if current.get("monitor"):
            current["monitor"].cleanup()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    status = 0
    while True:
        with open(request_path) as handle:
            request = json.load(handle)
        os.unlink(request_path)
        monitor = current["monitor"] = Monitor(request, None, None)
        try:
            answer = monitor.launch()
        except Exception as exc:
            monitor.cleanup()
            answer = {"ok": False, "error": str(exc) if isinstance(exc, LaunchFailure) else "%s: %s" % (type(exc).__name__, exc)}
        write_private_file(answer_path + ".tmp", json.dumps(answer))
        os.rename(answer_path + ".tmp", answer_path)
        if not answer["ok"]:
            return 1
        if not wait_for_attach(monitor, seconds(request, "lease", 0), started):
            monitor.cleanup()
            end_own_job("no server attached to the kernel within its lease (%.0f s) of the job's start"
                        % seconds(request, "lease", 0))
            return 1
        status = monitor.process.wait()
        monitor.cleanup()
        if not wait_for_file(request_path, seconds(request, "restart_window", 0)):
            break
        started = time.monotonic()  # a restart's kernel is leased anew
    return status if status >= 0 else 128 - status


def wait_for_attach(monitor, lease, started):
    """Whether a server's monitor takes the batch job's kernel over (its claim) within
    ``lease`` seconds of ``started`` (a lease of 0 waits for none). A server that died while
    the job was queued never attaches: the job must not run to its walltime for no one."""
    if lease <= 0:
        return True
    deadline = started + lease
    while time.monotonic() < deadline:
        if monitor.claimed_by_another() or monitor.process.poll() is not None:
            return True
        time.sleep(0.2)
    return monitor.claimed_by_another()


def end_own_job(why):
    """End this batch job from its node: ``scancel`` of its own id where SLURM allows it (the
    job shows CANCELLED and every step ends), else the batch script simply exits."""
    sys.stdout.write("jupyter-hpc: %s; ending job %s\n" % (why, os.environ.get("SLURM_JOB_ID", "")))
    sys.stdout.flush()
    job_id = os.environ.get("SLURM_JOB_ID", "")
    if job_id.isdigit():
        try:
            subprocess.run(["scancel", job_id], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=30)
        except (OSError, subprocess.SubprocessError):
            pass  # no scancel on the node: returning ends the batch script, and the job with it


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--batch":
        sys.exit(batch_main(sys.argv[2], sys.argv[3]))
    sys.exit(main())
