"""A hub with two sites: the suite's sshd twice, as "Cori" and "Perlmutter", each with its own
home for the user (on Perlmutter she has another unix name, as at two centres).

Before, every spawn answered 500 ("Cannot choose a site: there are several"). Now the server
starts; the file browser's top level holds ``cori/`` and ``perlmutter/``, each listing its own
home through its own SSH connection, logged in with the hub's certificate; a notebook saved in
each lands on its own cluster; a kernel of each site starts in the notebook's folder there; a
Perlmutter kernel for a notebook in Cori's folder starts in its home on Perlmutter and says so
in its first output line. JupyterLab opens in the first site's home, and a notebook made at
the top level lands there.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from demo_helpers import ensure_demo_venv
from hub_helpers import Browser, HubBed, Kernel
from testbed.sshd import SSHDaemon, write_private
from testbed.users import ensure_user

ALICE = "hpcsites"  # her hub name, and her name on Cori
ALICE_ON_PERLMUTTER = "hpcsitesp"  # her unix name on Perlmutter: another home


class TwoSiteBed(HubBed):
    """The hub bed with a second login node, Perlmutter, trusting the same key service's CA;
    its sshd lets the certificate of ``ALICE`` log in as ``ALICE_ON_PERLMUTTER``
    (``AuthorizedPrincipalsFile``), as a centre maps a federated identity to its local name."""

    def _start_sshd(self, users: list[str]) -> None:
        super()._start_sshd(users)
        ensure_user(ALICE_ON_PERLMUTTER)
        principals = self.root / "principals"
        principals.mkdir(mode=0o755)
        write_private(principals / ALICE_ON_PERLMUTTER, f"{ALICE}\n", 0o644)
        self.perlmutter = SSHDaemon(self.root / "sshd-perlmutter", users=[ALICE_ON_PERLMUTTER], options={
            "TrustedUserCAKeys": str(self.root / "user_ca.pub"),
            "AuthorizedKeysFile": "none",
            "AuthorizedPrincipalsFile": str(principals / "%u"),
        }).start()
        os.chmod(self.perlmutter.known_hosts, 0o644)
        self._write_remote_kernelspec(ALICE_ON_PERLMUTTER)
        site = {"display_name": "Perlmutter", "host": "127.0.0.1", "port": self.perlmutter.port,
                "username": ALICE_ON_PERLMUTTER, "known_hosts": str(self.perlmutter.known_hosts),
                "remote_python": self.remote_python}
        overrides = {"ServerApp": {
            "contents_manager_class": "jupyter_hpc.contents.ClusterContentsManager",
            "kernel_websocket_connection_class": "jupyter_hpc.server.notice.NoticeWebsocketConnection",
        }}
        self.extra_config += (f"\nc.HPCSites.sites['perlmutter'] = {site!r}\n"
                              f"c.HPCSpawner.server_config_overrides = {overrides!r}\n")

    def stop(self) -> None:
        super().stop()
        if hasattr(self, "perlmutter"):
            self.perlmutter.stop()


#: Certificates of this bed last this long: the second test waits one out.
LIFETIME = 45


@pytest.fixture(scope="module")
def bed(remote_python):
    hub = TwoSiteBed(ensure_demo_venv(), remote_python, [ALICE], lifetime=LIFETIME, margin=5)
    yield hub
    hub.stop()
    hub.cleanup()


@pytest.fixture(scope="module")
def alice(bed):
    """Alice logged in (when: ``logged_in_at``), her server up, JupyterLab opened."""
    browser = Browser(bed, ALICE)
    browser.logged_in_at = time.time()
    assert browser.login().status_code == 200
    try:
        browser.wait_server()
    except AssertionError:
        said = [line for line in bed.hub.text().splitlines() if "scopes:" not in line and "GET /hub/api/users" not in line]
        raise AssertionError("\n".join(said[-80:])) from None
    browser.lab = browser.open_lab()
    assert browser.lab.status_code == 200, browser.lab.text[-2000:]
    return browser


def home(user: str) -> Path:
    return Path(pwd.getpwnam(user).pw_dir)


def plant(user: str, name: str, text: str) -> None:
    path = home(user) / name
    path.write_text(text)
    subprocess.run(["chown", f"{user}:", str(path)], check=True)


def notebook(site: str) -> dict:
    return {"type": "notebook", "content": {
        "cells": [{"cell_type": "code", "source": f"print('saved on {site}')", "metadata": {},
                   "outputs": [], "execution_count": None}],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5}}


def start_for(browser: Browser, path: str, kernel: str) -> Kernel:
    """A notebook's session, as JupyterLab opens one: its path and the kernel chosen."""
    reply = browser.server_api("POST", "sessions", json={
        "path": path, "name": path.rsplit("/", 1)[-1], "type": "notebook", "kernel": {"name": kernel}})
    assert reply.status_code == 201, (reply.status_code, reply.text)
    return Kernel(browser, reply.json()["kernel"]["id"])


