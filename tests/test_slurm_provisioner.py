"""SlurmProvisioner against a real single-node SLURM, the node reached through the test sshd."""

from __future__ import annotations

import asyncio
import os
import time

import jupyter_client
import pytest

from jupyter_hpc.provisioners.slurm_jobs import SlurmError
from kernel_helpers import execute, provisioner_info, running_kernel
from remote_inspect import process_alive


def test_kernel_runs_in_the_job_squeue_shows(slurm_spec, slurm, kernel_user):
    with running_kernel(slurm_spec()) as (km, client):
        out = execute(client, "import os; print(os.environ['SLURM_JOB_ID'])")
        job_id = out["stdout"].strip()
        assert slurm.jobs(kernel_user.pw_name) == [job_id]
        info = provisioner_info(km)
        assert info["job_id"] == job_id
        msg_id = client.execute("while True: pass")
        time.sleep(0.5)
        km.interrupt_kernel()
        reply = client.get_shell_msg(timeout=5)
        assert reply["parent_header"]["msg_id"] == msg_id and reply["content"]["ename"] == "KeyboardInterrupt"
    deadline = time.monotonic() + 10
    while slurm.jobs(kernel_user.pw_name) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert slurm.jobs(kernel_user.pw_name) == []
    assert not process_alive(info["pid"])
