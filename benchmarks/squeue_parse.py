"""Parse 10,000 squeue rows: the magics' typed parser against naive pandas baselines.

The rows follow the shape of real SLURM 22.05.8 output on the test bed (`squeue --noheader
--array -o <fields joined by 0x1f>` with SLURM_TIME_FORMAT=%s): mixed RUNNING/PENDING jobs,
names with spaces, multi-word reasons, array tasks. They are generated (a 2-CPU test node
cannot hold 10,000 real jobs at default MaxJobCount/MaxArraySize), seeded, so runs compare.

    python benchmarks/squeue_parse.py [--rows 10000] [--repeat 7]

Columns: best and median wall time of `repeat` runs; whether NAME and REASON came out intact;
what the result's TIME column holds.
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402

from jupyter_hpc.magics.dialect import SEP, SQUEUE_FIELDS, Slurm  # noqa: E402

NAMES = [name for name, _, _ in SQUEUE_FIELDS]
REASONS = ["Resources", "Priority", "Dependency", "JobHeldUser", "ReqNodeNotAvail, Reserved for maintenance",
           "QOSMaxJobsPerUserLimit", "BeginTime"]


def make_rows(count: int, seed: int = 5) -> tuple[str, list[str], list[str]]:
    rng = random.Random(seed)
    lines, names, reasons = [], [], []
    submit = 1795732426
    for job in range(1, count + 1):
        running = rng.random() < 0.3
        name = rng.choice(["sbatch", "my analysis run", "train model 3", "x; touch canary", "relax"])
        reason = "None" if running else rng.choice(REASONS)
        elapsed = rng.randrange(0, 3 * 86400) if running else 0
        days, rest = divmod(elapsed, 86400)
        hours, rest = divmod(rest, 3600)
        minutes, seconds = divmod(rest, 60)
        time_text = (f"{days}-{hours:02}:{minutes:02}:{seconds:02}" if days else
                     f"{hours}:{minutes:02}:{seconds:02}" if hours else f"{minutes}:{seconds:02}")
        array = rng.random() < 0.2
        fields = [str(job), str(job - job % 100 if array else job), str(job % 100) if array else "N/A",
                  name, f"user{rng.randrange(50)}", "science", rng.choice(["debug", "regular"]),
                  "RUNNING" if running else "PENDING", reason, time_text,
                  rng.choice(["UNLIMITED", "30:00", "1-00:00:00", "2:00:00"]), str(submit + job),
                  str(submit + job + 5) if running else "N/A", "N/A", str(rng.choice([1, 2, 4])),
                  str(rng.choice([1, 32, 128])), str(rng.randrange(10**6)), "nid00042" if running else ""]
        lines.append(SEP.join(fields))
        names.append(name)
        reasons.append(None if reason == "None" else reason)
    return "\n".join(lines) + "\n", names, reasons


def naive_read_csv(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), sep=SEP, header=None, names=NAMES, engine="c")


def naive_whitespace(text: str) -> pd.DataFrame:
    """What `squeue`'s default table read with whitespace splitting gives (the anti-pattern)."""
    table = text.replace(SEP, " ")
    return pd.read_csv(io.StringIO(table), sep=r"\s+", header=None, engine="python", on_bad_lines="skip")


def timed(func, text: str, repeat: int) -> tuple[float, float, pd.DataFrame]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = func(text)
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    options = parser.parse_args()
    text, names, reasons = make_rows(options.rows)

    contenders = [
        ("magics parser (typed)", Slurm().parse_squeue),
        ("baseline: pandas.read_csv(sep=0x1f)", naive_read_csv),
        ("anti-pattern: whitespace split", naive_whitespace),
    ]
    print(f"squeue parse, {options.rows} rows, {len(text) / 1e6:.2f} MB, best/median of {options.repeat}; "
          f"python {sys.version.split()[0]}, pandas {pd.__version__}")
    print(f"{'parser':40} {'best ms':>8} {'median ms':>10} {'rows':>6} {'names ok':>9} {'reasons ok':>10}  TIME dtype")
    for label, func in contenders:
        best, median, df = timed(func, text, options.repeat)
        if "NAME" in df.columns:
            names_ok = df["NAME"].tolist() == names
            got = [None if pd.isna(value) or value == "None" else value for value in df["REASON"]]
            reasons_ok = got == reasons
            time_dtype = str(df["TIME"].dtype)
        else:
            names_ok = reasons_ok = False
            time_dtype = "-"
        print(f"{label:40} {best * 1e3:8.1f} {median * 1e3:10.1f} {len(df):6} {str(names_ok):>9} "
              f"{str(reasons_ok):>10}  {time_dtype}")


if __name__ == "__main__":
    main()