@pytest.mark.timeout(420)
def test_two_sites_in_one_server(bed, alice):
    tag = uuid.uuid4().hex[:8]
    plant(ALICE, f"on-cori-{tag}.txt", "cori")
    plant(ALICE_ON_PERLMUTTER, f"on-perlmutter-{tag}.txt", "perlmutter")
    browser, lab = alice, alice.lab
    # JupyterLab opens in the first site's home (its one root), the top one click up.
    assert re.search(r'"preferredPath": "cori"', lab.text), re.findall(r'"preferredPath": "[^"]*"', lab.text)

    # The top level: one folder per site; each lists its own home.
    top = browser.server_api("GET", "contents").json()
    assert [item["name"] for item in top["content"]] == ["cori", "perlmutter"], top
    names = {}
    for site in ("cori", "perlmutter"):
        listing = browser.server_api("GET", f"contents/{site}")
        assert listing.status_code == 200, listing.text + bed.hub.text()[-6000:]
        names[site] = {item["name"] for item in listing.json()["content"]}
    assert f"on-cori-{tag}.txt" in names["cori"] and f"on-cori-{tag}.txt" not in names["perlmutter"], names
    assert f"on-perlmutter-{tag}.txt" in names["perlmutter"] and f"on-perlmutter-{tag}.txt" not in names["cori"]
    got = browser.server_api("GET", f"contents/perlmutter/on-perlmutter-{tag}.txt").json()
    assert got["content"] == "perlmutter" and got["path"] == f"perlmutter/on-perlmutter-{tag}.txt"

    # A notebook saved in each site's folder lands on that cluster, as that site's user.
    for site, user in (("cori", ALICE), ("perlmutter", ALICE_ON_PERLMUTTER)):
        saved = browser.server_api("PUT", f"contents/{site}/nb-{tag}.ipynb", json=notebook(site))
        assert saved.status_code in (200, 201), saved.text + bed.hub.text()[-6000:]
        assert saved.json()["path"] == f"{site}/nb-{tag}.ipynb"
        on_disk = home(user) / f"nb-{tag}.ipynb"
        assert "saved on " + site in on_disk.read_text() and on_disk.stat().st_uid == pwd.getpwnam(user).pw_uid
    # A notebook made at the top level lands in the first site's home.
    made = browser.server_api("POST", "contents", json={"type": "notebook"}).json()
    assert made["path"].startswith("cori/Untitled") and (home(ALICE) / made["name"]).exists(), made
    # Files cannot be written at the top, nor moved between the clusters, and say why.
    refused = browser.server_api("PATCH", f"contents/cori/nb-{tag}.ipynb", json={"path": f"perlmutter/moved-{tag}.ipynb"})
    assert refused.status_code == 400 and "another site" in refused.json()["message"], refused.text

    # Kernels of each site start in the notebook's folder on their own cluster, over their
    # own connection (each sshd logged the certificate in, as that site's user).
    folder = home(ALICE) / f"sub-{tag}"
    subprocess.run(["runuser", "-u", ALICE, "--", "mkdir", str(folder)], check=True)
    for site, user, path in (("cori", ALICE, f"cori/sub-{tag}/a.ipynb"),
                             ("perlmutter", ALICE_ON_PERLMUTTER, f"perlmutter/nb-{tag}.ipynb")):
        kernel = start_for(browser, path, f"{site}-login-python3")
        out = kernel.execute("import os; print(os.getuid(), os.getcwd())")
        expected_dir = folder if site == "cori" else home(user)
        assert out["stdout"].split() == [str(pwd.getpwnam(user).pw_uid), str(expected_dir)], out
        kernel.close()
    for daemon, user in ((bed.sshd, ALICE), (bed.perlmutter, ALICE_ON_PERLMUTTER)):
        log = daemon.log.read_text()
        assert re.search(rf"Accepted publickey for {user} from .* ED25519-CERT", log), log[-3000:]

    # A Perlmutter kernel for a notebook in Cori's folder: its home on Perlmutter, and the
    # first line of its first cell's output says why.
    kernel = start_for(browser, f"cori/sub-{tag}/b.ipynb", "perlmutter-login-python3")
    out = kernel.execute("import os; print(os.getcwd())")
    lines = out["stdout"].splitlines()
    assert lines[0] == "this notebook's folder is on Cori; the kernel runs on Perlmutter, in your home there", out
    assert lines[1] == str(home(ALICE_ON_PERLMUTTER)), out
    again = kernel.execute("print('second')")
    assert again["stdout"] == "second\n", again  # said once
    kernel.close()
    assert json.loads(json.dumps(bed.hub.text().count("Cannot choose a site"))) == 0


