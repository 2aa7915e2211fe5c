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
from remote_inspect import parent_chain, process_alive
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
    config = lab_config({"cori": site}, remote_specs=False, sftp=True,
                        ServerApp={"jpserver_extensions": {"jupyter_lsp": False}})
    # At debug level, so that "no terminal traffic in the log" holds for the most a log says.
    with Lab.running(tmp_path_factory.mktemp("terminals"), config, "--ServerApp.log_level=DEBUG") as lab:
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
    # Two browsers, two sizes: the shell gets the smallest of each (as terminado does) ...
    second.set_size(30, 200)
    assert second.run("stty size").strip() == "30 132"
    second.close()
    # ... and the remaining browser's size once the other leaves.
    deadline = time.monotonic() + 10
    while term.run("stty size").strip() != "50 132":
        assert time.monotonic() < deadline, "the size did not follow the remaining browser"
    # A reload: the websocket closes and a new one reattaches to the same shell.
    term.close()
    again = connect(lab, name)
    again.wait_for(r"conn=127\.0\.0\.1")  # replayed
    assert again.run("echo $KEPT $$").split() == ["kept-42", str(shell_pid)]
    listed = lab.api("GET", "terminals").json()
    assert [t["name"] for t in listed] == [name] and listed[0]["last_activity"] and listed[0]["site"] == "cori"
    assert lab.api("GET", f"terminals/{name}").json()["name"] == name

    assert user_commands(USER, "sleep 4242")
    lab.api("DELETE", f"terminals/{name}")
    again.wait_disconnect()
    deadline = time.monotonic() + 15
    while (process_alive(shell_pid) or user_commands(USER, "sleep 4242")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not process_alive(shell_pid), "the remote shell outlived DELETE"
    assert user_commands(USER, "sleep 4242") == [], "its background job outlived DELETE"
    assert lab.api("GET", "terminals").json() == []
    assert requests.get(f"{lab.base}/api/terminals/{name}", headers={"Authorization": f"token {lab.token}"}).status_code == 404
    assert commands(descendants(lab.process.pid) - before) == []
    # The traffic went to no log: neither what was typed nor what the shell printed.
    assert "6*7" not in lab.log and "kept-42" not in lab.log and "4242" not in lab.log


def test_the_terminal_opens_in_the_file_browsers_folder_on_the_cluster(lab, term_user, canary):
    """JupyterLab sends the file browser's folder (``cwd``): with the cluster's files shown, the
    shell starts in that folder there; a folder that is not there, or a hostile name, gives
    the home, and the name is never run."""
    folder = Path(term_user.pw_dir) / "term dir" / "sub"
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["chown", "-R", f"{USER}:", str(folder.parent)], check=True)
    for cwd, expected in (("term dir/sub", str(folder)), ("no-such-folder", term_user.pw_dir),
                          (f"x$(touch {canary})'; touch {canary}; '", term_user.pw_dir)):
        term = connect(lab, open_terminal(lab, cwd=cwd))
        assert term.run("pwd").strip() == expected, cwd
        assert term.run("shopt -q login_shell && echo login").strip() == "login"
        lab.api("DELETE", f"terminals/{term.name}")


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


@pytest.fixture(scope="module")
def second_node(term_user):
    with running_sshd([USER], "term2") as sshd:
        yield sshd


@pytest.fixture(scope="module")
def no_tty_node(term_user):
    with running_sshd([USER], "notty", PermitTTY="no") as sshd:
        yield sshd


@pytest.fixture(scope="module")
def sites_lab(tmp_path_factory, login_node, second_node, no_tty_node, remote_python):
    """Several sites: Cori (MaxSessions 10), Hopper, one that refuses PTYs, one down, one that
    says terminals: false."""
    def site(display: str, sshd, **extra) -> dict:
        return {"display_name": display, **sshd.provisioner_config(USER, remote_python=remote_python), **extra}

    # "many" is Cori again, for the MaxSessions test alone: its own known_hosts copy makes it a
    # connection of its own (the pool keys on it), empty whatever the other tests left closing.
    many_known_hosts = login_node.root / "known_hosts_many"
    many_known_hosts.write_text(login_node.known_hosts.read_text())
    sites = {
        "cori": site("Cori", login_node),
        "many": site("Many", login_node, known_hosts=str(many_known_hosts)),
        "hopper": site("Hopper", second_node),
        "notty": site("NoTTY", no_tty_node),
        "down": site("Down", login_node, port=free_port()),
        "locked": site("Locked", second_node, terminals=False),
    }
    # No connection made ahead, no launcher kept on standby: each would hold a session of its
    # own, and the MaxSessions test counts the terminals' sessions alone.
    config = lab_config(sites, remote_specs=False, HPCTerminalManager={"max_terminals": 12},
                        ConnectAhead={"enabled": False}, SSHProvisioner={"launcher_standby": 0})
    with Lab.running(tmp_path_factory.mktemp("terminal-sites"), config) as lab:
        yield lab


