"""``jupyter hpc kernels|install|uninstall|kernel create``: a site's own kernels, from a terminal.

``kernels`` shows what the launcher will show for a site, each with the remote file it came
from, so a user can see why a spec is missing (the warnings name the bad files). ``install``
turns the same discovered kernels into local kernelspecs, for a plain JupyterLab on a laptop
that runs no :class:`~jupyter_hpc.kernelspecs.RemoteKernelSpecManager`. ``kernel create``
writes a kernelspec into the user's remote home, where discovery finds it: the way to add a
conda env or a module stack without an admin and without a local kernel.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from jupyter_core.paths import jupyter_data_dir, jupyter_runtime_dir

from ..errors import HPCError
from ..sites import NAME, Site
from .config import load_sites

REMOTE_KERNELS = ".local/share/jupyter/kernels"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    kernels = subparsers.add_parser(
        "kernels", help="list the kernels the launcher shows for a site, and where each came from",
        description="Discover the kernelspecs in your remote Jupyter paths on each site (or one) and "
        "list them as the launcher shows them, with the remote file each came from.",
    )
    kernels.add_argument("site", nargs="?", help="one site (default: every configured site)")
    kernels.add_argument("--refresh", action="store_true",
                         help="also make your running Jupyter servers list them anew now (not at their next refresh)")
    kernels.add_argument("--json", action="store_true", help="print JSON instead of a table")
    kernels.set_defaults(func=run_kernels)

    install = subparsers.add_parser(
        "install", help="write local kernelspecs for a site's kernels (a plain JupyterLab then offers them)",
        description="Write one local kernelspec per kernel found on the site and target into your Jupyter "
        "data directory, so that a JupyterLab without jupyter-hpc's kernelspec manager offers them. "
        "Run it again after adding kernels on the site.",
    )
    install.add_argument("site")
    install.add_argument("--target", action="append", help="only this target (repeatable; default: all)")
    install.set_defaults(func=run_install)

    uninstall = subparsers.add_parser(
        "uninstall", help="remove the local kernelspecs `install` wrote for a site",
        description="Remove the local kernelspecs that `jupyter hpc install SITE` wrote.",
    )
    uninstall.add_argument("site")
    uninstall.set_defaults(func=run_uninstall)

    kernel = subparsers.add_parser("kernel", help="create a kernelspec in your home on a site",
                                   description="Create a kernelspec in your remote home on a site.")
    actions = kernel.add_subparsers(title="actions", metavar="ACTION")
    create = actions.add_parser(
        "create", help="write ~/.local/share/jupyter/kernels/NAME/kernel.json on the site",
        description="Write a kernelspec into ~/.local/share/jupyter/kernels/NAME/ on the site, over SFTP. "
        "It shows in the launcher after a refresh (`jupyter hpc kernels --refresh`), with no restart.",
    )
    create.add_argument("site")
    create.add_argument("--name", required=True, help="the kernelspec's name (lowercase letters, digits, . _ -)")
    create.add_argument("--python", help="the python on the site that has ipykernel, e.g. ~/envs/x/bin/python "
                        "(with --container: the one in the image, default python3)")
    create.add_argument("--container", metavar="RUNTIME:IMAGE",
                        help="run the kernel in a container: podman:IMAGE, podman-hpc:IMAGE, apptainer:PATH.sif, "
                        "singularity:PATH.sif or shifter:IMAGE; the kernel's directory is bind-mounted into it")
    create.add_argument("--container-arg", action="append", default=[], metavar="ARG",
                        help="one more argument for the container runtime, before the image, e.g. "
                        "--container-arg=--volume=/global/cfs:/global/cfs (repeatable)")
    create.add_argument("--display-name", help="how the launcher names it (default: NAME)")
    create.add_argument("--setup", action="append", default=[], metavar="LINE",
                        help="a shell line run before the kernel starts, e.g. 'module load cuda' (repeatable)")
    create.set_defaults(func=run_create)
    kernel.set_defaults(func=lambda args: (kernel.print_help(), 2)[1])


def _sites(name: str | None) -> list[Site]:
    sites = load_sites()
    return [sites.site(name)] if name else sites.all()


def run_kernels(args: argparse.Namespace) -> int:
    from ..kernelspecs import discover_sync, local_kernelspecs

    try:
        sites = _sites(args.site)
    except HPCError as exc:
        print(exc)
        return 2
    status, report = 0, {}
    for site in sites:
        try:
            result = discover_sync(site)
        except HPCError as exc:
            report[site.name] = {"ok": False, "error": str(exc), "kernels": [], "warnings": []}
            status = 1
            continue
        report[site.name] = {
            "ok": True,
            "kernels": [
                {"name": spec.name, "display_name": spec.kernel["display_name"], "target": spec.target,
                 "remote_file": spec.remote.kernel_file}
                for spec in local_kernelspecs(site, result)
            ],
            "warnings": list(result.warnings),
        }
    if args.refresh:
        refreshed = refresh_running_servers(args.site)
        for entry in report.values():
            entry["servers_refreshed"] = refreshed
    if args.json:
        print(json.dumps(report, indent=1))
        return status
    for name, entry in report.items():
        if not entry["ok"]:
            print(f"{name}: cannot list its kernels: {entry['error']}")
            continue
        print(f"{name}: {len(entry['kernels'])} kernel(s)")
        for kernel in entry["kernels"]:
            print(f"  {kernel['name']:<36} {kernel['display_name']:<40} {kernel['remote_file']}")
        for warning in entry["warnings"]:
            print(f"  skipped: {warning}")
    if args.refresh:
        print(f"Asked {refreshed} running Jupyter server(s) of yours to list them anew.")
    return status


def refresh_running_servers(site: str | None) -> int:
    """POST the refresh endpoint of each running server of this user (the ``jpserver-*.json``
    files in the runtime directory); the servers that answered."""
    import urllib.error
    import urllib.request

    answered = 0
    for info_file in Path(jupyter_runtime_dir()).glob("jpserver-*.json"):
        try:
            info = json.loads(info_file.read_text())
            url = info["url"].rstrip("/") + "/jupyter-hpc/api/kernelspecs/refresh"
            body = json.dumps({"site": site} if site else {}).encode()
            request = urllib.request.Request(url, data=body, method="POST", headers={
                "Authorization": f"token {info.get('token', '')}", "Content-Type": "application/json",
            })
            with urllib.request.urlopen(request, timeout=60) as response:
                answered += response.status == 200
        except (OSError, ValueError, KeyError, urllib.error.URLError) as exc:
            # A stale file, or a server without jupyter-hpc's extension: say so, carry on.
            print(f"could not refresh the server of {info_file.name}: {exc}", file=sys.stderr)
    return answered


def run_install(args: argparse.Namespace) -> int:
    from ..kernelspecs import discover_sync, local_kernelspecs, write_kernelspec

    try:
        site = _sites(args.site)[0]
        for target in args.target or ():
            site.target(target)
        result = discover_sync(site)
    except HPCError as exc:
        print(exc)
        return 2 if "No site" in str(exc) or "no target" in str(exc) else 1
    kernels = Path(jupyter_data_dir()) / "kernels"
    installed = [spec for spec in local_kernelspecs(site, result) if not args.target or spec.target in args.target]
    for spec in installed:
        directory = kernels / spec.name
        if directory.exists():
            shutil.rmtree(directory)
        write_kernelspec(str(directory), spec)
        print(f"installed {spec.name}: {spec.kernel['display_name']} (from {spec.remote.kernel_file})")
    for warning in result.warnings:
        print(f"skipped: {warning}")
    if not installed:
        print(f"No kernels found on {site.name}; add one with: jupyter hpc kernel create {site.name} --name NAME --python PATH")
    return 0


def run_uninstall(args: argparse.Namespace) -> int:
    kernels = Path(jupyter_data_dir()) / "kernels"
    removed = 0
    for kernel_json in sorted(kernels.glob("*/kernel.json")):
        try:
            metadata = json.loads(kernel_json.read_text()).get("metadata") or {}
        except (OSError, ValueError):
            continue
        if (metadata.get("jupyter_hpc") or {}).get("site") == args.site:
            shutil.rmtree(kernel_json.parent)
            print(f"removed {kernel_json.parent.name}")
            removed += 1
    if not removed:
        print(f"No kernelspecs installed for site {args.site!r} in {kernels}.")
        return 2
    return 0


def run_create(args: argparse.Namespace) -> int:
    from ..ssh import run_in_ssh_loop_sync

    if not NAME.match(args.name):
        print(f"--name {args.name!r} is not usable: use lowercase letters, digits, '.', '_' and '-'.")
        return 2
    if any("\n" in line or "\r" in line for line in args.setup):
        print("A --setup line cannot contain a newline: give each line as its own --setup.")
        return 2
    try:
        site = _sites(args.site)[0]
    except HPCError as exc:
        print(exc)
        return 2
    if args.container:
        from ..kernelspecs.containers import container_argv

        try:
            argv = container_argv(args.container, args.python or "python3", args.container_arg)
        except ValueError as exc:
            print(exc)
            return 2
    elif args.python:
        argv = [args.python, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    else:
        print("Give --python (the site's python with ipykernel), or --container RUNTIME:IMAGE.")
        return 2
    spec = {
        "argv": argv,
        "display_name": args.display_name or args.name,
        "language": "python",
        "metadata": {"jupyter_hpc": {"setup": list(args.setup)}} if args.setup else {},
    }
    try:
        path = run_in_ssh_loop_sync(write_remote_kernelspec(site, args.name, spec))
    except HPCError as exc:
        print(exc)
        return 1
    print(f"Wrote {path} on {site.name}. See it: jupyter hpc kernels {site.name} --refresh")
    return 0


async def write_remote_kernelspec(site: Site, name: str, spec: dict) -> str:
    """In the SSH loop: ``~/.local/share/jupyter/kernels/<name>/kernel.json`` on the site,
    written to a temporary name and renamed, so discovery never reads half a file."""
    from ..ssh.quiet_import import asyncssh

    from ..ssh import get_pool

    connection = await get_pool().connect(site.ssh_target())
    async with connection.sftp() as sftp:
        home = await sftp.realpath(".")
        directory = f"{home}/{REMOTE_KERNELS}/{name}"
        await sftp.makedirs(directory, exist_ok=True)
        path = f"{directory}/kernel.json"
        partial = f"{path}.{os.getpid()}.partial"
        async with sftp.open(partial, "w", asyncssh.SFTPAttrs(permissions=0o644)) as handle:
            await handle.write(json.dumps(spec, indent=1) + "\n")
        await sftp.posix_rename(partial, path)
    return path
