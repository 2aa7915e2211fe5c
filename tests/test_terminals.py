"""Issue 27: JupyterLab's Terminal opens a shell on the cluster, over the pooled SSH connection.

A real jupyter_server (with JupyterLab, as users run it) configured only with ``c.HPCSites.sites``
and the jupyter_hpc extension; its terminals are spoken to exactly as JupyterLab speaks
(``/api/terminals`` and terminado's messages on ``/terminals/websocket/<name>``). The login
nodes are real OpenSSH sshds of this module's own, the user ``hpcterm`` a real unix user.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import requests

from lab_browser import Lab, lab_config
from terminal_helpers import TermClient
from testbed.sshd import free_port, running_sshd
from testbed.users import ensure_user

USER = "hpcterm"


@pytest.fixture(scope="module")
def term_user():
    return ensure_user(USER)


@pytest.fixture(scope="module")
def login_node(term_user):
    # OpenSSH's own default MaxSessions (10), as most sites leave it.
    with running_sshd([USER], "term", MaxSessions="10") as sshd:
        yield sshd


@pytest.fixture(scope="module")
def lab(tmp_path_factory, login_node, remote_python):
    site = {"display_name": "Cori", **login_node.provisioner_config(USER, remote_python=remote_python)}
    # jupyter_lsp probes for language servers (R, node) by running them: off, so that any
    # process below the server would be the terminals'.
    config = lab_config({"cori": site}, remote_specs=False, ServerApp={"jpserver_extensions": {"jupyter_lsp": False}})
    with Lab.running(tmp_path_factory.mktemp("terminals"), config) as lab:
        yield lab


def descendants(pid: int) -> set[int]:
    """Every process below ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def commands(pids: set[int]) -> list[str]:
    out = []
    for pid in sorted(pids):
        try:
            out.append(f"{pid}: " + Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            pass
    return out


def user_commands(user: str, text: str) -> list[str]:
    out = subprocess.run(["ps", "-u", user, "-o", "pid=,args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if text in line]


def open_terminal(lab: Lab, **body) -> str:
    return lab.api("POST", "terminals", json=body).json()["name"]


def connect(lab: Lab, name: str) -> TermClient:
    return TermClient(lab.port, lab.token, name)


def test_a_shell_on_the_login_node_resized_reattached_and_deleted(lab, login_node, term_user):
    """whoami/hostname/SSH_CONNECTION/tty; set_size → stty size; a second websocket and a
    reconnect replay the screen and find the shell's variable; DELETE ends the remote shell,
    its background job too; nothing started on the server's host."""
    before = descendants(lab.process.pid)
    assert lab.api("GET", "terminals").json() == []
    name = open_terminal(lab)
    assert re.fullmatch(r"\w+", name)
    term = connect(lab, name)
    term.set_size(50, 132)
    out = term.run("whoami; hostname; echo \"conn=$SSH_CONNECTION\"; tty")
    lines = [line.strip() for line in out.strip().splitlines()]
    assert lines[0] == USER, out
    assert lines[1] == subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip()
    assert re.fullmatch(rf"conn=127\.0\.0\.1 \d+ 127\.0\.0\.1 {login_node.port}", lines[2]), out
    assert re.fullmatch(r"/dev/pts/\d+", lines[3]), out
    assert term.run("stty size").strip() == "50 132"
    shell_pid = int(term.run("echo $$").strip())
    term.run("export KEPT=kept-$((6*7)); { sleep 4242 & }")
    # Nothing of the terminal runs on the server's host: no new process below the server.
    assert commands(descendants(lab.process.pid) - before) == []

    # A second tab on the same terminal sees the screen so far and types into the same shell.
    second = connect(lab, name)
    second.wait_for("50 132")
    assert second.run("echo $KEPT").strip() == "kept-42"
    second.close()
    # A reload: the websocket closes and a new one reattaches to the same shell.
    term.close()
    again = connect(lab, name)
    again.wait_for(r"conn=127\.0\.0\.1")  # replayed
    assert again.run("echo $KEPT $$").split() == ["kept-42", str(shell_pid)]
    listed = lab.api("GET", "terminals").json()
    assert [t["name"] for t in listed] == [name] and listed[0]["last_activity"]
    assert lab.api("GET", f"terminals/{name}").json()["name"] == name

    assert user_commands(USER, "sleep 4242")
    lab.api("DELETE", f"terminals/{name}")
    again.wait_disconnect()
    deadline = time.monotonic() + 15
    while (os.path.exists(f"/proc/{shell_pid}") or user_commands(USER, "sleep 4242")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not os.path.exists(f"/proc/{shell_pid}"), "the remote shell outlived DELETE"
    assert user_commands(USER, "sleep 4242") == [], "its background job outlived DELETE"
    assert lab.api("GET", "terminals").json() == []
    assert requests.get(f"{lab.base}/api/terminals/{name}", headers={"Authorization": f"token {lab.token}"}).status_code == 404
    assert commands(descendants(lab.process.pid) - before) == []


def test_exit_closes_the_terminal_as_a_local_one_does(lab):
    name = open_terminal(lab)
    term = connect(lab, name)
    term.run("true")
    term.send("exit\r")
    term.wait_disconnect()
    deadline = time.monotonic() + 10
    while lab.api("GET", "terminals").json() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert lab.api("GET", "terminals").json() == []
