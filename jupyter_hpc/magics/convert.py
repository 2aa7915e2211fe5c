"""Turn SLURM's text fields into typed pandas columns.

SLURM prints durations as ``[D-]HH:MM:SS`` (or ``M:SS``), times as ISO text or, with
``SLURM_TIME_FORMAT=%s``, epoch seconds, and fills blanks with words (``N/A``, ``Unknown``,
``UNLIMITED``, ``None assigned``). Each converter maps those words to a missing value and keeps
the column's dtype: ``Int64``, ``datetime64[ns, UTC]``, ``timedelta64[ns]``, ``category``.
Durations are parsed once per distinct value, so a 10,000-row queue costs a few hundred parses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import pandas as pd

# SLURM's words for "no value" in numeric, time and duration fields.
MISSING = frozenset({"", "N/A", "n/a", "Unknown", "UNKNOWN", "None", "NONE", "none", "INVALID", "NOT_SET", "None assigned", "(null)"})
UNLIMITED = frozenset({"UNLIMITED", "Partition_Limit", "infinite"})

JOB_STATES = (
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "COMPLETED", "SUSPENDED", "STOPPED",
    "PREEMPTED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "BOOT_FAIL", "DEADLINE",
    "OUT_OF_MEMORY", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "REVOKED",
    "SIGNALING", "SPECIAL_EXIT", "STAGE_OUT", "RESV_DEL_HOLD",
)
NODE_STATES = (
    "idle", "mixed", "allocated", "completing", "drained", "draining", "down", "fail",
    "failing", "future", "inval", "maint", "perfctrs", "planned", "power_down", "powered_down",
    "powering_down", "powering_up", "reboot_issued", "reboot_requested", "reserved", "unknown",
)

EPOCH_LIMIT = 9.2e9  # seconds: past this (the year 2261) a datetime64[ns] overflows

_DURATION = re.compile(r"^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)(?:\.(\d+))?$", re.ASCII)


def duration(text: str) -> pd.Timedelta:
    """``1-02:03:04``, ``02:03:04``, ``3:04``, ``00:01.234`` → Timedelta; words → NaT.

    A bare number is minutes, as in ``--time=30``.
    """
    text = text.strip()
    if text in MISSING or text in UNLIMITED:
        return pd.NaT
    try:
        if text.isascii() and text.isdigit():
            return pd.Timedelta(minutes=int(text))
        match = _DURATION.match(text)
        if not match:
            return pd.NaT
        days, hours, minutes, seconds, fraction = match.groups()
        if hours is None and days is not None:  # "D-HH:MM" is not a SLURM output form; days-hours only
            hours, minutes, seconds = minutes, seconds, "0"
        total = pd.Timedelta(days=int(days or 0), hours=int(hours or 0), minutes=int(minutes), seconds=int(seconds))
        if fraction:
            total += pd.Timedelta(float("0." + fraction), unit="s")
        return total
    except (OverflowError, ValueError):  # beyond what a Timedelta holds (~292 years)
        return pd.NaT


def durations(values: Iterable[str]) -> pd.Series:
    values = list(values)
    uniques = {value: duration(value) for value in set(values)}
    return pd.Series([uniques[value] for value in values], dtype="timedelta64[ns]")


def integers(values: Iterable) -> pd.Series:
    """Whole numbers as Int64; words, fractions and numbers beyond int64 → <NA>."""
    series = pd.Series(list(values), dtype="object")
    numeric = pd.to_numeric(series.where(~series.isin(MISSING)), errors="coerce")
    if numeric.dtype.kind != "i":  # floats, or uint64 past int64: keep only what Int64 holds
        numeric = numeric.astype("float64")
        numeric = numeric.where((numeric.abs() < 2**63) & (numeric == numeric.round()))
    return numeric.astype("Int64")


def floats(values: Iterable) -> pd.Series:
    series = pd.Series(list(values), dtype="object")
    return pd.to_numeric(series.where(~series.isin(MISSING)), errors="coerce").astype("float64")


def timestamps(values: Iterable) -> pd.Series:
    """Epoch seconds (``SLURM_TIME_FORMAT=%s``, JSON) → UTC; ISO text → naive local time of
    the cluster (SLURM prints it without a zone); SLURM's words and 0 → NaT."""
    series = pd.Series(list(values), dtype="object")
    series = series.where(~series.isin(MISSING))
    numeric = pd.to_numeric(series, errors="coerce")
    if series.notna().sum() == numeric.notna().sum():
        numeric = numeric.where((numeric > 0) & (numeric < EPOCH_LIMIT))
        return pd.to_datetime(numeric, unit="s", utc=True).astype("datetime64[ns, UTC]")
    return pd.to_datetime(series, format="ISO8601", errors="coerce").astype("datetime64[ns]")


def category(values: Iterable[str], known: Iterable[str] = ()) -> pd.Series:
    """A categorical with SLURM's known states first, so dtypes match across calls; unknown
    values are kept (added as categories), never turned into NaN."""
    series = pd.Series(list(values), dtype="object")
    categories = list(known) + sorted(set(series.dropna()) - set(known))
    return pd.Series(pd.Categorical(series, categories=categories))


def text(values: Iterable[str], missing: Iterable[str] = ()) -> pd.Series:
    series = pd.Series(list(values), dtype="string")
    drop = set(missing)
    return series.where(~series.isin(drop)) if drop else series


def split_exit_code(values: Iterable[str]) -> tuple[pd.Series, pd.Series]:
    """``3:0`` (exit status : signal) → two Int64 columns."""
    parts = pd.Series(list(values), dtype="object").str.split(":", n=1, expand=True)
    if parts.shape[1] < 2:
        parts[1] = None
    return integers(parts[0]), integers(parts[1])
