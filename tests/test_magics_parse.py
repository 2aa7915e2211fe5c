"""Parsers of the SLURM magics, on text captured from real SLURM 22.05.8 runs on this test bed.

The sacct text below was captured from a real run (slurmctld + slurmdbd + MariaDB, started
by hand on this machine kind, since the session fixture runs without accounting): job 1 was
cancelled by root while running, job 4 was running, 5–8 pending; names with spaces and a
shell metacharacter came through as typed.
"""

from __future__ import annotations

import pandas as pd
import pytest

from jupyter_hpc.magics.convert import duration, durations, timestamps
from jupyter_hpc.magics.dialect import SEP, SQUEUE_FIELDS, Slurm, SlurmJSON

SACCT_CAPTURED = """\
JobID|JobName|User|Partition|State|ExitCode|Elapsed|Timelimit|Submit|Start|End|NCPUS|NNodes|NodeList|Reason
1|my job name|hpcuser|debug|CANCELLED by 0|0:0|00:01:54|00:10:00|2026-11-26T22:33:46|2026-11-26T22:33:48|2026-11-26T22:35:42|1|1|vm|None
4|sbatch|hpcuser|regular|RUNNING|0:0|00:00:08|UNLIMITED|2026-11-26T22:33:46|2026-11-26T22:35:42|Unknown|2|1|vm|ReqNodeNotAvail
4.batch|batch|||RUNNING|0:0|00:00:08||2026-11-26T22:35:42|2026-11-26T22:35:42|Unknown|2|1|vm|
5|five|hpcuser|debug|PENDING|0:0|00:00:00|Partition_Limit|2026-11-26T22:34:03|Unknown|Unknown|1|1|None assigned|ReqNodeNotAvail
6|ex it|hpcuser|debug|PENDING|0:0|00:00:00|Partition_Limit|2026-11-26T22:35:06|Unknown|Unknown|1|1|None assigned|None
7|ex it 2|hpcuser|debug|PENDING|0:0|00:00:00|Partition_Limit|2026-11-26T22:35:42|Unknown|Unknown|1|1|None assigned|None
8|x; touch /tmp/canary|hpcuser|debug|PENDING|0:0|00:00:00|00:05:00|2026-11-26T22:35:42|Unknown|Unknown|1|1|None assigned|None
"""

# `sinfo --json`, trimmed to the fields read, from the same bed (node "vm" in two partitions).
SINFO_JSON = """{"meta": {}, "errors": [], "nodes": [{"name": "vm", "state": "mixed",
 "state_flags": ["MAINTENANCE", "RESERVED"], "cpus": 2, "alloc_cpus": 1, "idle_cpus": 1,
 "real_memory": 4000, "free_memory": 21714, "cpu_load": 130, "reason": "",
 "partitions": ["debug", "regular"]}]}"""

# `sinfo --noheader -N -o %P<US>%N<US>%T<US>%c<US>%C<US>%m<US>%e<US>%O<US>%E` at the same moment.
SINFO_DELIMITED = SEP.join(["debug*", "vm", "mixed$", "2", "1/1/0/2", "4000", "21714", "1.30", "none"]) + "\n" + \
    SEP.join(["regular", "vm", "mixed$", "2", "1/1/0/2", "4000", "21714", "1.30", "none"]) + "\n"

# `scontrol show job 2` (multi-line form) for a job whose name tries to pose as a state.
SCONTROL_HOSTILE = """\
JobId=2 JobName=x JobState=COMPLETED ExitCode=0:0
   UserId=hpcuser(1001) GroupId=hpcuser(1001) MCS_label=N/A
   Priority=4294901758 Nice=0 Account=(null) QOS=(null)
   JobState=FAILED Reason=NonZeroExitCode Dependency=(null)
   Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=3:0
   RunTime=00:00:01 TimeLimit=UNLIMITED TimeMin=N/A
   WorkDir=/home/hpcuser
   StdErr=/home/hpcuser/out dir/slurm-2.out
   StdIn=/dev/null
   StdOut=/home/hpcuser/out dir/slurm-2.out
"""


def test_durations_cover_slurm_forms():
    assert duration("0:00") == pd.Timedelta(0)
    assert duration("1:04") == pd.Timedelta(minutes=1, seconds=4)
    assert duration("10:00") == pd.Timedelta(minutes=10)
    assert duration("02:03:04") == pd.Timedelta(hours=2, minutes=3, seconds=4)
    assert duration("1-02:03:04") == pd.Timedelta(days=1, hours=2, minutes=3, seconds=4)
    assert duration("30") == pd.Timedelta(minutes=30)
    for word in ("UNLIMITED", "Partition_Limit", "N/A", "INVALID", ""):
        assert duration(word) is pd.NaT
    assert durations([]).dtype == "timedelta64[ns]"


