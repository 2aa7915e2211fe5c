"""Check a site step by step and say what is wrong, and which transport its kernels get.

Each step builds on the one before (reach the port, trust the host key, log in, run the
remote python, forward to a Unix socket), so the first failure is the one to fix; the rest
are skipped. Runs in the SSH loop like everything else that talks SSH.
"""

from __future__ import annotations

import asyncio
import dataclasses
import zmq

from .errors import HostKeyError, HPCError
from .launcher import kernel_shim_source
from .ssh import SSHTarget, get_pool

# Listens on a fresh Unix socket in the user's private runtime directory, prints its path,
# accepts one connection (the probe), and removes it. Standard library only.
_SOCKET_PROBE = r"""
import os, socket, sys, tempfile
base = os.environ.get("XDG_RUNTIME_DIR") or os.path.expanduser("~")
d = tempfile.mkdtemp(prefix=".jupyter-hpc-probe-", dir=base)
path = os.path.join(d, "s")
s = socket.socket(socket.AF_UNIX); s.bind(path); s.listen(1); s.settimeout(15)
print(path, flush=True)
try:
    s.accept()[0].close()
except OSError:
    pass
finally:
    s.close(); os.unlink(path); os.rmdir(d)
"""


@dataclasses.dataclass
class Check:
    name: str
    ok: bool | None  # None: skipped, an earlier step failed
    detail: str


async def diagnose(
    target: SSHTarget, remote_python: str, allow_plaintext: bool = False, debugger: str = "private"
) -> list[Check]:
    """Run every check in order; stop at the first failure."""
    checks: list[Check] = []
    port = target.port or 22
    try:
        _reader, writer = await asyncio.wait_for(
            asyncio.open_connection(target.host, port), target.connect_timeout
        )
        writer.close()
        checks.append(Check("network", True, f"{target.host} port {port} answers"))
    except (OSError, asyncio.TimeoutError) as exc:
        if not target.jump_host:
            checks.append(Check("network", False, f"{target.host} port {port}: {exc or 'timeout'}"))
            return checks
        checks.append(Check("network", True, f"not reachable directly; going through {target.jump_host}"))
    try:
        connection = await get_pool().connect(target)
    except HostKeyError as exc:
        checks.append(Check("host key", False, str(exc)))
        return checks
    except HPCError as exc:
        checks.append(Check("host key", True, "trusted"))
        checks.append(Check("login", False, str(exc)))
        return checks
    checks.append(Check("host key", True, f"trusted ({target.known_hosts or '~/.ssh/known_hosts'})"))
    checks.append(Check("login", True, f"logged in as {target.username or 'the default user'}"))
    version = await connection.run(
        [remote_python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"], check=False
    )
    if version.exit_status != 0:
        checks.append(Check(
            "remote python", False,
            f"{remote_python} does not run on {target.host} ({str(version.stderr).strip()}); "
            "set remote_python to a Python 3.8+ that exists there",
        ))
        return checks
    checks.append(Check("remote python", True, f"{remote_python} is Python {str(version.stdout).strip()}"))
    checks.append(await _transport_check(connection, remote_python, allow_plaintext))
    if checks[-1].ok:
        checks.append(await _listeners_check(connection, remote_python, debugger, target))
    return checks


async def _listeners_check(connection, remote_python: str, debugger: str, target: SSHTarget) -> Check:
    """What an ipykernel's listeners beyond its channels expose on the node, and to whom.

    The 'private' debugger needs the node to show a loopback peer's uid (/proc/net/tcp): the
    shim's own self-test is run there, as the kernel would run it.
    """
    who, host = target.username or "you", target.host
    if debugger == "open":
        return Check("listeners", True, f"OPEN (debugger = 'open'): the IOPub fork pipe, and once the "
                     f"debugger is on, debugpy's ports listen on {host}'s 127.0.0.1 for every user there, "
                     "and debugpy runs whatever anyone connecting asks; set debugger = 'private'")
    pipe = "the IOPub fork pipe is a Unix socket in the kernel's 0700 directory"
    if debugger == "off":
        return Check("listeners", True, f"{pipe}; no debugger is offered (debugger = 'off'); "
                     "nothing listens on TCP")
    probe = kernel_shim_source() + "\nprint('peer-uid', peer_check_works())\n"
    result = await connection.run([remote_python, "-I", "-c", probe], check=False)
    if "peer-uid True" not in str(result.stdout):
        return Check("listeners", False, f"{pipe}, but {host} does not show whose a loopback connection "
                     "is (/proc/net/tcp), so debugpy's ports could not be kept private and the debugger "
                     "refuses to start; set the provisioner's debugger = 'off' to hide it")
    return Check("listeners", True, f"{pipe}; the debugger's debugpy ports on 127.0.0.1 accept only "
                 f"{who}'s own processes (others on {host} are disconnected before a byte); "
                 "Python kernels only")


async def _transport_check(connection, remote_python: str, allow_plaintext: bool) -> Check:
    connection, process = await connection.start([remote_python, "-c", _SOCKET_PROBE])
    try:
        path = (await asyncio.wait_for(process.stdout.readline(), 15)).strip()
        allowed = bool(path) and await connection.probe_stream_local(path)
    finally:
        process.close()
    if allowed:
        return Check("transport", True, "ipc: kernels listen on Unix sockets in a 0700 directory, "
                     "forwarded over SSH; no one else on the login node can connect")
    why = "the site's sshd refuses forwarding to Unix sockets (AllowStreamLocalForwarding no)"
    if zmq.has("curve"):
        return Check("transport", True, f"tcp+curve: {why}, so kernels listen on the remote "
                     "127.0.0.1 with CurveZMQ encryption; others there can connect but read nothing")
    if allow_plaintext:
        return Check("transport", True, f"tcp in PLAINTEXT: {why} and this pyzmq lacks CurveZMQ; "
                     "allow_plaintext_loopback is on, so anyone on the login node can read kernels")
    return Check("transport", False, f"none: {why} and this pyzmq lacks CurveZMQ; install a pyzmq "
                 "with CurveZMQ or ask the site to allow stream-local forwarding")


def render(title: str, checks: list[Check]) -> str:
    marks = {True: "ok  ", False: "FAIL", None: "skip"}
    lines = [title]
    lines += [f"  [{marks[c.ok]}] {c.name:<14} {c.detail}" for c in checks]
    return "\n".join(lines)