def site_terminal(lab: Lab, site: str) -> TermClient:
    reply = lab.hpc("POST", "terminals", json={"site": site})
    assert reply.status_code == 200, reply.text
    return connect(lab, reply.json()["name"])


def test_one_terminal_per_site_and_each_failure_is_one_clear_line(sites_lab, second_node, no_tty_node):
    offered = sites_lab.hpc("GET", "terminals").json()
    assert offered["default"] == "cori"
    assert [(s["name"], s["display_name"], s["terminals"]) for s in offered["sites"]] == [
        ("cori", "Cori", True), ("many", "Many", True), ("hopper", "Hopper", True), ("notty", "NoTTY", True),
        ("down", "Down", True), ("locked", "Locked", False)]
    # Each site's terminal is a shell on that site's login node.
    hopper = site_terminal(sites_lab, "hopper")
    assert hopper.run('echo "on port ${SSH_CONNECTION##* }"').strip() == f"on port {second_node.port}"
    cori = connect(sites_lab, open_terminal(sites_lab))  # JupyterLab's own Terminal: the default site
    assert cori.run('echo "on port ${SSH_CONNECTION##* }"').strip() != f"on port {second_node.port}"

    # A refused PTY, an unreachable site, a site without terminals, bad input: one line each,
    # the terminal still listed (its tab stays to show it), never a 500 or a blank tab.
    expected = {
        "notty": r"\[No shell on NoTTY: 127\.0\.0\.1 refused a terminal \(PTY\) for this session\.[^\]]*\]",
        "down": r"\[No shell on Down: Cannot reach 127\.0\.0\.1 port \d+ over SSH: [^\]]*\]",
        "locked": r"\[No shell on Locked: Locked offers no terminals here \(its site config says terminals: false\)[^\]]*\]",
        "nowhere": r"\[No shell on nowhere: No site named 'nowhere' \(configured: cori, many, hopper, notty, down, locked\)\.\]",
    }
    for site, line in expected.items():
        term = site_terminal(sites_lab, site)
        term.wait_for(line)
        assert term.screen.count("[No shell") == 1, term.screen
        assert not term.disconnected
        model = sites_lab.api("GET", f"terminals/{term.name}").json()
        assert model["jupyter_hpc"]["state"] == "ended"
        sites_lab.api("DELETE", f"terminals/{term.name}")
    assert sites_lab.hpc("POST", "terminals", json={}).status_code == 400
    assert sites_lab.hpc("POST", "terminals", json={"site": "cori", "job": "1; rm -rf ~"}).status_code == 400
    assert sites_lab.hpc("POST", "terminals", json={"kernel_id": "no-such-kernel"}).status_code == 404
    for term in (hopper, cori):
        sites_lab.api("DELETE", f"terminals/{term.name}")


def test_ten_terminals_ride_one_connection_the_eleventh_a_sibling_and_max_terminals_says_so(sites_lab, login_node):
    def client_port(term: TermClient) -> str:
        return term.run("echo $SSH_CONNECTION").split()[1]  # the SSH connection's own source port

    terms = [site_terminal(sites_lab, "many") for _ in range(10)]
    ports = {client_port(term) for term in terms}
    assert len(ports) == 1  # ten shells, one SSH connection
    logins = login_node.accepted_logins()
    # The eleventh is past sshd's MaxSessions (10): it opens on a sibling connection and works.
    terms.append(site_terminal(sites_lab, "many"))
    assert terms[-1].run("echo eleventh").strip() == "eleventh"
    assert client_port(terms[-1]) not in ports
    assert login_node.accepted_logins() - logins == 1
    terms.append(site_terminal(sites_lab, "many"))  # the twelfth: max_terminals is 12 here
    assert terms[-1].run("echo twelfth").strip() == "twelfth"
    refused = site_terminal(sites_lab, "many")
    refused.wait_for(r"\[No shell on Many: Many has 12 terminals open already \(max_terminals\): close one")
    # Closing one makes room again.
    sites_lab.api("DELETE", f"terminals/{terms.pop().name}")
    sites_lab.api("DELETE", f"terminals/{refused.name}")
    terms.append(site_terminal(sites_lab, "many"))
    assert terms[-1].run("echo again").strip() == "again"
    for term in terms:
        sites_lab.api("DELETE", f"terminals/{term.name}")
    assert sites_lab.api("GET", "terminals").json() == []


