"""The SLURM magics against the real single-node SLURM of the test bed.

Three ways in, as users meet them:
- a local IPython against a site (``--site``/``%slurm site``): an in-process InteractiveShell
  whose commands run over SSH as the kernel user, the site being an hpc-ssh kernelspec;
- a kernel on the cluster: a real ipykernel started as the kernel user through hpc-ssh, whose
  PYTHONPATH holds only ``jupyter_hpc/__init__.py``, ``errors.py``, ``slurm/``, ``proxy/`` and ``magics/`` (no SSH
  layer, no asyncssh in that venv);
- a bare Python with asyncssh, jupyter_client and jupyterhub made unimportable.
"""

from __future__ import annotations

import _thread
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from jupyter_hpc.magics import JobOutcome, SlurmError

from kernel_helpers import execute, running_kernel

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def shell():
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "jupyter_hpc.magics")
    yield ip
    ip.run_line_magic("unload_ext", "jupyter_hpc.magics")


@pytest.fixture
def site(shell, slurm, ssh_spec, kernel_user):
    """``%slurm site`` set to an hpc-ssh kernelspec that logs in as the kernel user."""
    name = ssh_spec("hpc-magics")
    shell.run_line_magic("slurm", f"site {name}")
    yield name
    shell.run_line_magic("slurm", "site local")
    slurm.cancel_all(kernel_user.pw_name)


def sbatch(shell, line: str, cell: str = "sleep 120"):
    return shell.run_cell_magic("sbatch", line, cell)


def accounting_enabled() -> bool:
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True).stdout
    return "accounting_storage/slurmdbd" in config


