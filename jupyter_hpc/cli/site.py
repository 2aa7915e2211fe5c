"""``jupyter hpc sites`` and ``jupyter hpc site add|remove``: sites without editing Python.

A laptop user names a cluster once; the entry lands in their ``jupyter_server_config.json``
as ``HPCSites.sites``, where JupyterLab, the CLI and the hub's config format all read it.
``site add`` on a site that exists changes only what the command names: settings, roots and
targets written by hand (or by an earlier ``site add``) stay.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import HPCError
from ..sites import SiteConfigError, parse_site
from .config import load_sites, read_user_config, write_user_config


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    listing = subparsers.add_parser(
        "sites", help="list the configured sites and their targets",
        description="List the sites (c.HPCSites.sites) that JupyterLab will offer, with their targets.",
    )
    listing.set_defaults(func=run_list)

    site = subparsers.add_parser(
        "site", help="add or remove a site in your jupyter_server_config.json",
        description="Add or remove a site in your own jupyter_server_config.json.",
    )
    actions = site.add_subparsers(title="actions", metavar="ACTION")
    add = actions.add_parser(
        "add", help="add a site, or change one (keeping what the command does not name)",
        description="Add a site to your jupyter_server_config.json, or change the one of that name: only "
        "the settings, roots and targets the command names change, the rest stays. Example: "
        "jupyter hpc site add cori --host cori.nersc.gov --target knl:hpc-slurm --target-set knl.partition=regular",
    )
    add.add_argument("name", help="the site's name, e.g. cori (lowercase letters, digits, . _ -)")
    add.add_argument("--host", help="the login node, e.g. cori.nersc.gov (needed for a new site)")
    add.add_argument("--port", type=int, help="its SSH port (default: ~/.ssh/config, else 22)")
    add.add_argument("--user", dest="username", help="your user name there (default: ~/.ssh/config, else yours)")
    add.add_argument("--key", dest="client_keys", action="append",
                     help="a private key to log in with (repeatable; default: ssh-agent and ~/.ssh/id_*)")
    add.add_argument("--jump", dest="jump_host", help="a bastion, [user@]host[:port]")
    add.add_argument("--known-hosts", dest="known_hosts", help="known_hosts file (default: ~/.ssh/known_hosts)")
    add.add_argument("--python", dest="remote_python", help="a Python 3.8+ on the login node (default: python3)")
    add.add_argument("--display-name", dest="display_name", help="how the launcher names it (default: Name)")
    add.add_argument("--root", dest="roots", action="append", metavar="NAME=PATH",
                     help="a file system for the file browser, e.g. scratch=$SCRATCH (repeatable; default home=~)")
    add.add_argument("--target", dest="targets", action="append", metavar="NAME[:PROVISIONER]",
                     help="a place kernels run: NAME:hpc-slurm for a SLURM job, NAME or NAME:hpc-ssh for the "
                     "login node (repeatable; a site has 'login' by default and keeps it)")
    add.add_argument("--target-set", dest="target_settings", action="append", metavar="NAME.KEY=VALUE",
                     help="a setting of a target, e.g. knl.partition=regular, knl.time=01:00:00, "
                     "knl.display_name='KNL node' (repeatable; a VALUE that is JSON, such as 2 or true, is read as such)")
    add.add_argument("--remove-target", dest="removed_targets", action="append", metavar="NAME",
                     help="remove a target (repeatable)")
    add.set_defaults(func=run_add)
    remove = actions.add_parser("remove", help="remove a site", description="Remove a site from your jupyter_server_config.json.")
    remove.add_argument("name")
    remove.set_defaults(func=run_remove)
    site.set_defaults(func=lambda args: (site.print_help(), 2)[1])


def run_list(args: argparse.Namespace) -> int:
    try:
        sites = load_sites().all()
    except HPCError as exc:
        print(exc)
        return 2
    if not sites:
        print("No sites configured. Add one: jupyter hpc site add NAME --host LOGIN-NODE [--user USER] [--key KEY]")
        return 0
    rows = [("SITE", "DISPLAY NAME", "LOGIN", "TARGETS")]
    for site in sites:
        target = site.ssh_target()
        login = target.spec() + (f" via {target.jump_host}" if target.jump_host else "")
        targets = ", ".join(f"{t.name} ({t.provisioner})" for t in site.targets.values())
        rows.append((site.name, site.display_name, login, targets))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])
    return 0


class UsageError(ValueError):
    """A command-line value that cannot be used; the message says the form it takes."""


def _value(text: str) -> Any:
    """A setting's value: JSON where it reads as JSON (2, true, ["a"]), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def merged_site(old: dict[str, Any] | None, args: argparse.Namespace) -> dict[str, Any]:
    """The site's entry after this command: ``old`` (None for a new site) with only what the
    command names changed. Targets keep their order; a new one goes last, after 'login'."""
    entry: dict[str, Any] = json.loads(json.dumps(old)) if old else {}
    for key in ("host", "port", "username", "client_keys", "jump_host", "known_hosts", "remote_python", "display_name"):
        value = getattr(args, key, None)
        if value is not None:
            entry[key] = value
    if not entry.get("host"):
        raise UsageError(f"A new site needs --host, the login node (e.g. --host {args.name}.example.org).")
    for root in args.roots or ():
        name, equals, path = root.partition("=")
        if not equals or not name or not path:
            raise UsageError(f"--root takes NAME=PATH, e.g. scratch=$SCRATCH; not {root!r}")
        entry.setdefault("roots", {})[name] = path
    targets_named = bool(args.targets or args.target_settings or args.removed_targets)
    if targets_named:
        targets: dict[str, Any] = entry.setdefault("targets", {"login": {}})
        for text in args.targets or ():
            name, _, provisioner = text.partition(":")
            target = targets.setdefault(name, {})
            if provisioner and provisioner != "hpc-ssh":
                target["provisioner"] = provisioner
            elif provisioner == "hpc-ssh":
                target.pop("provisioner", None)
        for text in args.target_settings or ():
            name_key, equals, value = text.partition("=")
            name, dot, key = name_key.partition(".")
            if not equals or not dot or not name or not key:
                raise UsageError(f"--target-set takes NAME.KEY=VALUE, e.g. knl.partition=regular; not {text!r}")
            if name not in targets:
                raise UsageError(f"--target-set {text}: the site has no target {name!r}; add it with "
                                 f"--target {name}:hpc-slurm (targets: {', '.join(targets)})")
            targets[name][key] = _value(value)
        for name in args.removed_targets or ():
            if targets.pop(name, None) is None:
                raise UsageError(f"--remove-target {name}: the site has no such target (targets: {', '.join(targets) or 'none'})")
        if not targets:
            raise UsageError("A site needs at least one target; keep 'login' or add another.")
    return entry


def run_add(args: argparse.Namespace) -> int:
    try:
        config = read_user_config()
        sites = config.setdefault("HPCSites", {}).setdefault("sites", {})
        changed = args.name in sites
        entry = merged_site(sites.get(args.name), args)
        parse_site(args.name, entry)
    except (SiteConfigError, HPCError, UsageError) as exc:
        print(exc)
        return 2
    sites[args.name] = entry
    path = write_user_config(config)
    print(f"{'Changed' if changed else 'Added'} site {args.name!r} in {path}.")
    targets = entry.get("targets") or {"login": {}}
    shown = [f"{name} ({each.get('provisioner', 'hpc-ssh')})" for name, each in targets.items()]
    print(f"Targets: {', '.join(shown)}.")
    print(f"Check it: jupyter hpc doctor {args.name}")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    try:
        config = read_user_config()
    except HPCError as exc:
        print(exc)
        return 2
    sites = config.get("HPCSites", {}).get("sites", {})
    if args.name not in sites:
        print(f"No site {args.name!r} in your jupyter_server_config.json (sites there: {', '.join(sites) or 'none'}).")
        return 2
    del sites[args.name]
    path = write_user_config(config)
    print(f"Removed site {args.name!r} from {path}.")
    return 0
