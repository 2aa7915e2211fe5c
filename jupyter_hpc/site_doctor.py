"""Check a whole site, step by step: the login path, each kernel it offers, each SLURM target.

:func:`jupyter_hpc.doctor.diagnose` walks one login (network, host key, login, remote python,
transport). A site has more that can be wrong and that a new admin cannot see from a failed
kernel start: a host name that does not resolve, a kernelspec whose python lacks ipykernel, a
SLURM target on a login node without the SLURM commands, compute nodes that refuse SSH. Each
is a step here, with what to change when it fails; the login steps still stop at the first
failure, since nothing after them can run.
"""

from __future__ import annotations

import asyncio
import shlex
import socket
from collections.abc import Sequence

from .doctor import Check, diagnose
from .errors import HPCError
from .sites import Site
from .ssh import SiteConnection, get_pool

SLURM_COMMANDS = ("sbatch", "squeue", "scancel", "sinfo")
# Prints each command's path, or "missing NAME": argv in, no user value joined into code.
_FIND_COMMANDS = 'for c in "$@"; do command -v "$c" || echo "missing $c"; done'


async def diagnose_site(site: Site, kernels: Sequence[tuple[str, Sequence[str]]] = ()) -> list[Check]:
    """Every check for ``site``; ``kernels`` are (name, remote argv) of the kernelspecs found there."""
    target = site.ssh_target()
    checks = [await _resolve(target.host, target.port or 22)]
    if not checks[0].ok and not target.jump_host:
        return checks
    checks += await diagnose(target, site.remote_python, bool(site.settings.get("allow_plaintext_loopback")))
    if not all(check.ok for check in checks):
        return checks
    login = await get_pool().connect(target)
    for name, argv in kernels:
        checks.append(await _kernel_check(login, name, argv))
    for each in site.targets.values():
        if each.provisioner == "hpc-slurm":
            checks += await _slurm_checks(login, site, each.name)
    return checks


async def _resolve(host: str, port: int) -> Check:
    try:
        addresses = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return Check("name", False, f"{host} does not resolve ({exc}); check the site's host setting")
    return Check("name", True, f"{host} is {addresses[0][4][0]}")


async def _kernel_check(login: SiteConnection, name: str, argv: Sequence[str]) -> Check:
    """Whether the spec's program exists there, and for a python, whether it has ipykernel."""
    program = argv[0] if argv else ""
    if "ipykernel_launcher" in argv or "ipykernel" in argv or program.rsplit("/", 1)[-1].startswith("python"):
        result = await login.run([program, "-c", "import ipykernel"], check=False)
        if result.exit_status != 0:
            return Check(
                f"kernel {name}", False,
                f"{program} cannot import ipykernel on {login.target.host}: install it there "
                f"({shlex.join([program, '-m', 'pip', 'install', '--user', 'ipykernel'])}), or fix the spec's argv",
            )
        return Check(f"kernel {name}", True, f"{program} imports ipykernel")
    result = await login.run(["test", "-x", program], check=False)
    if result.exit_status != 0:
        return Check(f"kernel {name}", False, f"{program} is not an executable file on {login.target.host}; fix the spec's argv")
    return Check(f"kernel {name}", True, f"{program} is executable (a wrapper: ipykernel not checked)")


async def _slurm_checks(login: SiteConnection, site: Site, target: str) -> list[Check]:
    from .provisioners import SlurmProvisioner

    found = await login.run(["sh", "-c", _FIND_COMMANDS, "sh", *SLURM_COMMANDS], check=False)
    missing = [line.split()[1] for line in str(found.stdout).splitlines() if line.startswith("missing ")]
    if missing:
        return [Check(
            f"slurm {target}", False,
            f"{', '.join(missing)} not found on {login.target.host}'s PATH for a non-interactive "
            "login: is this the cluster's login node? Load SLURM in the shell's rc file, or point host elsewhere",
        )]
    checks = [Check(f"slurm {target}", True, f"{', '.join(SLURM_COMMANDS)} found")]
    settings = SlurmProvisioner(kernel_id="doctor", **site.provisioner_config(target))
    if settings.node_access == "direct":
        checks.append(Check(f"nodes {target}", True, "node_access is direct: no SSH to compute nodes needed"))
        return checks
    node = await _a_node(login, settings.partition)
    if node is None:
        checks.append(Check(f"nodes {target}", False, f"sinfo lists no node in partition {settings.partition or '(default)'}"))
        return checks
    try:
        await settings._node_connection(login, node)
    except HPCError as exc:
        checks.append(Check(f"nodes {target}", False, str(exc)))
    else:
        checks.append(Check(f"nodes {target}", True, f"SSH to compute node {node} through {login.target.host} works"))
    return checks


async def _a_node(login: SiteConnection, partition: str) -> str | None:
    argv = ["sinfo", "-h", "-N", "-o", "%N"] + ([f"--partition={partition}"] if partition else [])
    result = await login.run(argv, check=False)
    nodes = [line.strip() for line in str(result.stdout).splitlines() if line.strip()]
    return nodes[0] if result.exit_status == 0 and nodes else None
