"""Turn SLURM's text fields into typed pandas columns.

Durations are read by :mod:`jupyter_hpc.slurm.times` (the one parser), times come as ISO
text or, with ``SLURM_TIME_FORMAT=%s``, epoch seconds, and SLURM's words for blanks (its
``MISSING`` set) become missing values. Each converter keeps the column's dtype: ``Int64``,
``datetime64[ns, UTC]``, ``timedelta64[ns]``, ``category``.
Durations are parsed once per distinct value, so a 10,000-row queue costs a few hundred parses.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from ..slurm.states import JOB_STATES, NODE_STATES  # noqa: F401  (the magics' typed categories)
from ..slurm.times import EPOCH_LIMIT, MISSING, NO_LIMIT, duration_seconds


def duration(text: str) -> pd.Timedelta:
    """A SLURM duration (:func:`jupyter_hpc.slurm.times.duration_seconds`) as a Timedelta;
    no value and no limit (``UNLIMITED``) → NaT."""
    seconds = duration_seconds(text)
    if seconds is None or seconds == NO_LIMIT:
        return pd.NaT
    try:
        return pd.Timedelta(seconds=seconds)
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