def wait_for(predicate, timeout: float = 20, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if (value is not None and value is not False) or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def test_three_jobs_queue_as_typed_frame_and_scancel_removes_one(shell, site, kernel_user):
    ids = [sbatch(shell, f"-J job{n} -t 5") for n in range(3)]
    assert all(type(job) is int for job in ids)

    df = shell.run_line_magic("squeue", "--me")
    assert set(ids) <= set(df.JOBID)
    assert str(df.JOBID.dtype) == "Int64" and str(df.NODES.dtype) == "Int64"
    assert str(df.TIME.dtype) == "timedelta64[ns]" and str(df.TIME_LIMIT.dtype) == "timedelta64[ns]"
    assert str(df.SUBMIT_TIME.dtype) == "datetime64[ns, UTC]"
    assert isinstance(df.STATE.dtype, pd.CategoricalDtype)
    assert set(df.STATE.astype(str)) <= {"PENDING", "RUNNING", "CONFIGURING"}
    assert (df.USER == kernel_user.pw_name).all()
    assert (df.set_index("JOBID").loc[ids, "TIME_LIMIT"] == pd.Timedelta(minutes=5)).all()

    shell.run_line_magic("scancel", str(ids[1]))
    gone = wait_for(lambda: ids[1] not in set(shell.run_line_magic("squeue", f"-j {','.join(map(str, ids))}").JOBID))
    assert gone
    assert {ids[0], ids[2]} <= set(shell.run_line_magic("squeue", "--me").JOBID)

    shell.run_line_magic("scancel", "--name job0")
    shell.run_line_magic("scancel", f"--user {kernel_user.pw_name}")
    assert wait_for(lambda: shell.run_line_magic("squeue", "--me").empty)


def test_sbatch_wait_returns_after_the_job_with_its_exit_code(shell, site, capsys):
    outcome = sbatch(shell, "--wait -J 'waited on' -t 2", "echo first line\necho from $SLURM_JOB_ID\nexit 3\n")
    assert isinstance(outcome, JobOutcome)
    assert (outcome.state, outcome.exit_code) == ("FAILED", 3)
    assert outcome.tail.splitlines() == ["first line", f"from {outcome.job_id}"]
    printed = capsys.readouterr().out
    assert f"job {outcome.job_id}: FAILED, exit code 3" in printed
    assert "run time" in printed and "\r" in printed  # the progress line


def test_pending_reason_with_words_and_name_with_spaces_come_out_intact(shell, site, slurm):
    reservation = f"magics-maint-{uuid.uuid4().hex[:6]}"
    subprocess.run(["scontrol", "create", "reservation", f"ReservationName={reservation}", "StartTime=now",
                    "Duration=10", "Users=root", "Nodes=ALL", "Flags=MAINT,IGNORE_JOBS"],
                   check=True, capture_output=True)
    try:
        job = sbatch(shell, "-J '  my analysis: run 2  ' -t 5")
        held = sbatch(shell, f"--hold -J 'after that' --dependency=afterok:{job}")

        def reasons():
            df = shell.run_line_magic("squeue", f"-j {job},{held}").set_index("JOBID")
            return df if df.loc[job, "REASON"] == "ReqNodeNotAvail, Reserved for maintenance" else None

        df = wait_for(reasons)
        assert df is not None, shell.run_line_magic("squeue", "--mode raw")
        assert df.loc[job, "NAME"] == "  my analysis: run 2  "
        assert df.loc[job, "STATE"] == "PENDING"
        assert df.loc[held, "NAME"] == "after that" and df.loc[held, "REASON"] in {"Dependency", "JobHeldUser"}
    finally:
        subprocess.run(["scontrol", "delete", f"ReservationName={reservation}"], capture_output=True)


def test_slurm_errors_raise_with_slurms_message_and_usage_errors_are_usage_errors(shell, site):
    with pytest.raises(SlurmError) as error:
        sbatch(shell, "--no-such-option")
    assert "sbatch: unrecognized option '--no-such-option'" in str(error.value)
    assert error.value.argv[0] == "sbatch" and error.value.exit_status != 0

    with pytest.raises(SlurmError, match="Invalid job id"):
        shell.run_line_magic("squeue", "-j 999999999")
    if not accounting_enabled():
        with pytest.raises(SlurmError, match="accounting storage is disabled"):
            shell.run_line_magic("sacct", "")  # no slurmdbd: SLURM says so, and so do we

    with pytest.raises(UsageError):
        shell.run_line_magic("scancel", "")
    with pytest.raises(UsageError):
        shell.run_line_magic("squeue", "--mode table")
    with pytest.raises(UsageError):
        shell.run_line_magic("squeue", "-o %i")  # pandas mode picks the columns
    with pytest.raises(UsageError):
        shell.run_line_magic("squeue", "-n 'unbalanced")


def test_hostile_values_stay_data(shell, site, kernel_user):
    canary = f"/tmp/canary-{uuid.uuid4().hex[:8]}"
    name = f"x; touch {canary}"
    job = sbatch(shell, f"-J '{name}' --hold --comment '$(touch {canary})'")
    df = shell.run_line_magic("squeue", f"--name '{name}'")
    assert df.JOBID.tolist() == [job] and df.NAME[0] == name
    shell.run_line_magic("squeue", f"--mode raw -n '{name}' -o '%i %j'")
    shell.run_line_magic("scancel", f"--name '{name}'")
    assert wait_for(lambda: shell.run_line_magic("squeue", f"-n '{name}'").empty)
    assert not os.path.exists(canary)


@pytest.fixture
def python_sigint_handler():
    """Ctrl-C as IPython sees it: Python's own SIGINT handler, whatever an earlier test in this
    process left installed (``interrupt_main`` does nothing under SIG_IGN or SIG_DFL)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_while_waiting_names_the_job_or_cancels_it(shell, site, slurm, kernel_user, capsys,
                                                          python_sigint_handler):
    def interrupt_soon():
        threading.Timer(3, _thread.interrupt_main).start()

    interrupt_soon()
    with pytest.raises(KeyboardInterrupt):
        sbatch(shell, "--wait -J kept -t 5")
    kept = int(shell.run_line_magic("squeue", "--name kept").JOBID[0])
    assert f"job {kept} is still queued or running. Cancel it with %scancel {kept}" in capsys.readouterr().out

    interrupt_soon()
    with pytest.raises(KeyboardInterrupt):
        sbatch(shell, "--wait --cancel-on-interrupt -J dropped -t 5")
    out = capsys.readouterr().out
    dropped = int(out.split("Submitted batch job ")[1].split()[0])
    assert f"Interrupted: cancelled job {dropped}." in out
    assert wait_for(lambda: str(dropped) not in slurm.jobs(kernel_user.pw_name))
    assert str(kept) in slurm.jobs(kernel_user.pw_name)


def test_sinfo_json_and_filtered_delimited_agree_and_raw_mode_prints(shell, site, slurm, capsys):
    from_json = shell.run_line_magic("sinfo", "")
    assert set(from_json.PARTITION) == {"debug", "regular"} and set(from_json.NODE) == {slurm.node}
    assert (from_json.CPUS == slurm.cpus).all() and str(from_json.MEMORY.dtype) == "Int64"
    filtered = shell.run_line_magic("sinfo", "-p regular")
    assert filtered.PARTITION.tolist() == ["regular"]
    columns = ["PARTITION", "NODE", "CPUS", "MEMORY"]
    pd.testing.assert_frame_equal(filtered[columns].reset_index(drop=True),
                                  from_json[from_json.PARTITION == "regular"][columns].reset_index(drop=True))

    shell.run_line_magic("slurm", "mode raw")
    try:
        assert shell.run_line_magic("sinfo", "") is None
        assert shell.run_line_magic("squeue", "--me") is None
    finally:
        shell.run_line_magic("slurm", "mode pandas")
    out = capsys.readouterr().out
    assert "PARTITION" in out and "JOBID" in out


def test_sacct_against_real_accounting(shell, site):
    if not accounting_enabled():
        pytest.skip("the test bed's SLURM runs without slurmdbd (AccountingStorageType=accounting_storage/none); "
                    "sacct's parser is tested on captured real output in test_magics_parse.py")
    job = sbatch(shell, "--wait -J accounted -t 2", "exit 0")
    df = shell.run_line_magic("sacct", f"-j {int(job)}")
    assert int(job) in set(df.JobID) and "COMPLETED" in set(df.State.astype(str))


# -- the magics in a kernel on the cluster ------------------------------------------------------

@pytest.fixture(scope="module")
def magics_only_path(remote_python):
    """jupyter_hpc's magics alone, as someone would install them on a cluster: the package's
    __init__ and errors and the magics subpackage, in a directory the kernel user can read.
    pandas goes into the cluster venv (idempotent); that venv has no asyncssh."""
    if subprocess.run([remote_python, "-c", "import pandas, IPython"], capture_output=True).returncode:
        subprocess.run([remote_python, "-m", "pip", "install", "-q", "pandas", "ipython"], check=True)
        subprocess.run(["chmod", "-R", "a+rX", str(Path(remote_python).parents[2])], check=True)
    root = Path(f"/tmp/jupyter-hpc-magics-{uuid.uuid4().hex[:8]}")
    package = root / "jupyter_hpc"
    shutil.copytree(REPO / "jupyter_hpc" / "magics", package / "magics",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for part in ("slurm", "proxy"):  # the one SLURM package; proxy_url at the package's top
        shutil.copytree(REPO / "jupyter_hpc" / part, package / part, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("__init__.py", "errors.py"):
        shutil.copy(REPO / "jupyter_hpc" / name, package / name)
    subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
    yield str(root)
    shutil.rmtree(root, ignore_errors=True)


def test_magics_in_a_kernel_on_the_cluster(slurm, ssh_spec, kernel_user, magics_only_path):
    name = ssh_spec("hpc-magics-kernel", env={"PYTHONPATH": magics_only_path})
    try:
        with running_kernel(name) as (_km, client):
            loaded = execute(client, "%load_ext jupyter_hpc.magics\nimport sys, getpass\n"
                                     "print(getpass.getuser(), 'asyncssh' in sys.modules)")
            assert loaded["error"] is None, loaded
            assert loaded["stdout"].split() == [kernel_user.pw_name, "False"]

            submitted = execute(client, "%%sbatch -J 'on the cluster' -t 5\nsleep 120\n")
            assert submitted["error"] is None, submitted
            job = int(submitted["stdout"].split("Submitted batch job ")[1].split()[0])

            shown = execute(client, "import json\ndf = %squeue --me\n"
                                    "print(json.dumps({'ids': [int(i) for i in df.JOBID], 'names': list(df.NAME),"
                                    " 'dtypes': {c: str(t) for c, t in df.dtypes.items()}}))")
            assert shown["error"] is None, shown
            data = json.loads(shown["stdout"])
            assert job in data["ids"] and "on the cluster" in data["names"]
            assert data["dtypes"]["JOBID"] == "Int64" and data["dtypes"]["TIME"].startswith("timedelta64")

            waited = execute(client, "%%sbatch --wait -t 2\necho done here\nexit 4\n", timeout=60)
            assert waited["error"] is None, waited
            assert "exit code 4" in waited["stdout"] and "done here" in waited["stdout"]
            outcome = execute(client, "print(_.state, _.exit_code)")
            assert outcome["stdout"].split() == ["FAILED", "4"], outcome
            failed = execute(client, "%%sbatch --bogus\nexit 0\n")
            assert failed["error"] == "SlurmError"
            cancelled = execute(client, f"%scancel {job}")
            assert cancelled["error"] is None
            assert wait_for(lambda: str(job) not in slurm.jobs(kernel_user.pw_name))
    finally:
        slurm.cancel_all(kernel_user.pw_name)


BLOCKED_IMPORTS = r"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"asyncssh", "jupyter_client", "jupyterhub"}:
            raise ImportError(f"{name} is blocked: the magics must not need it")
sys.meta_path.insert(0, Block())
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "jupyter_hpc.magics")
df = ip.run_line_magic("squeue", "")
print(type(df).__name__, str(df.JOBID.dtype))
try:
    ip.run_line_magic("squeue", "--site somewhere")
except ImportError as error:
    print("site needs:", error)
print(sorted(m for m in sys.modules if m.split(".")[0] in {"asyncssh", "jupyter_client", "jupyterhub"}))
"""


def test_magics_import_and_run_without_asyncssh_or_jupyter_client(slurm, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "IPYTHONDIR": str(tmp_path / "ipython")}
    done = subprocess.run([sys.executable, "-c", BLOCKED_IMPORTS], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "DataFrame Int64"
    assert lines[1].startswith("site needs: jupyter_client") and lines[2] == "[]"
