"""``jupyter hpc doctor SITE|KERNEL``: check, step by step, how a site or a cluster kernelspec is reached."""

from __future__ import annotations

import argparse

from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from traitlets import TraitError

from ..doctor import diagnose, render
from ..errors import HPCError
from ..site_doctor import diagnose_site
from ..provisioners import SlurmProvisioner, SSHProvisioner
from ..slurm_doctor import diagnose_slurm
from ..ssh import get_pool, run_in_ssh_loop_sync
from .config import load_sites


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check a site or a cluster kernel: name, network, host key, login, python, kernels, SLURM, transport",
        description="Check, step by step, how a site (or an hpc-ssh or hpc-slurm kernelspec) is reached: its name and "
        "port, host key, login, remote python, the kernels found there, SLURM commands and compute nodes "
        "for SLURM targets; and which transport its kernels get (Unix sockets, or CurveZMQ over the "
        "remote loopback) and why. Each failing step says what to fix.",
    )
    parser.add_argument("kernel", metavar="SITE|KERNEL",
                        help="a site's name (`jupyter hpc sites`), or a kernelspec's (`jupyter kernelspec list`)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        sites = load_sites()
    except HPCError as exc:
        print(f"The site configuration is wrong: {exc}")
        return 2
    if args.kernel in sites.names():
        return run_site(sites.site(args.kernel))
    try:
        spec = KernelSpecManager().get_kernel_spec(args.kernel)
    except NoSuchKernel:
        print(f"No site or kernelspec named {args.kernel!r}; `jupyter hpc sites` and "
              "`jupyter kernelspec list` show the names.")
        return 2
    provisioner = spec.metadata.get("kernel_provisioner", {})
    kinds = {"hpc-ssh": SSHProvisioner, "hpc-slurm": SlurmProvisioner}
    kind = kinds.get(provisioner.get("provisioner_name"))
    if kind is None:
        print(f"{args.kernel!r} is not a cluster kernel (its provisioner is "
              f"{provisioner.get('provisioner_name') or 'the local one'}, not hpc-ssh or hpc-slurm).")
        return 2
    try:
        settings = kind(kernel_id="doctor", kernel_spec=spec, **provisioner.get("config", {}))
        target = settings.ssh_target()
    except (ValueError, TraitError) as exc:
        print(f"{args.kernel!r} is misconfigured: {exc}")
        return 2
    checks = run_in_ssh_loop_sync(kernel_checks(settings, target, slurm=kind is SlurmProvisioner, name=args.kernel))
    print(render(f"{spec.display_name} ({target.username or ''}@{target.host}):", checks))
    return 0 if all(check.ok for check in checks) else 1


async def kernel_checks(settings, target, *, slurm: bool, name: str = "kernel") -> list:
    """The login steps, then (a SLURM kernelspec) the SLURM ones: commands, partition, nodes;
    (an hpc-ssh one) the transport the kernel gets, and why."""
    checks = await diagnose(target, settings.remote_python, settings.allow_plaintext_loopback, settings.debugger)
    if slurm and all(check.ok for check in checks):
        checks += await diagnose_slurm(await get_pool().connect(target), settings)
    elif all(check.ok for check in checks):  # the kernel's own transport, now the site's answer is known
        from ..site_doctor import provisioner_transport

        checks.append(await provisioner_transport(settings, name))
    return checks


def run_site(site) -> int:
    target = site.ssh_target()
    checks = run_in_ssh_loop_sync(diagnose_site(site, remote_kernels(site)))
    print(render(f"{site.display_name} ({target.spec()}):", checks))
    return 0 if all(check.ok for check in checks) else 1


def remote_kernels(site) -> list[tuple[str, list[str], str | None]]:
    """(name, argv, the transport its spec asks for) of the kernelspecs discovered on the site;
    none when the site cannot be listed (the login steps then say why)."""
    from ..kernelspecs import discover_sync
    from ..kernelspecs.build import remote_argv
    from ..provisioners.transport import spec_transport

    try:
        result = discover_sync(site)
    except HPCError:
        return []
    # The argv the launcher will run: {prefix}, {resource_dir} and python3.X made the remote's.
    return [(spec.name, remote_argv(list(spec.spec["argv"]), spec.resource_dir, result),
             spec_transport(spec.spec.get("metadata"))) for spec in result.specs]