def kill_connections(daemon: SSHDaemon) -> list[int]:
    """End every SSH connection the daemon serves (its per-connection processes), as a login
    node's reboot or a network cut would: the server must log in again."""
    table = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,args="], capture_output=True, text=True).stdout
    children: dict[int, list[tuple[int, str]]] = {}
    for line in table.splitlines():
        pid, ppid, args = line.split(None, 2) + [""] * (3 - len(line.split(None, 2)))
        children.setdefault(int(ppid), []).append((int(pid), args))
    pids, todo = [], [daemon.process.pid]
    while todo:  # the monitor ("sshd: user [priv]") and its child ("sshd: user@notty") of each
        for pid, args in children.get(todo.pop(), ()):
            if args.startswith("sshd:"):
                pids.append(pid)
                todo.append(pid)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


@pytest.mark.timeout(300)
def test_a_relogin_after_the_certificate_ended_serves_the_files_with_no_restart(bed, alice):
    """The server's SSH connections are killed once the first certificate has ended; after a
    new login the file browser lists both sites again (new connections, with the new
    certificate), discovery and a new kernel work, and the server is the same one (no restart)."""
    assert alice.server_api("GET", "contents/cori").status_code == 200
    started = bed.user_model(ALICE)["servers"][""]["started"]
    time.sleep(max(0.0, alice.logged_in_at + LIFETIME + 2 - time.time()))  # the certificate has ended
    assert kill_connections(bed.sshd) and kill_connections(bed.perlmutter)
    assert alice.login().status_code == 200  # the hub hands the running server the new certificate
    alice.wait_server()
    assert alice.open_lab().status_code == 200
    for site, user in (("cori", ALICE), ("perlmutter", ALICE_ON_PERLMUTTER)):
        plant(user, f"after-{site}.txt", "x")
        listing = alice.server_api("GET", f"contents/{site}")
        assert listing.status_code == 200, listing.text + bed.hub.text()[-4000:]
        assert f"after-{site}.txt" in {item["name"] for item in listing.json()["content"]}
    # Discovery and kernels log in anew with it too.
    xsrf = alice.session.cookies.get("_xsrf", path=f"/user/{ALICE}/") or ""
    refreshed = alice.session.post(f"{bed.url}/user/{ALICE}/jupyter-hpc/api/kernelspecs/refresh", json={},
                                   headers={"X-XSRFToken": xsrf}, timeout=90)
    assert refreshed.status_code == 200 and all(site["ok"] for site in refreshed.json()["sites"].values()), refreshed.text
    kernel = alice.start_kernel("perlmutter-login-python3")
    assert kernel.execute("print('still here')")["stdout"] == "still here\n"
    kernel.close()
    assert bed.user_model(ALICE)["servers"][""]["started"] == started