def test_an_idle_terminal_is_ended_with_a_line_saying_so(tmp_path, login_node, remote_python):
    site = {"display_name": "Cori", **login_node.provisioner_config(USER, remote_python=remote_python)}
    config = lab_config({"cori": site}, remote_specs=False,
                        HPCTerminalManager={"terminal_idle_timeout": 2, "cull_interval": 0.5})
    with Lab.running(tmp_path, config) as lab:
        term = connect(lab, open_terminal(lab))
        shell_pid = int(term.run("echo $$").strip())
        term.wait_for(r"\[Closed after \d+ s with no input or output \(terminal_idle_timeout\)\. Open a new terminal to go on\.\]",
                      timeout=20)
        deadline = time.monotonic() + 10
        while process_alive(shell_pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not process_alive(shell_pid)
        assert lab.api("GET", f"terminals/{term.name}").json()["jupyter_hpc"]["state"] == "ended"


def test_the_demo_login_node_gives_a_login_shell_on_a_pty(tmp_path):
    """The demo's embedded login node (asyncssh) runs a real login shell on a PTY: in Cori's
    home, SSH_CONNECTION and TERM set, window changes followed, the hang-up ending its jobs.
    The node runs here with SIGHUP, SIGINT and SIGQUIT ignored, as under ``nohup`` or as a
    script's background job: its sessions still start with every signal at its default, as
    sshd's do (an ignored signal is inherited across exec, and the job would outlive the
    hang-up)."""
    import asyncio
    import signal

    from jupyter_hpc.demo.login_node import LoginNode
    from jupyter_hpc.ssh.quiet_import import asyncssh

    home = tmp_path / "cori-home"
    home.mkdir()

    async def session() -> tuple[str, int, str]:
        async with LoginNode(tmp_path / "state", home=home) as node:
            async with asyncssh.connect(node.host, node.port, username=node.username, known_hosts=str(node.known_hosts_path),
                                        client_keys=[str(node.client_key_path)]) as conn:
                ignored = (await conn.run("grep SigIgn /proc/self/status", check=True)).stdout
                shell = await conn.create_process(term_type="xterm-256color", term_size=(100, 40), encoding="utf-8")
                shell.stdin.write("shopt -q login_shell && echo LOGIN; tty; pwd; echo \"$TERM $SSH_CONNECTION\"; stty size\r")
                screen = ""
                while not re.search(r"[\r\n]40 100\r\n", screen):
                    screen += await asyncio.wait_for(shell.stdout.read(65536), 10)
                shell.change_terminal_size(132, 50)
                shell.stdin.write("stty size; sleep 4343 & echo JOB=$!; echo DO''NE\r")
                while "DONE\r\n" not in screen:
                    screen += await asyncio.wait_for(shell.stdout.read(65536), 10)
                shell.close()
                job = int(re.search(r"JOB=(\d+)", screen).group(1))
                for _ in range(100):
                    if not process_alive(job):
                        break
                    await asyncio.sleep(0.1)
                return screen, job, ignored

    as_under_nohup = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT)
    before = {signum: signal.signal(signum, signal.SIG_IGN) for signum in as_under_nohup}
    try:
        screen, job, ignored = asyncio.run(session())
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
    mask = int(ignored.split()[1], 16)
    assert not [s.name for s in as_under_nohup if mask & (1 << (s - 1))], f"a session started with signals ignored: {ignored}"
    assert re.search(r"[\r\n]LOGIN\r\n", screen)
    assert re.search(r"\r\n/dev/pts/\d+\r\n", screen)
    assert f"\r\n{home}\r\n" in screen
    assert re.search(r"\r\nxterm-256color 127\.0\.0\.1 \d+ 127\.0\.0\.1 \d+\r\n", screen)
    assert re.search(r"[\r\n]40 100\r\n", screen) and re.search(r"[\r\n]50 132\r\n", screen)
    if process_alive(job):
        chain = parent_chain(job)
        os.kill(job, signal.SIGKILL)
        pytest.fail(f"a job of the shell outlived the session's end by 10 s: {chain}")
