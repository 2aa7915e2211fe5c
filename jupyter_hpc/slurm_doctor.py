"""The SLURM steps of ``jupyter hpc doctor`` for a SLURM kernelspec (``hpc-slurm``).

After the login steps (:func:`jupyter_hpc.doctor.diagnose`), a SLURM kernel also needs: the
SLURM commands on the login node's PATH for a non-interactive login, its partition existing
and up (a partition held down queues the kernel's job with Reason ``PartitionDown`` until the
partition is up again or the user cancels it, which looks like a hang), and, with ``node_access = "jump"``, SSH from the
login node to a compute node of that partition. Each step says what to fix; the steps stop at
the first failure, since nothing after it can work.
"""

from __future__ import annotations

from typing import Any

from .doctor import Check
from .errors import HPCError
from .ssh import SiteConnection

SLURM_COMMANDS = ("sbatch", "squeue", "scancel", "sinfo")
# Prints each command's path, or "missing NAME": argv in, no user value joined into code.
_FIND_COMMANDS = 'for c in "$@"; do command -v "$c" || echo "missing $c"; done'
#: sinfo's partition availability: anything but "up" takes no jobs.
_AVAILABLE = "up"


async def diagnose_slurm(login: SiteConnection, settings: Any) -> list[Check]:
    """The SLURM steps for a kernel of ``settings`` (a SlurmProvisioner's), on ``login``."""
    found = await login.run(["sh", "-c", _FIND_COMMANDS, "sh", *SLURM_COMMANDS], check=False)
    missing = [line.split()[1] for line in str(found.stdout).splitlines() if line.startswith("missing ")]
    if missing:
        return [Check(
            "slurm", False,
            f"{', '.join(missing)} not found on {login.target.host}'s PATH for a non-interactive login: "
            "is this the cluster's login node? Load SLURM in the shell's rc file, or point host elsewhere",
        )]
    checks = [Check("slurm", True, f"{', '.join(SLURM_COMMANDS)} found on {login.target.host}")]
    partition_step, partition = await partition_check(login, settings.partition)
    checks.append(partition_step)
    if not partition_step.ok:
        return checks
    checks.append(await _nodes(login, settings, partition))
    return checks


async def partition_check(login: SiteConnection, wanted: str) -> tuple[Check, str]:
    """Whether the partition (the cluster's default when none is set) exists and is up."""
    result = await login.run(["sinfo", "--noheader", "--format=%P|%a"], check=False)
    if result.exit_status != 0:
        detail = str(result.stderr).strip() or f"exit status {result.exit_status}"
        return Check("partition", False, f"sinfo failed on {login.target.host}: {detail}; is slurmctld reachable?"), ""
    states: dict[str, str] = {}
    default = ""
    for line in str(result.stdout).splitlines():
        name, _, available = line.strip().partition("|")
        if not name:
            continue
        if name.endswith("*"):
            name = default = name[:-1]
        states.setdefault(name, available)
    name = wanted or default
    if not name:
        return Check("partition", False, "no partition is set and the cluster has no default one: "
                     "set the target's partition"), ""
    if name not in states:
        return Check("partition", False, f"partition {name} does not exist on the cluster (partitions: "
                     f"{', '.join(states) or 'none'}): fix the target's partition"), name
    shown = f"partition {name}" + ("" if wanted else " (the cluster's default)")
    if states[name] != _AVAILABLE:
        return Check("partition", False, f"{shown} is {states[name]}: it takes no jobs, so a kernel's job would "
                     "wait in the queue (Reason PartitionDown) until it is up again; choose another partition "
                     "or ask the cluster's admins when it is back"), name
    return Check("partition", True, f"{shown} is up"), name


async def _nodes(login: SiteConnection, settings: Any, partition: str) -> Check:
    if settings.node_access == "direct":
        return Check("nodes", True, "node_access is direct: the kernel is reached from the login node, "
                     "no SSH to compute nodes needed")
    result = await login.run(["sinfo", "--noheader", "--Node", "--format=%N", f"--partition={partition}"], check=False)
    nodes = [line.strip() for line in str(result.stdout).splitlines() if line.strip()]
    if result.exit_status != 0 or not nodes:
        return Check("nodes", False, f"sinfo lists no node in partition {partition}")
    try:
        await settings._node_connection(login, nodes[0])
    except HPCError as exc:
        return Check("nodes", False, str(exc))
    return Check("nodes", True, f"SSH to compute node {nodes[0]} through {login.target.host} works")
