"""The hub (issue 21): password + one-time code at a real JupyterHub 6, a certificate from the
real key service, a server as the hub's non-root user, kernels on an sshd that trusts only the
key service's CA.

One bed for the module (its start costs ~15 s). Every certificate lasts 60 s and the hub sends
users to log in 10 s before the end; the tests that need a login make their own.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import subprocess
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import pyotp
import pytest
import requests
import websocket

from demo_helpers import ensure_demo_venv
from hub_helpers import LIFETIME, MARGIN, Browser, HubBed, server_pid

pytestmark = pytest.mark.timeout(300)

ALICE, BOB, CAROL, DAVE, FRANK = "hpcalice", "hpcbob", "hpccarol", "hpcdave", "hpcfrank"


@pytest.fixture(scope="module")
def bed(remote_python):
    hub = HubBed(ensure_demo_venv(), remote_python, [ALICE, BOB, CAROL, DAVE, FRANK])
    yield hub
    hub.stop()
    hub.cleanup()


@pytest.fixture(scope="module")
def dave(bed):
    """Dave logged in at the module's start, with a kernel: the expiry test, last, waits out
    his certificate while the other tests run."""
    browser = Browser(bed, DAVE)
    browser.logged_in_at = time.time()
    assert browser.login().status_code == 200
    browser.hub_cookie = browser.session.cookies.get("jupyterhub-hub-login")
    browser.wait_server()
    assert browser.open_lab().status_code == 200
    browser.kernel = browser.start_kernel()
    # A terminal on Cori, open when his login ends (the expiry test reads why it ended).
    browser.terminal = browser.server_api("POST", "terminals").json()["name"]
    return browser


@pytest.fixture(scope="module")
def alice(bed, dave):
    """Alice logged in, her server running, a kernel on Cori: the module's main flow."""
    browser = Browser(bed, ALICE)
    page = browser.login()
    browser.logged_in_at = time.time()
    assert page.status_code == 200, page.text
    browser.wait_server()
    assert browser.open_lab().status_code == 200
    browser.kernel = browser.start_kernel()
    return browser


@pytest.fixture(scope="module")
def bob(bed):
    """A second user logged in with a kernel running: the other side of the A-vs-B and
    secrets tests."""
    # A kernelspec and a file only Bob has on the cluster: Alice's server must show neither.
    home = Path(pwd.getpwnam(BOB).pw_dir)
    spec = home / ".local/share/jupyter/kernels/bobonly"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [bed.remote_python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Bob's own", "language": "python",
    }))
    for user, name in ((BOB, "bob-notes.txt"), (ALICE, "alice-notes.txt")):
        path = Path(pwd.getpwnam(user).pw_dir) / name
        path.write_text(f"{user}'s notes\n")
        path.chmod(0o600)
    subprocess.run(["chown", "-R", f"{BOB}:", str(home / ".local"), str(home / "bob-notes.txt")], check=True)
    subprocess.run(["chown", f"{ALICE}:", str(Path(pwd.getpwnam(ALICE).pw_dir) / "alice-notes.txt")], check=True)
    browser = Browser(bed, BOB)
    assert browser.login().status_code == 200
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
    valid_before = bed.auth_state(ALICE)["ssh_valid_before"]
    assert valid_before <= time.time() + LIFETIME + 1
    # The hub's login cookie ends with the login (the margin before the certificate's end),
    # and so do the OAuth tokens the browser holds for the server.
    hub_cookie = next(c for c in alice.session.cookies if c.name == "jupyterhub-hub-login")
    assert hub_cookie.expires is not None and hub_cookie.expires <= valid_before - MARGIN + 1, hub_cookie.expires
    tokens = [t for t in bed.api("GET", f"users/{ALICE}/tokens").json()["api_tokens"]
              if t["oauth_client"] == f"Server at /user/{ALICE}/"]
    assert tokens, bed.api("GET", f"users/{ALICE}/tokens").json()
    for token in tokens:
        assert token["expires_at"], token
        assert datetime.fromisoformat(token["expires_at"]).timestamp() <= valid_before - MARGIN + 1, token


