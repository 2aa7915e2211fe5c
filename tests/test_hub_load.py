"""Twenty users at once at the hub (issue 21): each logs in with password + one-time code, gets
a server of their own, starts a kernel on the cluster and runs a cell, all at the same time.

Its own bed, hour-long certificates (the 60 s of tests/test_hub.py would end while twenty
servers start on two cores), and spawn timeouts sized for twenty servers on two busy cores.
Times are in benchmarks/hub_login.py, not here.
"""

from __future__ import annotations

import pwd
import re
import threading

import pytest

from demo_helpers import ensure_demo_venv
from hub_helpers import Browser, HubBed

pytestmark = pytest.mark.timeout(900)

USERS = [f"hpcload{n:02d}" for n in range(20)]


@pytest.fixture(scope="module")
def bed(remote_python):
    hub = HubBed(ensure_demo_venv(), remote_python, USERS, lifetime=3600, margin=60, extra_config="""
c.Spawner.start_timeout = 600
c.Spawner.http_timeout = 600
c.JupyterHub.log_level = "INFO"
""")
    yield hub
    hub.stop()
    hub.cleanup()


def test_twenty_users_log_in_and_start_a_kernel_each_at_once(bed):
    outcomes: dict[str, object] = {}
    go = threading.Barrier(len(USERS))

    def session(user: str) -> None:
        try:
            browser = Browser(bed, user)
            browser.login_page()
            go.wait(60)  # every login form is submitted at the same moment
            page = browser.login()
            error = re.search(r'<p class="login_error">(.*?)</p>', page.text, re.S)
            assert page.status_code == 200, (page.status_code, page.url, error and error.group(1).strip())
            browser.wait_server(600)
            assert browser.open_lab().status_code == 200
            kernel = browser.start_kernel()
            try:
                outcomes[user] = kernel.execute("import os, pwd; print(pwd.getpwuid(os.getuid()).pw_name, os.getuid())")
            finally:
                kernel.close()
        except BaseException as exc:  # noqa: BLE001 - reported below, per user
            outcomes[user] = exc

    threads = [threading.Thread(target=session, args=(user,)) for user in USERS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(800)

    expected = {user: {"stdout": f"{user} {pwd.getpwnam(user).pw_uid}\n", "error": None} for user in USERS}
    assert outcomes == expected
    # Twenty servers, each its own, each started once.
    servers = {user: (bed.user_model(user) or {}).get("servers", {}).get("", {}) for user in USERS}
    assert all(server.get("ready") for server in servers.values()), servers
    assert sorted(len(list((bed.hub_dir / "users").glob(f"{user}/runtime"))) for user in USERS) == [1] * len(USERS)
    # No error anywhere in the hub's log (its servers and proxy write there too), no 5xx answer.
    log = bed.hub.text()
    assert [line for line in log.splitlines() if line.startswith("[E ")] == []
    assert re.findall(r"^\[\w .:\d-]+\] 5\d\d ", log, re.M) == []
    audit = (bed.ks_dir / "audit.log").read_text()
    assert audit.count('"issued"') == len(USERS), audit[-2000:]
