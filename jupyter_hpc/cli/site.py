"""``jupyter hpc sites`` and ``jupyter hpc site add|remove``: sites without editing Python.

A laptop user names a cluster once; the entry lands in their ``jupyter_server_config.json``
as ``HPCSites.sites``, where JupyterLab, the CLI and the hub's config format all read it.
"""

from __future__ import annotations

import argparse

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
        "add", help="add (or replace) a site",
        description="Add a site, or replace the one of that name, in your jupyter_server_config.json.",
    )
    add.add_argument("name", help="the site's name, e.g. cori (lowercase letters, digits, . _ -)")
    add.add_argument("--host", required=True, help="the login node, e.g. cori.nersc.gov")
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


def run_add(args: argparse.Namespace) -> int:
    entry = {
        key: value for key in ("host", "port", "username", "client_keys", "jump_host", "known_hosts",
                               "remote_python", "display_name")
        if (value := getattr(args, key)) is not None
    }
    if args.roots:
        try:
            entry["roots"] = dict(root.split("=", 1) for root in args.roots)
        except ValueError:
            print(f"--root takes NAME=PATH, e.g. scratch=$SCRATCH; not {args.roots!r}")
            return 2
    try:
        parse_site(args.name, entry)
        config = read_user_config()
    except (SiteConfigError, HPCError) as exc:
        print(exc)
        return 2
    sites = config.setdefault("HPCSites", {}).setdefault("sites", {})
    replaced = args.name in sites
    sites[args.name] = entry
    path = write_user_config(config)
    print(f"{'Replaced' if replaced else 'Added'} site {args.name!r} in {path}.")
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
