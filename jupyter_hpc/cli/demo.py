"""``jupyter hpc demo``: the whole product on one machine, with no cluster and no root.

Starts, as the current user and on 127.0.0.1 only, an embedded SSH login node ("Cori") whose
home holds two kernelspecs and a scratch, the key service with you as its one user, and
JupyterHub with the SSH-certificate login; prints the hub's login page and your password and
one-time code. Ctrl-C stops everything and removes every file the demo made.
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
        help="run the hub, the key service and an embedded SSH login node, all on 127.0.0.1",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
    )
    parser.add_argument("--port", type=_port, default=0,
                        help="the hub's (or JupyterLab's) port on 127.0.0.1 (default: any free port)")
    parser.add_argument("--no-hub", dest="hub", action="store_false",
                        help="JupyterLab alone, logging in to Cori with a key made for the run (a laptop's setup)")
    parser.add_argument("--otp", action="store_true",
                        help="print each new one-time code as it starts (every 30 s)")
    parser.add_argument("--no-browser", dest="open_browser", action="store_false",
                        help="print the URL but do not open a web browser")
    parser.add_argument("--debug", action="store_true",
                        help="show JupyterHub's (or JupyterLab's) log and the demo's own debug messages")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    # Imported here so that `jupyter hpc --help` does not pay for asyncssh and JupyterLab.
    from ..demo.app import run_demo

    return run_demo(port=args.port, hub=args.hub, show_otp=args.otp, open_browser=args.open_browser,
                    show_log=args.debug)
