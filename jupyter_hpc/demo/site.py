"""The demo's "Cori": one site entry, as an admin would write it in ``c.HPCSites.sites``.

The demo adds no shortcut of its own to the product: its cluster is a site like any other
(the embedded login node's address and pinned host key, a home and a scratch root, a login
target), so discovery, the file browser and the kernels take the same paths as at a real
site. A SLURM target is offered only where a real SLURM answers on this machine; the demo
never fakes a scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from typing import Any

from .login_node import LoginNode

SITE = "cori"
DISPLAY_NAME = "Cori"
SLURM_TARGET = "slurm"
#: Said when no SLURM answers: how to get compute-node kernels in the demo.
NO_SLURM = (
    "No SLURM answers here (sinfo), so kernels run on the login node only; with a running\n"
    "    SLURM (the tests start one: munge, slurmctld, slurmd) the demo adds \"SLURM job\" kernels."
)


async def default_partition(timeout: float = 5.0) -> str | None:
    """The default partition of a SLURM that answers here, or None."""
    sinfo = shutil.which("sinfo")
    if sinfo is None:
        return None
    try:
        process = await asyncio.create_subprocess_exec(
            sinfo, "--noheader", "--format=%P",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )
    except OSError:
        return None
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout)
    except asyncio.TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        return None
    if process.returncode != 0:
        return None
    partitions = [line.strip() for line in out.decode(errors="replace").splitlines() if line.strip()]
    default = next((p for p in partitions if p.endswith("*")), partitions[0] if partitions else None)
    return default.rstrip("*") if default else None


def demo_site(node: LoginNode, remote_python: str, *, partition: str | None, with_client_key: bool) -> dict[str, Any]:
    """The site entry for the embedded login node.

    ``with_client_key``: log in with the node's own key (JupyterLab alone); without it the
    hub's credential (a key service certificate) logs in, as at a site with a hub.
    """
    targets: dict[str, dict[str, Any]] = {"login": {"display_name": "login"}}
    if partition:
        # The compute node is this machine, which runs no sshd of the user's: the kernel
        # listens on the node's address with CurveZMQ and is reached through the login node.
        targets[SLURM_TARGET] = {
            "display_name": "SLURM job", "provisioner": "hpc-slurm", "partition": partition,
            "time": "00:30:00", "node_access": "direct",
        }
    site: dict[str, Any] = {
        "display_name": DISPLAY_NAME,
        "host": node.host,
        "port": node.port,
        "username": node.username,
        "known_hosts": str(node.known_hosts_path),
        "remote_python": remote_python,
        "roots": {"home": "~", "scratch": "$SCRATCH"},
        "targets": targets,
    }
    if with_client_key:
        site["client_keys"] = [str(node.client_key_path)]
    return site
