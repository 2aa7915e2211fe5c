"""What a kernel's node says about itself: its names and addresses, and the TCP ports the
kernel's process tree listens on (the web UIs it serves: a Dask dashboard, TensorBoard, …).

One ``python -c`` (standard library, reading ``/proc``) on the connection the kernel already
runs over: the login node's for a login kernel, the node's own (through the login node) for a
SLURM kernel. Dask names its scheduler by the address of the node's default route, not by
SLURM's node name, so the route must know a node's interface addresses to allow its links.
Answers are kept ``PROBE_TTL`` seconds per kernel: the sidebar's poll and the route's host
check cost one command per kernel per interval, however many browsers ask.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from ..ssh import run_in_ssh_loop

log = logging.getLogger("jupyter_hpc.proxy")

PROBE_TTL = 5.0
PROBE_TIMEOUT = 15.0

# argv[1]: the kernel's pid. Prints {"hostname", "addresses", "listening": [{"port", "address", "pid", "command"}]}.
PROBE_SCRIPT = r"""
import json, os, socket, sys
root = int(sys.argv[1])
children = {}
for entry in os.listdir("/proc"):
    if entry.isdigit():
        try:
            with open("/proc/%s/stat" % entry) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
tree, todo = set(), [root]
while todo:
    pid = todo.pop()
    if pid not in tree:
        tree.add(pid)
        todo.extend(children.get(pid, []))
owner = {}
for pid in tree:
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            if link.startswith("socket:["):
                owner[link[8:-1]] = pid
    except OSError:
        pass
def command(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()[:200]
    except OSError:
        return ""
listening, seen = [], set()
for name, width in (("tcp", 8), ("tcp6", 32)):
    try:
        lines = open("/proc/net/" + name).read().splitlines()[1:]
    except OSError:
        continue
    for line in lines:
        fields = line.split()
        if len(fields) < 10 or fields[3] != "0A" or fields[9] not in owner:
            continue
        address_hex, port_hex = fields[1].split(":")
        raw = bytes.fromhex(address_hex)
        if width == 8:
            address = socket.inet_ntop(socket.AF_INET, raw[::-1])
        else:
            address = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
        port = int(port_hex, 16)
        if port in seen:
            continue
        seen.add(port)
        pid = owner[fields[9]]
        listening.append({"port": port, "address": address, "pid": pid, "command": command(pid)})
addresses = set()
try:
    lines = open("/proc/net/fib_trie").read().splitlines()
    for before, line in zip(lines, lines[1:]):
        if "/32 host LOCAL" in line:
            addresses.add(before.split()[-1])
except OSError:
    pass
try:
    for line in open("/proc/net/if_inet6").read().splitlines():
        text = line.split()[0]
        addresses.add(socket.inet_ntop(socket.AF_INET6, bytes.fromhex(text)))
except OSError:
    pass
print(json.dumps({"hostname": socket.gethostname(), "fqdn": socket.getfqdn(),
                  "addresses": sorted(addresses), "listening": sorted(listening, key=lambda x: x["port"])}))
"""

_cache: dict[str, tuple[float, dict[str, Any]]] = {}


def kernel_remote(km: Any):
    """The running remote kernel behind a kernel manager (its launcher's answer and the
    connection it runs over), or None: not ours, not started, or its node is reached by job
    step only (``node_access = "direct"``: no SSH to the node to ask)."""
    provisioner = getattr(km, "provisioner", None)
    remote = getattr(provisioner, "_remote", None)
    if remote is None or getattr(provisioner, "node_access", "jump") == "direct":
        return None
    return provisioner, remote


async def probe_kernel(kernel_id: str, km: Any) -> dict[str, Any] | None:
    """The node facts for one kernel (cached ``PROBE_TTL`` s); None when it cannot be asked."""
    found = kernel_remote(km)
    if found is None:
        return None
    provisioner, remote = found
    now = time.monotonic()
    cached = _cache.get(kernel_id)
    if cached is not None and now - cached[0] < PROBE_TTL and cached[1].get("pid") == remote.pid:
        return cached[1]

    async def go() -> dict[str, Any]:
        argv = [provisioner.remote_python, "-I", "-c", PROBE_SCRIPT, str(remote.pid)]
        result = await asyncio.wait_for(remote.connection.run(argv, check=False), PROBE_TIMEOUT)
        if result.exit_status != 0:
            raise RuntimeError(str(result.stderr).strip() or f"exit status {result.exit_status}")
        return json.loads(str(result.stdout))

    try:
        facts = await run_in_ssh_loop(go())
    except Exception as exc:  # noqa: BLE001 - a probe is best effort; the route and sidebar carry on
        log.info("Could not ask the node of kernel %s what it serves: %s", kernel_id, exc)
        return None
    facts["pid"] = remote.pid
    facts["node"] = getattr(remote, "node", None) or facts.get("hostname")
    facts["job_id"] = getattr(remote, "job_id", None)
    _cache[kernel_id] = (now, facts)
    for stale in [k for k, (seen, _) in _cache.items() if now - seen > 10 * PROBE_TTL]:
        _cache.pop(stale, None)
    return facts