def no_server(bed, user: str) -> bool:
    model = bed.user_model(user)
    return model is None or not model.get("servers")


def login_error(page: requests.Response) -> str:
    match = re.search(r'<p class="login_error">(.*?)</p>', page.text, re.S)
    return match.group(1).strip() if match else ""


def test_refused_logins_show_the_login_page_with_their_reason(bed):
    """The password oracle through the real login page: a wrong password, a wrong code and a
    replayed code read the same ("Wrong password or code"), so the page confirms no password."""
    password, secret = bed.users[CAROL]
    totp = pyotp.TOTP(secret)
    browser = Browser(bed, CAROL)
    used = totp.now()
    accepted = requests.post(f"{bed.keyservice_url}create_pair/default/", auth=(CAROL, password + used), timeout=30,
                             verify=bed.keyservice_ca or True)
    assert accepted.status_code == 200  # the code is now spent
    wrong = "Wrong password or code."
    tries = [
        ("not-carols-password", totp.now(), wrong),
        (password, totp.at(time.time() - 3600), wrong),
        (password, used, wrong),
        ("not-carols-password", totp.now(), wrong),
        ("not-carols-password", totp.now(), wrong),
        # The sixth attempt in a row, right password and code: this address is locked out.
        (password, totp.now(), "Too many failed logins"),
    ]
    errors = []
    for attempt, code, message in tries:
        page = browser.login(password=attempt, code=code)
        assert page.status_code == 403, (page.status_code, page.text[-2000:])
        assert login_error(page).startswith(message), login_error(page)
        assert 'id="otp_input"' in page.text  # the login form again, not an error page
        assert no_server(bed, CAROL)
        errors.append(login_error(page))
    assert len(set(errors[:5])) == 1, errors  # word for word the same, right password or not
    refused = [r for r in audit(bed) if r.get("user") == CAROL and r["event"] == "refused"]
    assert [r["reason"] for r in refused] == ["failed"] * 5 + ["locked"], refused
    # The control: the key service did tell the cases apart, in its private audit log only.
    assert [r["check"] for r in refused] == ["password", "code", "replayed", "password", "password", "locked"]
    logged = (bed.ks_dir / "audit.log").read_text() + bed.keyservice.text() + bed.hub.text()
    for secret_text in (password, "not-carols-password", used, secret):
        assert secret_text not in logged


def test_key_service_down_is_a_message_on_the_login_page(bed):
    """The key service unreachable: the login page says so (a 503, not a 500)."""
    # A closed port, as when the service is down.
    port = int(bed.keyservice_url.rsplit(":", 1)[1].strip("/"))
    bed.keyservice.stop()
    try:
        page = Browser(bed, CAROL).login()
        assert page.status_code == 503, page.status_code
        assert login_error(page).startswith("The key service cannot be reached"), login_error(page)
    finally:
        bed.restart_keyservice(port)


def test_a_third_party_failing_at_the_login_page_locks_out_only_itself(bed):
    """The lockout attack through the real hub: five wrong logins as Bob from another address
    (127.0.0.2) lock that address out; Bob's own address is still only told "wrong password or
    code". The hub passes each browser's address on, and the key service (which trusts the hub
    as a proxy) keys its lockouts by it."""
    from test_keyservice import from_address

    attacker = Browser(bed, BOB)
    attacker.session = from_address("127.0.0.2")
    for _ in range(5):
        page = attacker.login(password="not-bobs-password")
        assert page.status_code == 403 and login_error(page).startswith("Wrong password or code."), login_error(page)
    page = attacker.login()  # even the right password and code, from there
    assert page.status_code == 403 and login_error(page).startswith("Too many failed logins"), login_error(page)
    own = Browser(bed, BOB).login(password="not-bobs-password", code="000000")
    assert own.status_code == 403 and login_error(own).startswith("Wrong password or code."), login_error(own)
    events = [(r["event"], r.get("reason"), r["client"]) for r in audit(bed) if r.get("user") == BOB][-8:]
    assert events == [("refused", "failed", "127.0.0.2")] * 4 + [("locked-out", None, "127.0.0.2"),
                      ("refused", "failed", "127.0.0.2"), ("refused", "locked", "127.0.0.2"),
                      ("refused", "failed", "127.0.0.1")], events


