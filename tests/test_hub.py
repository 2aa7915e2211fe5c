"""The hub (issue 21): password + one-time code at a real JupyterHub 6, a certificate from the
real key service, a server as the hub's non-root user, kernels on an sshd that trusts only the
key service's CA.

One bed for the module (its start costs ~15 s). Every certificate lasts 60 s and the hub sends
users to log in 10 s before the end; the tests that need a login make their own.
"""

from __future__ import annotations

import json
import pwd
import time

import pytest

from demo_helpers import ensure_demo_venv
from hub_helpers import LIFETIME, MARGIN, Browser, HubBed

pytestmark = pytest.mark.timeout(300)

ALICE, BOB, CAROL, DAVE = "hpcalice", "hpcbob", "hpccarol", "hpcdave"


@pytest.fixture(scope="module")
def bed(remote_python):
    hub = HubBed(ensure_demo_venv(), remote_python, [ALICE, BOB, CAROL, DAVE])
    yield hub
    hub.stop()
    hub.cleanup()


@pytest.fixture(scope="module")
def alice(bed):
    """Alice logged in, her server running, a kernel on Cori: the module's main flow."""
    browser = Browser(bed, ALICE)
    page = browser.login()
    browser.logged_in_at = time.time()
    assert page.status_code == 200, page.text
    browser.wait_server()
    assert browser.open_lab().status_code == 200
    browser.kernel = browser.start_kernel()
    return browser


def audit(bed) -> list[dict]:
    return [json.loads(line) for line in (bed.ks_dir / "audit.log").read_text().splitlines() if line]


def test_login_starts_a_server_whose_kernel_runs_as_the_cluster_user(bed, alice):
    specs = alice.server_api("GET", "kernelspecs").json()["kernelspecs"]
    assert "cori-login-python3" in specs, specs
    assert not [name for name in specs if not name.startswith("cori-")], "local kernelspecs on the hub host"
    out = alice.kernel.execute("import os; print(os.getuid())")
    assert out == {"stdout": f"{pwd.getpwnam(ALICE).pw_uid}\n", "error": None}
    assert bed.auth_state(ALICE)["ssh_valid_before"] <= time.time() + LIFETIME + 1
