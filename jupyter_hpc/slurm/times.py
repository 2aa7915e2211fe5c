"""SLURM's times and durations, read in one place.

SLURM writes a duration as ``[D-]HH:MM:SS``, ``MM:SS``, ``D-HH``, ``D-HH:MM`` or a bare number
of minutes (sbatch's ``--time`` syntax, squeue's ``%l``/``%L``/``%M``, sacct's ``Elapsed``), with
a fraction of a second in sacct's CPU times (``00:01.234``), and words where there is no number:
``UNLIMITED``/``Partition_Limit``/``INFINITE`` for no limit, ``INVALID``/``N/A``/``NONE``/
``NOT_SET``/``Unknown`` for no value. Timestamps come as epoch seconds (``SLURM_TIME_FORMAT=%s``,
``--json``) or as ISO text in the cluster's zone.

:func:`duration_seconds` is the only parser of durations in jupyter_hpc (a test greps for
others): the provisioner's walltime, the REST status, the resource dialog's limits and the
magics' DataFrames all go through it. Standard library only: the magics use it on the cluster.
"""

from __future__ import annotations

import datetime as _dt
import math
import re

#: Words SLURM prints for "no value" in numeric, time and duration fields.
MISSING = frozenset({
    "", "N/A", "n/a", "Unknown", "UNKNOWN", "None", "NONE", "none", "INVALID", "NOT_SET",
    "None assigned", "(null)",
})
#: Words SLURM prints for "no limit" in a duration field.
UNLIMITED = frozenset({"UNLIMITED", "Partition_Limit", "INFINITE", "infinite", "Infinite"})
#: What :func:`duration_seconds` returns for a duration without limit.
NO_LIMIT = math.inf

_DURATION = re.compile(
    r"^(?:(?P<days>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?(?:\.(?P<fraction>\d+))?$", re.ASCII,
)
#: A duration a user may type for sbatch's ``--time`` (no fractions, no words).
TIME_SYNTAX = re.compile(r"^(?:\d+-)?\d+(?::\d+){0,2}$", re.ASCII)


def duration_seconds(text: object) -> float | None:
    """A SLURM duration in seconds; :data:`NO_LIMIT` (``math.inf``) for ``UNLIMITED`` and its
    kin; None for no value (``INVALID``, ``N/A``, anything that is not a duration).

    ``1-02`` is a day and two hours (93600), ``1-02:03`` adds three minutes, ``1-02:03:04``
    four seconds; ``02:03`` is two minutes three seconds; ``5`` is five minutes.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)  # JSON gives numbers (seconds, or minutes for limits: the caller knows)
    if not isinstance(text, str):
        return None
    text = text.strip()
    if text in UNLIMITED:
        return NO_LIMIT
    if text in MISSING:
        return None
    match = _DURATION.match(text)
    if match is None:
        return None
    days, a, b, c, fraction = match.group("days", "a", "b", "c", "fraction")
    if days is not None:  # D-HH, D-HH:MM, D-HH:MM:SS
        seconds = int(days) * 86400 + int(a) * 3600 + int(b or 0) * 60 + int(c or 0)
        if fraction and c is None:
            return None
    elif c is not None:  # HH:MM:SS
        seconds = int(a) * 3600 + int(b) * 60 + int(c)
    elif b is not None:  # MM:SS
        seconds = int(a) * 60 + int(b)
    else:  # a bare number: minutes (sbatch --time=30); with a fraction it is nothing SLURM writes
        if fraction:
            return None
        seconds = int(a) * 60
    return seconds + (float("0." + fraction) if fraction else 0.0)


def duration_minutes(text: object) -> int | None:
    """A limit in whole minutes, rounded up (how SLURM's limits are set); None for no limit or no value."""
    seconds = duration_seconds(text)
    if seconds is None or seconds == NO_LIMIT:
        return None
    return int(-(-seconds // 60))


def format_duration(seconds: float) -> str:
    """Seconds as SLURM writes a walltime: ``H:MM:SS`` or ``D-HH:MM:SS``."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}" if days else f"{hours}:{minutes:02d}:{secs:02d}"


EPOCH_LIMIT = 9.2e9  # seconds: past this (the year 2261) a datetime64[ns] overflows


def epoch_seconds(text: object) -> float | None:
    """A SLURM timestamp as epoch seconds: epoch numbers as they are, ISO text
    (``2026-12-06T18:00:00``, the cluster's local time, as scontrol writes it) read in this
    machine's zone; None for ``Unknown``, ``N/A``, ``None``, 0 and anything else."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    elif isinstance(text, str):
        text = text.strip()
        if text in MISSING:
            return None
        try:
            value = float(text)
        except ValueError:
            try:
                return _dt.datetime.fromisoformat(text).timestamp()
            except ValueError:
                return None
    else:
        return None
    return value if 0 < value < EPOCH_LIMIT else None