def test_timestamps_epoch_is_utc_and_iso_is_naive():
    epoch = timestamps(["1795732426", "N/A", "0"])
    assert str(epoch.dtype) == "datetime64[ns, UTC]"
    assert epoch[0] == pd.Timestamp(1795732426, unit="s", tz="UTC")
    assert epoch[1:].isna().all()
    iso = timestamps(["2026-11-26T22:33:46", "Unknown"])
    assert str(iso.dtype) == "datetime64[ns]"
    assert iso[0] == pd.Timestamp("2026-11-26T22:33:46") and pd.isna(iso[1])


def test_sacct_parses_captured_parsable2_output():
    df = Slurm().parse_sacct(SACCT_CAPTURED, sep="|")
    assert list(df.JobID) == [1, 4, 4, 5, 6, 7, 8]
    assert str(df.JobID.dtype) == "Int64"
    assert df.Step.isna().tolist() == [True, True, False, True, True, True, True] and df.Step[2] == "batch"
    assert isinstance(df.State.dtype, pd.CategoricalDtype)
    assert df.State[0] == "CANCELLED" and df.CancelledBy[0] == 0 and pd.isna(df.CancelledBy[1])
    assert df.ExitCode.dtype == "Int64" and df.Signal.dtype == "Int64"
    assert df.Elapsed[0] == pd.Timedelta(minutes=1, seconds=54)
    assert df.Timelimit[0] == pd.Timedelta(minutes=10) and pd.isna(df.Timelimit[1])
    assert df.Submit[0] == pd.Timestamp("2026-11-26T22:33:46") and pd.isna(df.End[1])
    assert df.JobName.tolist()[-3:] == ["ex it", "ex it 2", "x; touch /tmp/canary"]
    assert pd.isna(df.NodeList[3]) and df.NodeList[0] == "vm"
    assert df.NCPUS.dtype == "Int64" and df.NCPUS[1] == 2


def test_sacct_empty_output_has_columns():
    df = Slurm().parse_sacct("")
    assert "JobID" in df.columns and len(df) == 0


def test_squeue_keeps_names_and_reasons_and_repairs_a_stray_separator():
    row = {name: "" for name, _, _ in SQUEUE_FIELDS}
    row.update(JOBID="12", ARRAY_JOB_ID="12", ARRAY_TASK_ID="N/A", NAME=f"odd{SEP}name", USER="hpcuser",
               PARTITION="debug", STATE="PENDING", REASON="ReqNodeNotAvail, Reserved for maintenance",
               TIME="0:00", TIME_LIMIT="1-00:00:00", SUBMIT_TIME="1795732426", START_TIME="N/A",
               END_TIME="N/A", NODES="1", CPUS="2", PRIORITY="100", NODELIST="")
    text = SEP.join(row.values()) + "\n"
    df = Slurm().parse_squeue(text)
    assert df.NAME[0] == f"odd{SEP}name"
    assert df.REASON[0] == "ReqNodeNotAvail, Reserved for maintenance"
    assert df.TIME_LIMIT[0] == pd.Timedelta(days=1)
    assert df.JOBID.dtype == "Int64" and pd.isna(df.ARRAY_TASK_ID[0])
    assert Slurm().parse_squeue("").columns.tolist() == [name for name, _, _ in SQUEUE_FIELDS]


def test_sinfo_json_and_delimited_agree():
    from_json = SlurmJSON().parse_sinfo_json(SINFO_JSON)
    delimited = Slurm().parse_sinfo(SINFO_DELIMITED)
    same = [c for c in from_json.columns if c != "STATE_FLAGS"]
    pd.testing.assert_frame_equal(from_json[same], delimited[same])
    assert from_json.PARTITION.tolist() == ["debug", "regular"]
    assert from_json.STATE_FLAGS[0] == "MAINTENANCE,RESERVED" and delimited.STATE_FLAGS[0] == "MAINTENANCE"
    assert from_json.CPU_LOAD[0] == pytest.approx(1.30)


def test_job_status_reads_keys_at_line_start_only():
    status = Slurm.parse_job_status(SCONTROL_HOSTILE)
    assert (status.job_id, status.state, status.exit_code, status.signal) == (2, "FAILED", 3, 0)
    assert status.stdout_path == "/home/hpcuser/out dir/slurm-2.out"
    assert status.finished


def test_sbatch_parsable_with_cluster():
    assert Slurm.parse_sbatch("42\n") == 42
    assert Slurm.parse_sbatch("42;cori\n") == 42
