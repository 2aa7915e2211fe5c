"""The one error a failing SLURM command raises from the magics.

It derives from :class:`jupyter_hpc.errors.RemoteCommandError` (argv, exit status, stderr)
so that code catching jupyter_hpc errors catches it too; ``jupyter_hpc.errors`` is stdlib-only,
so importing it keeps the magics installable with IPython and pandas alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import RemoteCommandError


class SlurmError(RemoteCommandError):
    """A SLURM command failed; ``str()`` is SLURM's own message, e.g.
    ``sbatch: error: Invalid --distribution specification``."""

    def __init__(self, argv: Sequence[str], exit_status: int | None, stderr: str, where: str = "") -> None:
        text = stderr.strip() or "no error output"
        place = f" on {where}" if where else ""
        super().__init__(
            f"{argv[0]} failed{place} (exit status {exit_status}): {text}",
            argv=argv,
            exit_status=exit_status,
            stderr=stderr,
        )