def test_user_a_cannot_act_as_user_b(bed, alice, bob):
    # Alice's browser session at Bob's server: the hub refuses her (403), nothing starts.
    reply = alice.session.post(f"{bed.url}/user/{BOB}/api/kernels", json={"name": "cori-login-python3"}, timeout=60)
    assert reply.status_code == 403, reply.status_code
    reply = alice.session.get(f"{bed.url}/user/{BOB}/api/contents", timeout=60)
    assert reply.status_code == 403, reply.status_code
    # Alice's certificate names only her: sshd refuses it for Bob.
    auth_state = bed.auth_state(ALICE)
    with tempfile.TemporaryDirectory() as scratch:
        key = Path(scratch) / "id"
        key.write_text(auth_state["ssh_private_key"])
        key.chmod(0o600)
        Path(scratch, "id-cert.pub").write_text(auth_state["ssh_certificate"])
        base = ["ssh", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", f"UserKnownHostsFile={bed.sshd.known_hosts}", "-p", str(bed.sshd.port)]
        mine = subprocess.run(base + [f"{ALICE}@127.0.0.1", "id -un"], capture_output=True, text=True, timeout=30)
        assert mine.stdout.strip() == ALICE, mine.stderr
        theirs = subprocess.run(base + [f"{BOB}@127.0.0.1", "id -un"], capture_output=True, text=True, timeout=30)
        assert theirs.returncode != 0 and "Permission denied" in theirs.stderr
    # Each server has its own 0700 directory (HOME, runtime, config).
    dirs = [bed.hub_dir / "users" / name for name in (ALICE, BOB)]
    for directory in dirs:
        for sub in (directory, directory / "runtime", directory / "config", directory / "data"):
            assert sub.stat().st_mode & 0o777 == 0o700, sub  # (jupyter_core adds the sticky bit to runtime)
            assert sub.stat().st_uid == bed.hub_entry.pw_uid, sub  # the hub's user: no root, no setuid
    # Each server's runtime files (its server info, kernels' connection files) are in its own.
    assert list((dirs[0] / "runtime").glob("jpserver-*.json")) and list((dirs[1] / "runtime").glob("jpserver-*.json"))
    # Each server shows its own user's home and kernelspecs on the cluster, not the other's.
    mine = {item["name"] for item in alice.server_api("GET", "contents").json()["content"]}
    assert "alice-notes.txt" in mine and "bob-notes.txt" not in mine, mine
    assert "bob-notes.txt" in {item["name"] for item in bob.server_api("GET", "contents").json()["content"]}
    assert [name for name in alice.server_api("GET", "kernelspecs").json()["kernelspecs"] if "bobonly" in name] == []
    assert [name for name in bob.server_api("GET", "kernelspecs").json()["kernelspecs"] if "bobonly" in name]
    # Alice's kernel is Alice on the cluster: Bob's file is closed to it.
    out = alice.kernel.execute(f"open({str(Path(pwd.getpwnam(BOB).pw_dir) / 'bob-notes.txt')!r}).read()")
    assert out["error"] == "PermissionError", out


def browser_cookie(browser: Browser) -> str:
    return "; ".join(f"{c.name}={c.value}" for c in browser.session.cookies if c.path in ("/", f"/user/{browser.user}/"))


def test_a_users_terminal_is_a_shell_as_that_user_and_no_one_elses(bed, alice, bob):
    """Issue 27 on the hub: Alice's terminal is Alice on Cori; Bob, with his session or his own
    API token, can neither list it, nor open it, nor type into it (403)."""
    from terminal_helpers import TermClient

    name = alice.server_api("POST", "terminals").json()["name"]
    term = TermClient(bed.port, None, name, prefix=f"/user/{ALICE}", cookie=browser_cookie(alice))
    assert term.run("id -un; echo \"$SSH_CONNECTION\"").split()[:2] == [ALICE, "127.0.0.1"]
    # Bob's own API token, made by Bob at the hub as a user does (his session, the hub's XSRF).
    made = bob.session.post(f"{bed.url}/hub/api/users/{BOB}/tokens", json={"note": "terminal test"}, timeout=30,
                            headers={"X-XSRFToken": bob.session.cookies.get("_xsrf", path="/hub/") or ""})
    assert made.status_code == 201, (made.status_code, made.text[:300])
    bob_token = made.json()["token"]
    for headers in ({}, {"Authorization": f"token {bob_token}"}):
        session = bob.session if not headers else requests
        for method, path in (("GET", "api/terminals"), ("GET", f"api/terminals/{name}"), ("POST", "api/terminals"),
                             ("DELETE", f"api/terminals/{name}"), ("POST", "jupyter-hpc/api/terminals")):
            reply = session.request(method, f"{bed.url}/user/{ALICE}/{path}", headers=headers, timeout=60,
                                    allow_redirects=False, json={"site": "cori"} if method == "POST" else None)
            assert reply.status_code == 403, (method, path, headers and "token", reply.status_code)
    for options in ({"cookie": browser_cookie(bob)}, {"header": [f"Authorization: token {bob_token}"]}):
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(f"ws://127.0.0.1:{bed.port}/user/{ALICE}/terminals/websocket/{name}",
                                        origin=bed.url, timeout=30, **options)
        assert refused.value.status_code == 403
    # Alice's shell is untouched and still hers.
    assert term.run("id -un").strip() == ALICE
    assert [t["name"] for t in alice.server_api("GET", "terminals").json()] == [name]
    alice.server_api("DELETE", f"terminals/{name}")
    term.wait_disconnect()


def test_spawn_progress_names_the_stages_and_logout_clears_the_credential(bed):
    browser = Browser(bed, FRANK)
    page = browser.login_page()
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
    password, _ = bed.users[FRANK]
    login = browser.session.post(f"{bed.url}/hub/login?next=", allow_redirects=False, timeout=60, data={
        "_xsrf": xsrf, "username": FRANK, "password": password, "otp": bed.code(FRANK)})
    assert login.status_code == 302, login.text
    spawn = threading.Thread(target=browser.session.get, args=(f"{bed.url}/hub/spawn",), kwargs={"timeout": 120})
    spawn.start()
    events = bed.progress_events(FRANK)
    spawn.join(120)
    messages = [event.get("message", "") for event in events]
    said = [m for m in messages if not m.startswith("Server ready")]
    assert said[:-1] == [
        "Server requested",  # JupyterHub's own first event
        "Preparing your server's private directory",
        "Starting your server (JupyterLab, cluster kernels only)",
        "Server started; the hub hands it your SSH certificate and it lists the cluster's kernels",
        "Certificate received by your server",  # the server's own stages (hub/spawn_report.py)
    ], messages
    assert re.fullmatch(r"Kernels on Cori discovered \([1-9]\d*\)", said[-1]), messages
    assert events[-1].get("ready") is True, events
    assert [e["progress"] for e in events[:-1]] == sorted(e["progress"] for e in events[:-1])
    browser.wait_server()
    assert browser.open_lab().status_code == 200
    kernel = browser.start_kernel()
    assert kernel.execute("import os; print(os.getuid())")["stdout"] == f"{pwd.getpwnam(FRANK).pw_uid}\n"
    kernel.close()
    credential_api = f"{bed.url}/user/{FRANK}/jupyter-hpc/api/credential"
    held = requests.get(credential_api, headers={"Authorization": f"token {bed.admin_token}"}, timeout=30)
    assert held.status_code == 200 and held.json()["fingerprint"] == bed.auth_state(FRANK)["ssh_fingerprint"]

    # Logout: the key and certificate leave auth_state, and the running server drops its copy.
    assert browser.session.get(f"{bed.url}/hub/logout", timeout=60).status_code == 200
    assert not {"ssh_private_key", "ssh_certificate"} & set(bed.auth_state(FRANK)), bed.auth_state(FRANK).keys()
    held = requests.get(credential_api, headers={"Authorization": f"token {bed.admin_token}"}, timeout=30)
    assert held.status_code == 200 and held.json() == {"fingerprint": None, "valid_for": None}, held.text
    # The browser's session is over: the hub sends it to the login page.
    assert "/hub/login" in browser.session.get(f"{bed.url}/hub/home", timeout=60).url



def test_a_server_cannot_be_read_by_the_other_servers_of_the_hub_user(bed, alice, bob):
    """Every server runs as the hub's unix user; each marks itself non-dumpable, so Bob's
    server (or anything else running as that user) cannot read Alice's memory or environment."""

    def probe(pid: int) -> list[str]:
        """As the hub's user: can /proc/PID/mem be opened, /proc/PID/environ be read?"""
        code = (
            "for name in ('mem', 'environ'):\n"
            "    try:\n"
            f"        open('/proc/{pid}/' + name, 'rb').read(0 if name == 'mem' else 1)\n"
            "        print(name, 'open')\n"
            "    except PermissionError:\n"
            "        print(name, 'denied')\n"
        )
        out = subprocess.run(["runuser", "-u", bed.hub_entry.pw_name, "--", "/usr/bin/python3", "-c", code],
                             capture_output=True, text=True, timeout=60)
        return out.stdout.split()

    pid = server_pid(ALICE)
    assert Path(f"/proc/{pid}/status").stat().st_uid == 0  # how Linux shows a non-dumpable process
    assert probe(pid) == ["mem", "denied", "environ", "denied"]
    # The same probe on a process of that user that did not mark itself: it can tell.
    plain = subprocess.Popen(["runuser", "-u", bed.hub_entry.pw_name, "--", "sleep", "120"])
    try:
        children = Path(f"/proc/{plain.pid}/task/{plain.pid}/children")
        deadline = time.monotonic() + 30
        while not children.read_text().split() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert probe(int(children.read_text().split()[0])) == ["mem", "open", "environ", "open"]
    finally:
        plain.terminate()
        plain.wait(10)


def secret_fragments(auth_state: dict) -> list[str]:
    """Pieces of a private key and certificate that no file, argv, environment or log may hold."""
    key_lines = [line for line in auth_state["ssh_private_key"].splitlines() if line and "-----" not in line]
    blob = auth_state["ssh_certificate"].split()[1]
    # The key's first line is the same in every unencrypted Ed25519 key (format, cipher, type):
    # the lines after it hold this key's own bytes. The certificate's nonce and key, and its
    # signature, are this certificate's own.
    fragments = [line for line in key_lines[1:] if len(line) >= 20] + [blob[40:100], blob[-60:]]
    assert len(fragments) >= 4, auth_state["ssh_private_key"].count("\n")
    return fragments


def test_secrets_scan_with_two_users_logged_in(bed, alice, bob):
    for browser in (alice, bob):  # both kernels are running
        assert browser.kernel.execute("print(1)")["stdout"] == "1\n"
    fragments = []
    for user in (ALICE, BOB):
        state = bed.auth_state(user)
        assert state.get("ssh_private_key"), f"{user} is not logged in"
        fragments += secret_fragments(state)

    def holds(data: bytes) -> str | None:
        text = data.decode("latin-1")
        return next((fragment for fragment in fragments if fragment in text), None)

    # Every process's argv and environment.
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        for name in ("cmdline", "environ"):
            try:
                data = Path(f"/proc/{pid}/{name}").read_bytes()
            except OSError:
                continue
            if holds(data):
                found.append(f"/proc/{pid}/{name}")
    # Every file on the host where a user's file could land (the hub's tree, homes, temp dirs).
    roots = [bed.root, Path(bed.hub_entry.pw_dir), Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"), Path("/home")]
    for root in roots:
        for directory, _, names in os.walk(root):
            for name in names:
                path = Path(directory, name)
                try:
                    if not path.is_file() or path.stat().st_size > 20_000_000:
                        continue
                    if holds(path.read_bytes()):
                        found.append(str(path))
                except OSError:
                    continue
    # Every log: the hub's (the servers and the proxy write into it) and the key service's.
    for log in bed.logs.glob("*.log"):
        if holds(log.read_bytes()):
            found.append(f"log {log.name}")
    assert found == []


def test_expired_certificate_sends_to_login_and_a_new_login_serves_the_running_server(bed, dave):
    started = (bed.user_model(DAVE) or {})["servers"][""]["started"]
    # The certificate lasts LIFETIME s; the hub sends the user to log in MARGIN s before its end.
    time.sleep(max(0.0, dave.logged_in_at + LIFETIME - MARGIN + 6 - time.time()))
    page = dave.session.get(f"{bed.url}/hub/home", timeout=60)
    assert page.status_code == 200 and "/hub/login" in page.url and 'id="otp_input"' in page.text, page.url
    # The browser dropped the expired hub cookie; the hub refuses it too, should it be sent
    # anyway: the home page and a spawn both go to the login page.
    stale = requests.Session()
    stale.cookies.set("jupyterhub-hub-login", dave.hub_cookie, path="/hub/")
    for path in ("home", "spawn"):
        page = stale.get(f"{bed.url}/hub/{path}", timeout=60)
        assert "/hub/login" in page.url and 'id="otp_input"' in page.text, (path, page.url)
    # The server's API refuses the stale session: no kernel is started that would fail at SSH.
    reply = dave.server_api("POST", "kernels", json={"name": "cori-login-python3"})
    assert reply.status_code in (302, 403), (reply.status_code, reply.text[:500])
    reply = dave.server_api("POST", "terminals")  # nor a terminal: JupyterLab asks to log in again
    assert reply.status_code in (302, 403), (reply.status_code, reply.text[:500])
    # Past the certificate's end, log in again: the same server takes the new certificate.
    time.sleep(max(0.0, dave.logged_in_at + LIFETIME + 2 - time.time()))
    # His terminal opened before ended with the login, saying why (read with the hub's token).
    from terminal_helpers import TermClient

    ended = TermClient(bed.port, bed.admin_token, dave.terminal, prefix=f"/user/{DAVE}")
    ended.wait_for(r"\[Your login to the cluster ended at \d\d:\d\d UTC \(the SSH certificate expired\): this shell "
                   r"was closed\. Log in to the hub again and open a new terminal\.\]", timeout=15)
    ended.close()
    fingerprint = bed.auth_state(DAVE)["ssh_fingerprint"]
    assert dave.login().status_code == 200
    state = bed.auth_state(DAVE)
    assert state["ssh_fingerprint"] != fingerprint
    assert bed.user_model(DAVE)["servers"][""]["started"] == started  # not restarted
    assert dave.open_lab().status_code == 200
    kernel = dave.start_kernel()
    assert kernel.execute("import os; print(os.getuid())")["stdout"] == f"{pwd.getpwnam(DAVE).pw_uid}\n"
    # A new terminal works with the new login.
    from terminal_helpers import TermClient

    fresh = dave.server_api("POST", "terminals").json()["name"]
    term = TermClient(bed.port, None, fresh, prefix=f"/user/{DAVE}", cookie=browser_cookie(dave))
    assert term.run("id -un").strip() == DAVE
    term.close()
    # The old kernel rides its connection, opened while the old certificate was valid.
    assert dave.kernel.execute("print(2)")["stdout"] == "2\n"
    assert " 500 " not in "\n".join(line for line in bed.hub.text().splitlines() if DAVE in line)
