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

import zmq

from .doctor import Check, diagnose
from .errors import HPCError, TransportRefusedError
from .provisioners.transport import choose_transport
from .sites import Site
from .slurm_doctor import partition_check
from .ssh import SiteConnection, get_pool

SLURM_COMMANDS = ("sbatch", "squeue", "scancel", "sinfo")
# Prints each command's path, or "missing NAME": argv in, no user value joined into code.
_FIND_COMMANDS = 'for c in "$@"; do command -v "$c" || echo "missing $c"; done'


async def diagnose_site(site: Site, kernels: Sequence[tuple] = ()) -> list[Check]:
    """Every check for ``site``; ``kernels`` are (name, remote argv[, transport the spec asks
    for]) of the kernelspecs found there: each gets its program checked, and the transport it
    will get, and why."""
    target = site.ssh_target()
    checks = [await _resolve(target.host, target.port or 22)]
    if not checks[0].ok and not target.jump_host:
        return checks
    checks += await diagnose(target, site.remote_python, bool(site.settings.get("allow_plaintext_loopback")))
    if not all(check.ok for check in checks):
        return checks
    login = await get_pool().connect(target)
    for name, argv, *choice in kernels:
        checks.append(await _kernel_check(login, name, argv))
        checks.append(_kernel_transport(site, name, choice[0] if choice else None, login.stream_local))
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
    """Whether the spec's program is found there as the launcher will find it, and for a
    python running a module (``-m ipykernel_launcher``, ``-m xpython_launcher``), whether that
    module imports.

    argv[0] is resolved on the PATH of a command run over SSH, which is the environment the
    launcher starts the kernel in: ``R`` (IRkernel's spec) or ``python`` is a command there,
    as in a terminal, not a file name relative to the home.
    """
    program = argv[0] if argv else ""
    if not program:
        return Check(f"kernel {name}", False, "its argv is empty; fix the spec")
    found = await login.run(["sh", "-c", _RESOLVE, "sh", program], check=False)
    path = str(found.stdout or "").strip().splitlines()[-1:] or [""]
    if found.exit_status != 0 or not path[0]:
        where = "is not an executable file" if "/" in program else "is not a command on the login shell's PATH"
        return Check(f"kernel {name}", False, f"{program} {where} on {login.target.host}; "
                     "install it there, add its directory to PATH in the shell's rc file, or fix the spec's argv")
    resolved = path[0]
    shown = program if resolved == program else f"{program} ({resolved})"
    module = _python_module(argv)
    if module is None:
        return Check(f"kernel {name}", True, f"{shown} is executable")
    package = "ipykernel" if module == "ipykernel_launcher" else module.split(".")[0]
    result = await login.run([resolved, "-c", f"import {package}"], check=False)
    if result.exit_status != 0:
        return Check(
            f"kernel {name}", False,
            f"{program} cannot import {package} on {login.target.host}: install it there "
            f"({shlex.join([program, '-m', 'pip', 'install', '--user', package])}), or fix the spec's argv",
        )
    return Check(f"kernel {name}", True, f"{shown} imports {package}")


# Prints where the login's PATH finds "$1" (a command name or a path) and fails if nowhere
# executable: the kernel's argv[0] as the launcher's exec will find it.
_RESOLVE = 'p=$(command -v -- "$1") && [ -x "$p" ] && [ ! -d "$p" ] && printf "%s\\n" "$p"'


def _python_module(argv: Sequence[str]) -> str | None:
    """The module a python argv runs with ``-m`` (``ipykernel_launcher``), else None."""
    if not argv or not argv[0].rsplit("/", 1)[-1].startswith("python"):
        return None
    for option, value in zip(argv[1:], argv[2:]):
        if option == "-m" and value.replace(".", "").replace("_", "").isalnum():
            return value
    return "ipykernel_launcher" if "ipykernel" in argv else None


def _kernel_transport(site: Site, name: str, spec_choice: str | None, stream_local: bool | None) -> Check:
    """The transport this kernel will get on the login node, and why (:mod:`.provisioners.transport`,
    the rule the provisioner applies): its spec's choice or the site's, against what the site's
    sshd allows (learnt by the transport step)."""
    settings = site.settings
    if spec_choice:
        wanted, who = spec_choice, "its kernelspec's metadata.jupyter_hpc.transport"
    else:
        wanted, who = str(settings.get("remote_transport", "auto")).lower(), "the site's remote_transport"
    return transport_check(name, wanted, who, stream_local, bool(settings.get("allow_plaintext_loopback")),
                           site.ssh_target().host)


async def provisioner_transport(provisioner, name: str) -> Check:
    """:func:`transport_check` for one kernelspec's provisioner (``jupyter hpc doctor KERNEL``),
    after the login steps have learnt what its site allows."""
    login = await get_pool().connect(provisioner.ssh_target())
    wanted, who = provisioner.wanted_transport()
    return transport_check(name, wanted, who, login.stream_local, provisioner.allow_plaintext_loopback, provisioner.host)


def transport_check(name: str, wanted: str, who: str, stream_local: bool | None, allow_plaintext: bool, host: str) -> Check:
    try:
        transport, why = choose_transport(wanted, who, stream_local, curve=zmq.has("curve"),
                                          allow_plaintext=allow_plaintext, host=host, kernel=name)
    except TransportRefusedError as exc:
        return Check(f"transport {name}", False, str(exc))
    return Check(f"transport {name}", True, f"{transport}: {why}")


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
    partition, _ = await partition_check(login, settings.partition)  # exists and is up
    checks.append(Check(f"partition {target}", partition.ok, partition.detail))
    if not partition.ok:
        return checks
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