def respawn(bed) -> list[dict]:
    """Stop Alice's server, start it again as the hub's home page does; its progress events
    (a spawn that failed before the stream opened: the hub's answer to the start, as one)."""
    stopped = bed.api("DELETE", f"users/{ALICE}/server")
    assert stopped.status_code in (202, 204), stopped.text
    deadline = time.monotonic() + 60
    while (bed.user_model(ALICE)["servers"] or {}).get("") and time.monotonic() < deadline:
        time.sleep(0.2)
    replies = []  # the POST waits for the spawn up to the hub's slow_spawn_timeout: read meanwhile
    spawn = threading.Thread(target=lambda: replies.append(bed.api("POST", f"users/{ALICE}/server")))
    spawn.start()
    events = bed.progress_events(ALICE, spawn)
    spawn.join(120)
    assert replies, "the hub did not answer the start"
    if not events:
        return [{"failed": True, "message": f"Spawn failed: {replies[0].json().get('message')}"}]
    if events[-1].get("ready"):
        assert replies[0].status_code in (201, 202), replies[0].text
    return events


@pytest.mark.timeout(300)
def test_the_spawn_page_says_the_certificate_and_the_kernels_or_why_not(bed, alice):
    """The spawn page names the server's own stages: the certificate received, each site's
    kernels discovered. With no site answering, the spawn fails with the sites' errors
    instead of starting a server whose launcher is empty."""
    messages = [event.get("message", "") for event in respawn(bed)]
    assert "Certificate received by your server" in messages, messages
    for site in ("Cori", "Perlmutter"):
        assert any(re.fullmatch(rf"Kernels on {site} discovered \([1-9]\d*\)", m) for m in messages), messages
    assert messages.index("Certificate received by your server") < len(messages) - 1

    for daemon in (bed.sshd, bed.perlmutter):
        daemon.stop()
    try:
        events = respawn(bed)
    finally:
        for daemon in (bed.sshd, bed.perlmutter):
            daemon.start()
    assert events[-1].get("failed"), events
    failure = events[-1]["message"]
    assert failure.startswith("Spawn failed: Your server has no kernel to offer: Kernels on Cori not discovered:"), failure
    assert "Kernels on Perlmutter not discovered:" in failure, failure
    assert str(bed.sshd.port) in failure and str(bed.perlmutter.port) in failure, failure  # each site's own error
    assert not (bed.user_model(ALICE)["servers"] or {}).get("", {}).get("ready"), bed.user_model(ALICE)


@pytest.mark.timeout(300)
def test_a_server_that_cannot_take_the_certificate_fails_the_spawn_naming_the_fix(remote_python):
    """An admin's override that replaces the servers' extensions (dropping the one that takes
    the certificate from the hub) is said on the spawn page with the fix, not only in a log."""
    wrong = ('\nc.HPCSpawner.server_config_overrides = {"ServerApp": {"jpserver_extensions": '
             '{"jupyterlab": True, "jupyter_hpc.server": True}}}\n')
    hub = HubBed(ensure_demo_venv(), remote_python, [ALICE], extra_config=wrong)
    try:
        browser = Browser(hub, ALICE)
        page = browser.login_page()
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
        login = browser.session.post(f"{hub.url}/hub/login?next=", allow_redirects=False, timeout=60, data={
            "_xsrf": xsrf, "username": ALICE, "password": hub.users[ALICE][0], "otp": hub.code(ALICE)})
        assert login.status_code == 302, login.text
        spawn = threading.Thread(target=hub.api, args=("POST", f"users/{ALICE}/server"))
        spawn.start()
        events = hub.progress_events(ALICE, spawn)
        spawn.join(120)
        assert events[-1].get("failed"), events
        message = events[-1]["message"]
        assert "jupyter_hpc.hub.singleuser server extension is not enabled" in message, message
        assert "server_config_overrides" in message, message
        assert not (hub.user_model(ALICE)["servers"] or {}).get("", {}).get("ready")
    finally:
        hub.stop()
        hub.cleanup()
