"""The cluster proxy in a hub user's server: only its owner gets through.

A real JupyterHub (tests/hub_helpers.HubBed: key service, sshd, hub, sandboxed servers) with two
users. Alice's kernel on Cori starts a web app on the login node's 127.0.0.1; her browser
session reaches it at ``/user/<alice>/jupyter-hpc/proxy/cori/127.0.0.1:<port>/`` (and her
kernel's ``JUPYTER_HPC_PROXY`` names that prefix). The attacks, each made for real: Bob's own
API token on Alice's route (403 from Alice's server, nothing reaches the app), a request with no
credentials (redirected to the hub's login), and a cross-origin POST from Alice's own logged-in
browser without any XSRF token (refused; the same POST from her server's own origin passes).
"""

from __future__ import annotations

import json
import uuid

import pytest
import requests

from demo_helpers import ensure_demo_venv
from hub_helpers import Browser, HubBed
from proxy_helpers import start_apps_code

pytestmark = pytest.mark.timeout(300)

ALICE, BOB = "hpcpxalice", "hpcpxbob"
HELLO = "alice's app " + uuid.uuid4().hex


@pytest.fixture(scope="module")
def bed(remote_python):
    hub = HubBed(ensure_demo_venv(), remote_python, [ALICE, BOB])
    yield hub
    hub.stop()
    hub.cleanup()


def logged_in(bed: HubBed, user: str, kernel: bool) -> Browser:
    browser = Browser(bed, user)
    assert browser.login().status_code == 200
    browser.wait_server()
    assert browser.open_lab().status_code == 200
    if kernel:
        browser.kernel = browser.start_kernel()
    return browser


def test_only_the_owner_reaches_her_web_ui_through_her_server(bed):
    alice = logged_in(bed, ALICE, kernel=True)
    bob = logged_in(bed, BOB, kernel=False)
    root = f"/tmp/jupyter-hpc-proxy-hub-{uuid.uuid4().hex}"
    out = alice.kernel.execute(start_apps_code(root, HELLO, 1), timeout=120)
    assert out["error"] is None, out
    apps = json.loads(out["stdout"].strip().splitlines()[-1])
    try:
        env = alice.kernel.execute("import os; print(os.environ['JUPYTER_HPC_PROXY'])")
        prefix = f"/user/{ALICE}/jupyter-hpc/proxy/cori"
        assert env["stdout"].strip() == prefix, env
        app = f"{bed.url}{prefix}/127.0.0.1:{apps['app']}"
        page = f"{bed.url}{prefix}/127.0.0.1:{apps['http']}/hello.txt"

        # The owner, by her browser's cookies: the file, and a write from her server's own origin.
        mine = alice.session.get(page, timeout=60)
        assert mine.status_code == 200 and mine.text == HELLO, (mine.status_code, mine.text[:300])
        same_origin = alice.session.post(f"{app}/upload", data=b"abc", headers={"Origin": bed.url}, timeout=60)
        assert same_origin.status_code == 200 and same_origin.json()["size"] == 3, same_origin.text[:300]

        # Bob's own API token on Alice's route: her server refuses it.
        # Bob's own API token, made by Bob at the hub as any user can.
        bob.session.get(f"{bed.url}/hub/token", timeout=60)
        xsrf = bob.session.cookies.get("_xsrf", path="/hub/") or ""
        made = bob.session.post(f"{bed.url}/hub/api/users/{BOB}/tokens", json={"note": "proxy test"},
                                headers={"X-XSRFToken": xsrf, "Referer": f"{bed.url}/hub/token"}, timeout=60)
        assert made.status_code == 201, (made.status_code, made.text)
        token = made.json()["token"]
        theirs = requests.get(page, headers={"Authorization": f"token {token}"}, allow_redirects=False, timeout=60)
        assert theirs.status_code == 403, (theirs.status_code, theirs.text[:300])
        assert HELLO not in theirs.text
        # Bob's logged-in browser at Alice's route: refused along the OAuth redirects (the hub
        # answers 403, or 503 when it routes the request to its own error page), never the app.
        crossing = bob.session.get(page, allow_redirects=True, timeout=60)
        assert crossing.status_code in (403, 503) and HELLO not in crossing.text, crossing.status_code

        # No credentials at all: sent to log in.
        anonymous = requests.get(page, allow_redirects=False, timeout=60)
        assert anonymous.status_code == 302, anonymous.status_code
        assert "/hub/login" in anonymous.headers["Location"] or "oauth2/authorize" in anonymous.headers["Location"]

        # A cross-origin POST riding Alice's cookies, with no XSRF token: her server refuses it
        # (403, saying why); the app, which would answer 200 with the upload's size, never sees it.
        # (The anonymous request above ended its connection from the hub's proxy; the server's
        # answer says so, or the proxy could send this POST into that closed connection and
        # answer 503 itself: test_proxy.py's keep-alive test.)
        evil = alice.session.post(f"{app}/upload", data=b"abc", headers={"Origin": "http://evil.example"}, timeout=60)
        assert evil.status_code == 403 and "cross-origin" in evil.text, (evil.status_code, evil.text[:300])
        bare = alice.session.post(f"{app}/upload", data=b"abc", timeout=60)  # neither Origin nor Referer
        assert bare.status_code == 403 and '"size"' not in bare.text, (bare.status_code, bare.text[:300])
    finally:
        alice.kernel.execute(f"import os, signal, shutil\nfor pid in {apps['pids']!r}:\n    os.kill(pid, signal.SIGTERM)\n"
                             f"shutil.rmtree({root!r}, ignore_errors=True)")
        alice.kernel.close()
