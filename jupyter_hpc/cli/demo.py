"""``jupyter hpc demo``: see the kernel layer work, with no cluster and no root.

Starts an SSH login node on 127.0.0.1 for the current user, a "Cori (demo)" kernelspec that
reaches it through our ``hpc-ssh`` provisioner, and JupyterLab offering that kernel; prints
one URL. Ctrl-C stops everything and removes every file the demo made.
"""

from __future__ import annotations

import argparse


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value < 65536:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (0 means any free port)")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo",
        help="run JupyterLab with a kernel on an embedded SSH login node",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
    )
    parser.add_argument("--port", type=_port, default=0,
                        help="JupyterLab's port on 127.0.0.1 (default: any free port)")
    parser.add_argument("--no-browser", dest="open_browser", action="store_false",
                        help="print the URL but do not open a web browser")
    parser.add_argument("--debug", action="store_true",
                        help="show JupyterLab's log and the demo's own debug messages")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    # Imported here so that `jupyter hpc --help` does not pay for asyncssh and JupyterLab.
    from ..demo.app import run_demo

    return run_demo(port=args.port, open_browser=args.open_browser, show_log=args.debug)
