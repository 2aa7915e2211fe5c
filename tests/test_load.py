"""Issue 8, "Load": 20 simulated users x 3 kernels each through the server stack on this
machine, all executing cells concurrently for a minute: zero errors, memory per user server
reported.

Each user has its own single-user jupyter_server, run as that user as a hub would spawn it,
with jupyter_hpc's kernel manager and an hpc-ssh kernelspec logging in to one sshd as that
user (tests/load_bed.py). Every kernel has its own websocket client thread, running a light
cell about once a second: the point is errors under sustained concurrency (60 kernels, 20
servers, 20 SSH connections), not CPU saturation of a 2-core machine. The report (a table and
per-user RSS) is printed and written to test-artifacts/load-report.txt.
"""

from __future__ import annotations

import os
import time

import pytest

from load_bed import LoadBed

USERS = int(os.environ.get("JUPYTER_HPC_LOAD_USERS", "20"))
KERNELS_PER_USER = int(os.environ.get("JUPYTER_HPC_LOAD_KERNELS", "3"))
DURATION = float(os.environ.get("JUPYTER_HPC_LOAD_SECONDS", "60"))
PERIOD = 1.0

pytestmark = pytest.mark.load


@pytest.mark.timeout(420)
def test_twenty_users_three_kernels_each_for_a_minute(artifacts):
    started = time.monotonic()
    bed = LoadBed(USERS, KERNELS_PER_USER)
    try:
        setup = time.monotonic() - started
        result = bed.run(duration=DURATION, period=PERIOD)
        report = result.report() + f"\n  test bed setup (users, venvs, sshd) {setup:.1f} s; " \
                                   f"whole run {time.monotonic() - started:.1f} s\n"
        print("\n" + report)
        (artifacts / "load-report.txt").write_text(report)
        if result.errors or result.leftovers:
            bed.save_logs(artifacts / "load-logs")
    finally:
        bed.close()

    assert result.errors == [], f"{len(result.errors)} errors under load, e.g. {result.errors[:5]}"
    assert result.leftovers == {}, f"processes of the load users left after shutdown: {result.leftovers}"
    assert len(result.cells_per_kernel) == USERS * KERNELS_PER_USER
    # Each kernel kept running cells for the whole minute (about one a second, none stalled).
    assert min(result.cells_per_kernel) >= DURATION / PERIOD * 0.5, result.cells_per_kernel
    assert all(result.rss_end.values()) and len(result.rss_end) == USERS
