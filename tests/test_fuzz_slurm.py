"""Bad SLURM parameters through a real SLURM: each is one sbatch argument or one directive line,
so a hostile value fails as SLURM's own refusal (SlurmError) or as a config error naming the
setting (ValueError), leaves no job in the queue, and a canary proves nothing ran it."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from traitlets import TraitError

from jupyter_hpc.errors import SlurmError
from kernel_helpers import start_failure, execute, running_kernel
from test_fuzz_pure import is_clear

INJECTIONS = ["x; touch {canary}", "$(touch {canary}) `touch {canary}`", "x --wrap='touch {canary}'"]
REFUSALS = {  # what sbatch says for a value it does not know
    "partition": "invalid partition",
    "qos": "invalid qos",
    "account": "invalid account",
    "time": "invalid --time specification",
    "constraint": "invalid feature specification",
    "reservation": "reservation",
}


@pytest.fixture
def no_job_left(slurm, kernel_user):
    yield
    deadline = time.monotonic() + 10
    while slurm.jobs(kernel_user.pw_name) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert slurm.jobs(kernel_user.pw_name) == []


def start_error(kernel_name: str) -> Exception:
    return start_failure(kernel_name)[0]


@pytest.mark.parametrize("setting", sorted(REFUSALS))
def test_hostile_setting_is_one_sbatch_argument(slurm_spec, canary, no_job_left, setting):
    """SLURM refuses the value with its own words, or, where this SLURM enforces nothing (qos
    and account without AccountingStorageEnforce), ignores it and runs the job."""
    for i, template in enumerate(INJECTIONS):
        name = slurm_spec(f"fuzz-{setting}-{i}", **{setting: template.replace("{canary}", canary)})
        try:
            with running_kernel(name) as (km, client):
                assert execute(client, "import os; print(os.environ['SLURM_JOB_ID'])")["stdout"].strip().isdigit()
        except SlurmError as error:
            assert REFUSALS[setting] in str(error).lower() and is_clear(str(error)), str(error)


@pytest.mark.parametrize("setting", sorted(REFUSALS))
@pytest.mark.parametrize("value", ["debug\n#SBATCH --wrap=touch {canary}", "x\r$(touch {canary})", "a\x85b", "a\x00b", ""])
def test_control_characters_are_a_config_error_naming_the_setting(slurm_spec, canary, no_job_left, setting, value):
    value = value.replace("{canary}", canary)
    if not value:  # empty: the site's default, not an error; nothing to refuse
        return
    error = start_error(slurm_spec(f"fuzz-{setting}", **{setting: value}))
    assert isinstance(error, (TraitError, ValueError)) and setting in str(error)


@pytest.mark.parametrize("directives", [["--comment=x\n#SBATCH --wrap=touch {canary}"], ["--comment=a\x1bb"]])
def test_extra_directive_with_control_characters_is_refused(slurm_spec, canary, no_job_left, directives):
    error = start_error(slurm_spec(extra_directives=[d.replace("{canary}", canary) for d in directives]))
    assert isinstance(error, ValueError) and "extra_directives" in str(error) and is_clear(str(error))


def test_hostile_but_plain_values_reach_slurm_verbatim(slurm_spec, slurm, kernel_user, canary, no_job_left):
    """A kernelspec name and a comment full of shell syntax are only text to SLURM: the job runs.
    (The job's name is 'jupyter-<kernel name>'; a name with whitespace could not add options to
    its '#SBATCH --job-name' line: render_batch_script refuses it, see test_fuzz_pure.)"""
    name = f"fuzz $(touch {os.path.basename(canary)});`id`|'q&&"
    comment = f"$(touch {canary}) `touch {canary}` ; touch {canary}"
    with running_kernel(slurm_spec(name, extra_directives=[f'--comment="{comment}"'])) as (km, client):
        job_id = execute(client, "import os; print(os.environ['SLURM_JOB_ID'])")["stdout"].strip()
        shown = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%j\x1f%k"], capture_output=True, text=True).stdout
        job_name, shown_comment = shown.rstrip("\n").split("\x1f")
        assert job_name.startswith("jupyter-") and shown_comment == comment


def test_refused_job_leaves_no_staged_request(slurm_spec, kernel_user, no_job_left):
    jobs_dir = os.path.join(os.path.expanduser(f"~{kernel_user.pw_name}"), ".jupyter-hpc", "jobs")
    before = set(os.listdir(jobs_dir)) if os.path.isdir(jobs_dir) else set()
    assert isinstance(start_error(slurm_spec(partition="nosuchpartition")), SlurmError)
    assert set(os.listdir(jobs_dir)) - before == set()
