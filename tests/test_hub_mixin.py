"""Issue 26: HPCCredentialMixin carries the credential on a spawner that is not ours.

JupyterHub's own SimpleLocalProcessSpawner with the mixin in front: the server gets its whole
config through the spawner's own ``get_args`` hook (no file on the hub's host), the hub pushes
the credential to it after the start, and a notebook's kernel runs on the cluster as the user.
"""

from __future__ import annotations

import pwd
from pathlib import Path

import pytest

from demo_helpers import ensure_demo_venv
from hub_helpers import Browser, HubBed, server_pid
from test_hub_attacks import notebook_kernel

pytestmark = pytest.mark.timeout(300)

GRACE = "hpcgrace"


@pytest.fixture(scope="module")
def bed(remote_python):
    hub = HubBed(ensure_demo_venv(), remote_python, [GRACE], lifetime=3600, margin=60, internal_ssl=False,
                 extra_config="""
from jupyterhub.spawner import SimpleLocalProcessSpawner
from jupyter_hpc.hub import HPCCredentialMixin

class HPCSimpleSpawner(HPCCredentialMixin, SimpleLocalProcessSpawner):
    pass

c.JupyterHub.spawner_class = HPCSimpleSpawner
c.SimpleLocalProcessSpawner.home_dir_template = c.HPCSpawner.user_dir_root + "/{username}"
c.JupyterHub.cleanup_servers = False  # servers outlive a hub restart (the second test)
""")
    yield hub
    hub.stop()
    hub.cleanup()


def test_the_mixin_on_simplelocalprocessspawner_runs_a_cluster_kernel(bed):
    browser = Browser(bed, GRACE)
    assert browser.login().status_code == 200
    browser.wait_server()
    assert browser.open_lab().status_code == 200
    kernel = notebook_kernel(browser, "mixin.ipynb")
    try:
        out = kernel.execute("import os; print(os.getuid())")
    finally:
        kernel.close()
    assert out == {"stdout": f"{pwd.getpwnam(GRACE).pw_uid}\n", "error": None}
    # The config came on the server's command line, through the spawner's get_args: no file.
    argv = Path(f"/proc/{server_pid(GRACE)}/cmdline").read_bytes().split(b"\0")
    assert any(arg.startswith(b"--HPCSites.sites=") for arg in argv), argv
    assert any(arg.startswith(b"--ServerApp.kernel_spec_manager_class=") for arg in argv), argv
    assert not list((bed.hub_dir / "users").rglob("jupyter_server_config.json"))
    # The hub pushed the credential after the start: the server holds the hub's.
    held = browser.session.get(f"{bed.url}/user/{GRACE}/jupyter-hpc/api/credential", timeout=30)
    assert held.json()["fingerprint"] == bed.auth_state(GRACE)["ssh_fingerprint"], held.text


def test_a_restarted_hub_still_hands_a_running_server_the_new_credential(bed):
    """The hub restarts while the user's server keeps running (cleanup_servers = False): the
    server's token, kept in the spawner's state, still lets the hub push the next login's
    credential to it."""
    browser = Browser(bed, GRACE)
    started = bed.user_model(GRACE)["servers"][""]["started"]
    before = bed.auth_state(GRACE)["ssh_fingerprint"]
    bed.restart_hub()
    assert browser.login(code=bed.fresh_code(GRACE, {bed.code(GRACE)})).status_code == 200
    after = bed.auth_state(GRACE)["ssh_fingerprint"]
    assert after != before
    assert bed.user_model(GRACE)["servers"][""]["started"] == started  # the same server
    assert browser.open_lab().status_code == 200
    held = browser.session.get(f"{bed.url}/user/{GRACE}/jupyter-hpc/api/credential", timeout=30)
    assert held.json()["fingerprint"] == after, held.text
