"""SLURM's output as both the magics and the provisioners read it.

Standard library only: the magics run on the cluster with IPython and pandas alone, so what
they share with the provisioners cannot live beside asyncssh.
"""

from __future__ import annotations

from .errors import SlurmError


def sbatch_job_id(stdout: str) -> str:
    """The job id from ``sbatch --parsable``: ``<id>`` or ``<id>;<cluster>`` on the last line
    (a site's wrapper may print warnings before it)."""
    lines = stdout.strip().splitlines()
    job_id = lines[-1].split(";", 1)[0].strip() if lines else ""
    if not (job_id.isascii() and job_id.isdigit()):
        raise SlurmError(f"sbatch answered {stdout.strip()!r} instead of a job id")
    return job_id
