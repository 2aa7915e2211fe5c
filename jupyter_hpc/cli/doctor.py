"""``jupyter hpc doctor KERNEL``: check, step by step, how a cluster kernelspec reaches its site."""

from __future__ import annotations

import argparse

from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from traitlets import TraitError

from ..doctor import diagnose, render
from ..provisioners import SSHProvisioner
from ..ssh import run_in_ssh_loop_sync


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check a cluster kernel's site: network, host key, login, python, transport",
        description="Check, step by step, how an hpc-ssh kernelspec reaches its site, and say "
        "which transport its kernels get (Unix sockets, or CurveZMQ over the remote loopback) and why.",
    )
    parser.add_argument("kernel", help="the kernelspec's name, as `jupyter kernelspec list` shows it")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        spec = KernelSpecManager().get_kernel_spec(args.kernel)
    except NoSuchKernel:
        print(f"No kernelspec named {args.kernel!r}; `jupyter kernelspec list` shows the names.")
        return 2
    provisioner = spec.metadata.get("kernel_provisioner", {})
    if provisioner.get("provisioner_name") != "hpc-ssh":
        print(f"{args.kernel!r} is not a cluster kernel (its provisioner is not hpc-ssh).")
        return 2
    try:
        settings = SSHProvisioner(kernel_id="doctor", kernel_spec=spec, **provisioner.get("config", {}))
        target = settings.ssh_target()
    except (ValueError, TraitError) as exc:
        print(f"{args.kernel!r} is misconfigured: {exc}")
        return 2
    checks = run_in_ssh_loop_sync(
        diagnose(target, settings.remote_python, settings.allow_plaintext_loopback)
    )
    print(render(f"{spec.display_name} ({target.username or ''}@{target.host}):", checks))
    return 0 if all(check.ok for check in checks) else 1
