"""``jupyter hpc …``: one entry point, one module per subcommand.

Jupyter finds ``jupyter-hpc`` on the PATH (``[project.scripts]``) and runs it for
``jupyter hpc``. Each subcommand module offers ``add_parser(subparsers)``, which registers its
options and sets ``run(args) -> exit status`` as the parser's default ``func``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .. import __version__
from . import demo, doctor, kernels, keyservice, site  # asyncssh through ..ssh.quiet_import: no DSA warnings

SUBCOMMANDS = (demo, doctor, kernels, keyservice, site)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="jupyter hpc",
        description="Jupyter that drives a supercomputer: kernels on login and compute nodes over SSH.",
    )
    top.add_argument("--version", action="version", version=f"jupyter-hpc {__version__}")
    subparsers = top.add_subparsers(title="commands", metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(subparsers)
    return top


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if not hasattr(args, "func"):
        parser().print_help()
        sys.exit(2)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "debug", False) else logging.WARNING,
        format="[%(levelname)s %(name)s] %(message)s",
    )
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
