"""The one place jupyter_hpc speaks SLURM.

- :mod:`.commands`: every command's argv (never shell text) and the checks on values put in it;
- :mod:`.parse`: their output as plain values (squeue, sacct, sinfo, scontrol, sacctmgr,
  ``--json`` where it is complete, delimited or ``--parsable2`` text otherwise);
- :mod:`.times`: the one parser of SLURM's durations and timestamps;
- :mod:`.states`: job and node states as sets (waiting, running, ending, finished);
- :mod:`.scheduler`: :class:`~.scheduler.BatchScheduler`, the seam a PBS or LSF port plugs into;
- :mod:`.batch`: the kernel job's batch script (jinja2);
- :mod:`.site`: the async operations on a site's SSH connection: submit, the queue poll, the
  cancel sequence (``scancel --signal=TERM --full``, then ``scancel``), the nodes of the user's
  running jobs with their NodeAddr.

Used by the provisioner, the magics, the REST handlers and the sidebar alike. Importing this
package (and ``commands``, ``parse``, ``times``, ``states``, ``scheduler``) needs the standard
library only, so the magics keep working on a cluster with IPython and pandas alone; ``batch``
needs jinja2 and ``site`` asyncssh, and are imported only where used.
"""

from .commands import SEP, checked_value, directive_word
from .parse import JobStatus, sbatch_job_id
from .states import RUNNING, WAITING, JobState
from .times import NO_LIMIT, duration_minutes, duration_seconds, epoch_seconds, format_duration

__all__ = [
    "NO_LIMIT", "RUNNING", "SEP", "WAITING", "JobState", "JobStatus", "checked_value", "directive_word",
    "duration_minutes", "duration_seconds", "epoch_seconds", "format_duration", "sbatch_job_id",
]
