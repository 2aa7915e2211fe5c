"""jupyter_hpc.slurm, the one place that speaks SLURM: its time parser, its parsers, and that
nothing else in jupyter_hpc parses SLURM's durations or pulls the SSH layer into the magics."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_hpc.slurm import commands, parse, states
from jupyter_hpc.slurm.scheduler import SLURM, BatchScheduler
from jupyter_hpc.slurm.times import NO_LIMIT, duration_minutes, duration_seconds

PACKAGE = Path(__file__).resolve().parents[1] / "jupyter_hpc"


@pytest.mark.parametrize("text, seconds", [
    ("UNLIMITED", NO_LIMIT),
    ("Partition_Limit", NO_LIMIT),
    ("INFINITE", NO_LIMIT),
    ("1-02", 26 * 3600),  # days-hours: 26 h (two of three former parsers said so, the third NaT)
    ("1-02:03", 26 * 3600 + 3 * 60),
    ("1-02:03:04", 26 * 3600 + 3 * 60 + 4),
    ("02:03", 2 * 60 + 3),  # MM:SS
    ("1:00:00", 3600),
    ("30", 30 * 60),  # a bare number is minutes, as in sbatch --time=30
    ("00:01.234", 1.234),  # sacct's CPU times
    ("INVALID", None),
    ("N/A", None),
    ("NOT_SET", None),
    ("", None),
    ("soon", None),
    ("1:2:3:4", None),
])
def test_one_parser_reads_every_slurm_time_string(text, seconds):
    value = duration_seconds(text)
    if seconds is None:
        assert value is None
    else:
        assert value == pytest.approx(seconds)
    # ...and every user of a duration goes through it: minutes for limits, Timedelta for the magics
    from jupyter_hpc.magics import convert

    delta = convert.duration(text)
    if seconds is None or seconds == NO_LIMIT:
        assert delta is convert.pd.NaT and duration_minutes(text) is None
    else:
        assert delta.total_seconds() == pytest.approx(seconds)
        assert duration_minutes(text) == math.ceil(seconds / 60)


# Signs of a SLURM duration being parsed: its words for "no value/limit" and D-HH:MM:SS regexes.
DURATION_WORDS = re.compile(r"""["'](UNLIMITED|Partition_Limit|INFINITE|INVALID|NOT_SET)["']""")
DURATION_REGEX = re.compile(r"""\\d\+?\)?-\)?\??|\(\\d\+\):\(\\d\+\)""")


def test_no_module_outside_jupyter_hpc_slurm_parses_slurm_times():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("slurm/"):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if DURATION_WORDS.search(line) or DURATION_REGEX.search(line):
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert offenders == [], "SLURM durations parsed outside jupyter_hpc/slurm:\n" + "\n".join(offenders)
    # the check itself finds what it looks for
    sample = (PACKAGE / "slurm" / "times.py").read_text(encoding="utf-8")
    assert DURATION_WORDS.search(sample) and DURATION_REGEX.search(sample)


def test_our_slurm_users_build_no_slurm_argv_of_their_own():
    """The provisioner, the magics and the REST handlers take every SLURM argv from the package."""
    command = re.compile(r"""\[\s*["'](squeue|sbatch|scancel|scontrol|sacct|sacctmgr|sinfo|srun)["']""")
    mine = [*(PACKAGE / "provisioners").glob("slurm_*.py"), *(PACKAGE / "magics").glob("*.py"),
            *(PACKAGE / "server").glob("*.py")]
    offenders = [f"{p.name}: {m.group(0)}" for p in mine for m in command.finditer(p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_magics_import_pulls_in_neither_asyncssh_nor_jupyterhub():
    code = ("import sys, jupyter_hpc.magics, jupyter_hpc.magics.dialect, jupyter_hpc.slurm, "
            "jupyter_hpc.slurm.scheduler\n"
            "print(sorted(m for m in ('asyncssh', 'jupyterhub', 'jinja2', 'jupyter_client', 'jupyter_hpc.ssh')"
            " if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


SCONTROL_JOB = """\
JobId=1234 JobName=x JobState=COMPLETED Reason=Spoofed
   UserId=alice(1000) GroupId=alice(1000) MCS_label=N/A
   Priority=4294901757 Nice=0 Account=(null) QOS=(null)
   JobState=RUNNING Reason=None Dependency=(null)
   Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0
   RunTime=00:01:07 TimeLimit=00:05:00 TimeMin=N/A
   SubmitTime=2026-12-06T18:00:00 EligibleTime=2026-12-06T18:00:00
   StartTime=2026-12-06T18:00:01 EndTime=2026-12-06T18:05:01 Deadline=N/A
   Partition=debug AllocNode:Sid=login:123
   NodeList=node1
   BatchHost=node1
   StdOut=/home/alice/my jobs/slurm-1234.out
"""


def test_scontrol_job_reads_keys_on_their_own_lines_only():
    status = parse.job_status(SCONTROL_JOB)
    assert (status.job_id, status.state, status.reason) == (1234, "RUNNING", "None")
    assert (status.run_time, status.time_limit, status.batch_host) == ("00:01:07", "00:05:00", "node1")
    assert status.end_time == "2026-12-06T18:05:01" and status.stdout_path == "/home/alice/my jobs/slurm-1234.out"
    assert parse.scontrol_job(SCONTROL_JOB)["JobName"] == "x JobState=COMPLETED Reason=Spoofed"
    assert not status.finished


def test_nodes_and_watch_states_and_the_cancel_sequence():
    shown = ("NodeName=nid001 Arch=x86_64 CoresPerSocket=1 NodeAddr=10.0.0.1 NodeHostName=nid001-eth "
             "OS=Linux 6.1.0-18-amd64 #1 SMP Debian State=ALLOCATED\n"
             "NodeName=nid002 NodeAddr=nid002 NodeHostName=nid002\n")
    assert parse.nodes(shown) == [parse.Node("nid001", "10.0.0.1", "nid001-eth"), parse.Node("nid002", "nid002", "nid002")]
    assert parse.scontrol_words(shown.splitlines()[0])["OS"] == "Linux 6.1.0-18-amd64 #1 SMP Debian"
    line = commands.SEP.join(["7", "PENDING", "PartitionDown", "", "debug", "N/A", "5:00", "5:00"])
    state = parse.watch_states(line + "\n", seen=1.0)["7"]
    assert state.waiting and not state.running and state.reason == "PartitionDown"
    assert SLURM.cancel_sequence("7", running=True) == [
        ["scancel", "--signal=TERM", "--full", "7"], ["scancel", "7"]]
    assert SLURM.cancel_sequence("7", running=False) == [["scancel", "7"]]
    assert isinstance(SLURM, BatchScheduler)
    assert states.is_finished("CANCELLED by 1000") and not states.is_finished("PENDING")
    with pytest.raises(ValueError):
        commands.cancel_argv("7\n--me")
