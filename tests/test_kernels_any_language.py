"""Kernels in any language and any environment (issue 31), through hpc-ssh on the real sshd.

IRkernel is Debian's ``r-cran-irkernel`` (its spec in /usr/share/jupyter/kernels/ir, argv[0]
``R`` found on the login's PATH); xeus-python is PyPI's wheel in the cluster-side venv (its
specs in the venv's share/jupyter/kernels, argv[0] ``python3.11`` meaning the venv's python).
Both are found by discovery, not written by the test. The user ``hpclang`` and its sshd are
this module's own, so the transport tests start on connections no other test has used.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jupyter_client
import pytest

from kernel_helpers import execute, provisioner_info
from remote_inspect import process_alive, unix_listeners, user_processes
from testbed import spy
from testbed.remote_python import VENV
from testbed.sshd import running_sshd
from testbed.users import NEIGHBOUR_USER, ensure_user, run_as

from jupyter_hpc.kernelspecs import discover_sync, local_kernelspecs, write_kernelspec
from jupyter_hpc.sites import parse_site

USER = "hpclang"
SECRET = "SECRET-31-b7e2"
R_SECRETS = f'for (i in 1:40) {{ cat("{SECRET}", i, "\\n"); flush.console(); Sys.sleep(0.1) }}'
PY_SECRETS = f"import time\nfor i in range(40):\n    print('{SECRET}', i, flush=True)\n    time.sleep(0.1)\n"


@pytest.fixture(scope="module")
def lang_user():
    entry = ensure_user(USER)
    yield entry
    subprocess.run(["rm", "-rf", os.path.join(entry.pw_dir, ".local", "share", "jupyter")], check=False)


@pytest.fixture(scope="module")
def lang_sshd(lang_user):
    with running_sshd([USER], "anylang") as daemon:
        yield daemon


@pytest.fixture(scope="module")
def spy_script():
    directory = Path(tempfile.mkdtemp(prefix="jupyter-hpc-spy31-"))
    os.chmod(directory, 0o755)
    script = directory / "spy.py"
    shutil.copy(spy.__file__, script)
    os.chmod(script, 0o644)
    yield script
    shutil.rmtree(directory, ignore_errors=True)


def site_entry(daemon, remote_python: str, **settings) -> dict:
    return {"display_name": "Cori", **daemon.provisioner_config(USER, remote_python=remote_python), **settings}


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """Discover a site's kernelspecs and write them where jupyter_client looks (what `jupyter hpc
    install` does); returns {remote name: local kernelspec name} and the discovery result."""
    root = tmp_path / "jupyter"
    monkeypatch.setenv("JUPYTER_PATH", str(root))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))

    def install(entry: dict, name: str = "cori"):
        site = parse_site(name, entry)
        result = discover_sync(site)
        specs = local_kernelspecs(site, result)
        for spec in specs:
            write_kernelspec(str(root / "kernels" / spec.name), spec)
        return {spec.remote.name: spec for spec in specs}, result

    return install


def step(report: str, name: str) -> str:
    """The doctor's line for step ``name``."""
    return next(line.strip() for line in report.splitlines() if line.strip()[7:].startswith(name + " "))


def write_user_spec(user, name: str, body: dict) -> Path:
    directory = Path(user.pw_dir) / ".local" / "share" / "jupyter" / "kernels" / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "kernel.json").write_text(json.dumps(body))
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(Path(user.pw_dir) / ".local")], check=True)
    return directory


def neighbour_reads(spy_script, remote_python, pid: int, client, code: str) -> dict:
    """While the kernel prints secrets, the neighbour attacks every Unix socket it listens on."""
    paths = unix_listeners(pid)
    assert paths, "the kernel listens on no Unix socket"
    msg_id = client.execute(code)
    result = run_as(NEIGHBOUR_USER, [remote_python, str(spy_script), "[]", json.dumps(paths), "2.5"],
                    capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    seen = []
    while True:
        msg = client.get_iopub_msg(timeout=15)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            seen.append(msg["content"]["text"])
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    assert SECRET in "".join(seen)  # the owner reads it, over the forwarded channels
    return dict(json.loads(result.stdout), paths=paths)


def interrupt_a_long_sleep(km, client, code: str) -> dict:
    """Run a 60 s sleep, interrupt it after a second; the reply must come within seconds."""
    msg_id = client.execute(code)
    time.sleep(1.0)
    interrupted = time.monotonic()
    km.interrupt_kernel()
    while True:
        msg = client.get_shell_msg(timeout=20)
        if msg["parent_header"].get("msg_id") == msg_id:
            break
    took = time.monotonic() - interrupted
    assert took < 10, f"the 60 s sleep was not interrupted ({took:.1f} s)"
    return msg["content"]


# The remote user, a 60 s sleep, a secret printer: per language.
R_CODE = {"who": 'cat(system("id -un", intern = TRUE))', "sleep": "Sys.sleep(60)", "secrets": R_SECRETS}
PY_CODE = {"who": "import getpass; print(getpass.getuser())", "sleep": "import time; time.sleep(60)",
           "secrets": PY_SECRETS}


@pytest.fixture
def signals_sent(monkeypatch):
    """The signals the provisioner is asked to send (KernelManager's signal-mode interrupt)."""
    from jupyter_hpc.provisioners import SSHProvisioner

    sent = []
    original = SSHProvisioner.send_signal

    async def send_signal(self, signum):
        sent.append(signum)
        await original(self, signum)

    monkeypatch.setattr(SSHProvisioner, "send_signal", send_signal)
    return sent


def run_language(name: str, code: dict, spy_script, remote_python, kernel_words: bytes,
                 idle_interrupt: bool = False) -> dict:
    """A cell as the remote user, privacy against the neighbour, interrupt (first of an idle
    kernel if asked: it must keep running), restart, shutdown; returns the interrupted reply."""
    km = jupyter_client.KernelManager(kernel_name=name)
    km.start_kernel()
    client = km.client()
    try:
        client.start_channels()
        client.wait_for_ready(timeout=90)
        info = provisioner_info(km)
        assert info["remote_transport"] == "ipc", info
        assert execute(client, code["who"], timeout=60)["stdout"].strip() == USER
        report = neighbour_reads(spy_script, remote_python, info["pid"], client, code["secrets"])
        assert SECRET not in report["received"], report
        assert report["raw_connected"] == 0 and all("Permission denied" in e for e in report["errors"]), report
        assert len(report["paths"]) >= 5

        if idle_interrupt:
            km.interrupt_kernel()
            assert execute(client, code["who"], timeout=20)["stdout"].strip() == USER
        interrupted = interrupt_a_long_sleep(km, client, code["sleep"])
        assert interrupted["status"] in ("error", "abort"), interrupted
        assert execute(client, code["who"], timeout=60)["stdout"].strip() == USER  # alive after it

        first_pid, first_dir = info["pid"], info["kernel_dir"]
        km.restart_kernel(now=True)
        client.wait_for_ready(timeout=90)
        assert execute(client, code["who"], timeout=60)["stdout"].strip() == USER
        info = provisioner_info(km)
        assert info["pid"] != first_pid and info["remote_transport"] == "ipc"
        assert not process_alive(first_pid) and not os.path.exists(first_dir)
    finally:
        client.stop_channels()
        if km.has_kernel:
            km.shutdown_kernel(now=False)
    assert not process_alive(info["pid"]) and not os.path.exists(info["kernel_dir"])
    left = [line for line in user_processes(USER) if kernel_words in line.encode()]
    assert not left, left
    return interrupted


def test_discovery_finds_the_venvs_and_the_systems_own_kernels_and_doctor_passes(
    lang_sshd, lang_user, remote_python, installed
):
    """`jupyter hpc kernels` lists the venv's own specs (its prefix as its python sees it, with
    site) and Debian's R; `jupyter hpc doctor` resolves R on the login's PATH and passes."""
    entry = site_entry(lang_sshd, remote_python)
    specs, result = installed(entry)
    assert result.prefix == VENV, result.prefix  # not /usr: the venv's, as its site module makes it
    venv_kernels = os.path.join(VENV, "share", "jupyter", "kernels")
    assert specs["xpython"].remote.kernel_file == os.path.join(venv_kernels, "xpython", "kernel.json")
    assert specs["python3"].remote.kernel_file == os.path.join(venv_kernels, "python3", "kernel.json")
    assert specs["ir"].remote.kernel_file == "/usr/share/jupyter/kernels/ir/kernel.json"
    # The spec's "python3.11" (and ipykernel's "python") is the venv's python, as jupyter_client
    # makes it sys.executable locally; R stays a command for the login's PATH.
    assert specs["xpython"].kernel["argv"][:3] == [remote_python, "-m", "xpython_launcher"]
    assert specs["python3"].kernel["argv"][0] == remote_python
    assert specs["ir"].kernel["argv"][0] == "R"

    config = Path(os.environ["JUPYTER_PATH"]).parent / "config"
    config.mkdir()
    (config / "jupyter_server_config.json").write_text(json.dumps({"HPCSites": {"sites": {"cori": entry}}}))
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(config))
    listed = subprocess.run([sys.executable, "-m", "jupyter_hpc.cli.main", "kernels", "cori", "--json"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    by_name = {kernel["name"]: kernel for kernel in json.loads(listed.stdout)["cori"]["kernels"]}
    assert by_name["cori-login-xpython"]["remote_file"].startswith(venv_kernels)
    assert by_name["cori-login-xpython-raw"]["remote_file"].startswith(venv_kernels)
    assert by_name["cori-login-ir"]["remote_file"] == "/usr/share/jupyter/kernels/ir/kernel.json"

    doctor = subprocess.run([sys.executable, "-m", "jupyter_hpc.cli.main", "doctor", "cori"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "[ok  ] kernel ir" in doctor.stdout and "R (/usr/bin/R)" in doctor.stdout, doctor.stdout
    assert "[ok  ] kernel xpython " in doctor.stdout and "imports xpython_launcher" in doctor.stdout, doctor.stdout
    # Per kernelspec, the transport it gets and why.
    assert step(doctor.stdout, "transport ir").startswith("[ok  ] transport ir   ipc: Unix sockets in a 0700"), doctor.stdout


def test_irkernel_from_debians_spec_runs_interrupts_restarts_and_is_private(
    lang_sshd, lang_user, neighbour_user, remote_python, installed, spy_script, caplog, signals_sent
):
    """interrupt_mode signal (IRkernel's): SIGINT reaches R on the node and ends Sys.sleep(60)."""
    specs, _ = installed(site_entry(lang_sshd, remote_python))
    assert specs["ir"].kernel["interrupt_mode"] == "signal"
    with caplog.at_level(logging.WARNING, logger="jupyter_hpc.provisioners"):
        run_language(specs["ir"].name, R_CODE, spy_script, remote_python, b"IRkernel")
    assert signal.SIGINT in signals_sent
    # R exposes nothing beyond its channels: nothing to warn about.
    assert not [r for r in caplog.records if "listens on TCP" in r.getMessage() or "shim" in r.getMessage()]


def test_xeus_python_from_the_venvs_spec_runs_interrupts_restarts_and_is_private(
    lang_sshd, lang_user, neighbour_user, remote_python, installed, spy_script, signals_sent
):
    """xeus-python from the venv's own spec, over Unix sockets in a short private directory.

    Its spec's interrupt_mode is 'signal' (the default). As it comes, the xeus-python wheel
    exits on SIGINT and ignores an interrupt_request (xeus-python#527, xeus#262); the
    launcher's shim makes SIGINT a KeyboardInterrupt in the running cell and nothing between
    cells (an idle interrupt first: the kernel must keep running). Its channels' endpoints
    must stay within 31 characters (xeus-zmq reads them back into a 32-byte buffer): the
    launcher puts them in /tmp/jh-XXXXXXXX (0700) when the kernel's directory is deeper."""
    specs, _ = installed(site_entry(lang_sshd, remote_python))
    assert specs["xpython"].kernel["argv"][:3] == [remote_python, "-m", "xpython_launcher"]
    assert specs["xpython"].kernel.get("interrupt_mode", "signal") == "signal"
    interrupted = run_language(specs["xpython"].name, PY_CODE, spy_script, remote_python, b"xpython_launcher",
                               idle_interrupt=True)
    assert interrupted["status"] == "error" and "KeyboardInterrupt" in interrupted["ename"], interrupted
    assert signals_sent[:2] == [signal.SIGINT, signal.SIGINT], signals_sent  # the two interrupts


# A kernel that binds Unix sockets of its own naming (k_1 for k-1), as a kernel with another
# idea of ipc endpoints would: it never answers on the ones in its connection file.
MISNAMED_KERNEL = """
import json, socket, sys, time
info = json.load(open(sys.argv[1]))
held = []
for name in ("shell", "iopub", "stdin", "control", "hb"):
    s = socket.socket(socket.AF_UNIX); s.bind("%s_%d" % (info["ip"], info[name + "_port"])); s.listen(1); held.append(s)
time.sleep(120)
"""


def test_a_kernel_that_binds_other_sockets_fails_alone_and_the_next_ipykernel_uses_ipc(
    lang_user, remote_python, installed, signals_sent
):
    """The first kernel on a fresh connection binds the wrong sockets: its start fails saying so
    and naming remote_transport, the site is not judged by it, and the next ipykernel on the
    same connection gets Unix sockets. That one's interrupt_mode is 'message': jupyter_client's
    interrupt_request reaches it through the forwarded control channel and ends a 60 s sleep."""
    from jupyter_hpc.ssh import get_pool, run_in_ssh_loop_sync

    write_user_spec(lang_user, "misnamed", {"argv": [remote_python, "-c", MISNAMED_KERNEL, "{connection_file}"],
                                            "display_name": "Misnamed", "language": "python"})
    write_user_spec(lang_user, "pymsg", {"argv": ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                                         "display_name": "Py (message)", "language": "python",
                                         "interrupt_mode": "message"})
    with running_sshd([USER], "anylang-fresh") as fresh:  # a connection nothing has used yet
        entry = site_entry(fresh, remote_python, launch_timeout=20)
        specs, _ = installed(entry)
        km = jupyter_client.KernelManager(kernel_name=specs["misnamed"].name)
        started = time.monotonic()
        with pytest.raises(Exception) as failure:
            km.start_kernel()
        message = str(failure.value)
        assert "did not bind the sockets its connection file names" in message, message
        assert "remote_transport" in message and "metadata.jupyter_hpc.transport" in message, message
        assert time.monotonic() - started < 15  # found out by its stray sockets, not the timeout
        assert not [line for line in user_processes(USER) if "held = []" in line]
        login = run_in_ssh_loop_sync(get_pool().connect(parse_site("cori", entry).ssh_target()))
        assert login.stream_local is None  # nothing concluded about the site from that kernel

        km = jupyter_client.KernelManager(kernel_name=specs["pymsg"].name)
        km.start_kernel()
        client = km.client()
        try:
            client.start_channels()
            client.wait_for_ready(timeout=60)
            assert provisioner_info(km)["remote_transport"] == "ipc"
            assert login.stream_local is True  # probed on the launcher's own socket
            reply = interrupt_a_long_sleep(km, client, PY_CODE["sleep"])
            assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
            assert signal.SIGINT not in signals_sent  # a message, not a signal
        finally:
            client.stop_channels()
            km.shutdown_kernel(now=True)


def test_a_kernelspec_chooses_its_transport_and_plain_tcp_needs_the_sites_word(
    lang_sshd, lang_user, remote_python, installed, caplog
):
    """metadata.jupyter_hpc.transport: 'tcp-curve' runs ipykernel on Curve TCP; plain 'tcp' is
    refused, naming the kernel and allow_plaintext_loopback, until the site sets it. A kernel
    whose extra TCP listener is exposed (an ipykernel whose setup line drops the listener shim
    from PYTHONPATH: its IOPub pipe is then on 127.0.0.1) is named in one warning."""
    from jupyter_hpc.errors import TransportRefusedError

    base = {"argv": [remote_python, "-m", "ipykernel_launcher", "-f", "{connection_file}"], "language": "python"}
    write_user_spec(lang_user, "curve", dict(base, display_name="Curve",
                                             metadata={"jupyter_hpc": {"transport": "tcp-curve"}}))
    write_user_spec(lang_user, "plain", dict(base, display_name="Plain",
                                             metadata={"jupyter_hpc": {"transport": "tcp"}}))
    write_user_spec(lang_user, "noshim", dict(base, display_name="No shim",
                                              metadata={"jupyter_hpc": {"setup": ["unset PYTHONPATH"]}}))
    specs, _ = installed(site_entry(lang_sshd, remote_python))
    from jupyter_hpc.cli.doctor import remote_kernels
    from jupyter_hpc.doctor import render
    from jupyter_hpc.site_doctor import diagnose_site
    from jupyter_hpc.ssh import run_in_ssh_loop_sync

    site = parse_site("cori", site_entry(lang_sshd, remote_python))
    report = render("Cori:", run_in_ssh_loop_sync(diagnose_site(site, remote_kernels(site))))
    assert "ok  ] transport curve tcp-curve: its kernelspec's metadata.jupyter_hpc.transport asks" in step(report, "transport curve")
    assert step(report, "transport plain").startswith("[FAIL]") and "allow_plaintext_loopback" in report, report
    assert "ipc: Unix sockets" in step(report, "transport ir")
    one = subprocess.run([sys.executable, "-m", "jupyter_hpc.cli.main", "doctor", specs["plain"].name],
                         capture_output=True, text=True, timeout=120, env=dict(os.environ))  # doctor KERNEL
    assert one.returncode == 1 and step(one.stdout, "transport " + specs["plain"].name).startswith("[FAIL]"), one.stdout
    assert "allow_plaintext_loopback" in one.stdout, one.stdout

    with kernel(specs["curve"].name) as (km, client):
        assert provisioner_info(km)["remote_transport"] == "tcp" and km.curve_secretkey is not None
        assert execute(client, "print(6 * 7)")["stdout"].strip() == "42"

    km = jupyter_client.KernelManager(kernel_name=specs["plain"].name)
    with pytest.raises(TransportRefusedError) as refused:
        km.start_kernel()
    assert "allow_plaintext_loopback" in str(refused.value) and specs["plain"].name in str(refused.value)

    specs, _ = installed(site_entry(lang_sshd, remote_python, allow_plaintext_loopback=True))
    with kernel(specs["plain"].name) as (km, client):
        assert provisioner_info(km)["remote_transport"] == "tcp" and km.curve_secretkey is None
        assert execute(client, "print(6 * 7)")["stdout"].strip() == "42"

    with caplog.at_level(logging.WARNING, logger="jupyter_hpc.provisioners"):
        with kernel(specs["noshim"].name) as (km, client):
            assert provisioner_info(km)["remote_transport"] == "ipc"
    exposed = [r.getMessage() for r in caplog.records if "listens on TCP" in r.getMessage()]
    assert len(exposed) == 1 and "127.0.0.1:" in exposed[0] and "shim did not run" in exposed[0], exposed


@contextlib.contextmanager
def kernel(name: str, now: bool = True):
    km = jupyter_client.KernelManager(kernel_name=name)
    km.start_kernel()
    client = km.client()
    try:
        client.start_channels()
        client.wait_for_ready(timeout=60)
        yield km, client
    finally:
        client.stop_channels()
        km.shutdown_kernel(now=now)


def test_a_runtime_directory_too_deep_for_unix_sockets(tmp_path, remote_python):
    """HPC homes are deep: a runtime directory whose sockets would pass 107 bytes gets a kernel
    directory in TMPDIR (ipykernel binds there, privately); with TMPDIR too deep as well, the
    launch fails naming the limit. The launcher runs here as it runs on a login node."""
    from jupyter_hpc.launcher import BOOTSTRAP, launcher_stdin

    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    request = {"op": "launch", "argv": [remote_python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
               "key": "k", "runtime_dir": str(deep / "run"), "transport": "ipc", "kernel_id": "deep", "ready_timeout": 30}

    def launch(env):
        process = subprocess.Popen([sys.executable, "-c", BOOTSTRAP], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   env=env)
        process.stdin.write(launcher_stdin(request))
        process.stdin.flush()
        return process, json.loads(process.stdout.readline())

    process, answer = launch(dict(os.environ, TMPDIR="/tmp"))
    try:
        assert answer["ok"], answer
        assert answer["kernel_dir"].startswith("/tmp/jh-deep-") and len(answer["kernel_dir"]) < 40
        assert os.stat(answer["kernel_dir"]).st_mode & 0o777 == 0o700
        assert all(os.path.exists(f"{answer['ip']}-{port}") for port in answer["ports"].values())
    finally:
        process.stdin.write(b'{"op": "cleanup"}\n')
        process.stdin.close()
        process.wait(30)
    assert not os.path.exists(answer["kernel_dir"]) and not os.path.exists(os.path.dirname(answer["ip"]))

    process, answer = launch(dict(os.environ, TMPDIR=str(deep)))
    process.wait(30)
    assert not answer["ok"] and "107 bytes" in answer["error"] and "TMPDIR" in answer["error"], answer


def test_a_kernel_in_a_podman_container_runs_a_cell(lang_sshd, lang_user, remote_python, installed, tmp_path):
    """Podman from Debian, rootless, as the kernel user, through `jupyter hpc kernel create
    --container podman:IMAGE`. The image is built here from a local directory (`podman import`
    of a tiny root: /etc/passwd and mount points; no registry), and the host's /usr, /lib,
    /lib64, /bin and the cluster venv are mounted into it read-only (--container-arg). The
    test bed's cgroups are in hybrid mode, which crun refuses: the user's containers.conf picks
    runc and cgroupfs, as a site's would. Without podman here the test skips, saying so."""
    if not shutil.which("podman"):
        pytest.skip("podman is not installed on this test bed (Debian's podman package)")
    home = Path(lang_user.pw_dir)
    conf = home / ".config" / "containers" / "containers.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text('[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n')
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(home / ".config")], check=True)
    root = Path(tempfile.mkdtemp(prefix="jupyter-hpc-image-"))
    try:
        for directory in ("etc", "tmp", "usr", "lib", "lib64", "bin", "opt/jupyter-hpc-test"):
            (root / directory).mkdir(parents=True)
        (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
        os.chmod(root, 0o755)
        os.chmod(root / "tmp", 0o1777)
        image = "localhost/jupyter-hpc-kernel:31"
        built = run_as(USER, ["sh", "-c", 'cd && tar -C "$1" -c . | podman import - "$2"', "sh", str(root), image],
                       capture_output=True, text=True, timeout=120)
        assert built.returncode == 0, built.stderr
    finally:
        shutil.rmtree(root, ignore_errors=True)

    entry = site_entry(lang_sshd, remote_python)
    config = tmp_path / "config"
    config.mkdir()
    (config / "jupyter_server_config.json").write_text(json.dumps({"HPCSites": {"sites": {"cori": entry}}}))
    mounts = [f"--container-arg=--volume={path}:{path}:ro" for path in ("/usr", "/lib", "/lib64", "/bin", "/opt/jupyter-hpc-test")]
    made = subprocess.run([sys.executable, "-m", "jupyter_hpc.cli.main", "kernel", "create", "cori", "--name", "boxed",
                           "--container", f"podman:{image}", "--python", remote_python, *mounts],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ, JUPYTER_CONFIG_DIR=str(config)))
    assert made.returncode == 0, made.stdout + made.stderr
    specs, _ = installed(entry)
    argv = specs["boxed"].kernel["argv"]
    assert argv[:2] == ["podman", "run"] and "--volume={kernel_dir}:{kernel_dir}" in argv and image in argv

    with kernel(specs["boxed"].name) as (km, client):  # killed: SIGTERM through podman, then SIGKILL
        info = provisioner_info(km)
        assert info["remote_transport"] == "ipc"
        out = execute(client, "import os; print(os.path.exists('/run/.containerenv'), os.getuid())", timeout=60)
        assert out["stdout"].split() == ["True", str(lang_user.pw_uid)], out  # in the container, as the user
        assert execute(client, "print(6 * 7)")["stdout"].strip() == "42"
    deadline = time.monotonic() + 15
    while (left := run_as(USER, ["sh", "-c", "cd && podman ps -a -q"], capture_output=True, text=True,
                          timeout=60).stdout.strip()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == "", left  # --rm: the container went with the kernel
    assert not os.path.exists(info["kernel_dir"])


def test_a_deep_home_gets_its_kernel_sockets_elsewhere_over_ssh(remote_python, installed):
    """A user whose home is deep (as on HPC file systems): ~/.jupyter-hpc/run/<kernel>/k-5 would
    pass 107 bytes. Through hpc-ssh the kernel still starts on Unix sockets, its directory in
    /tmp (0700, the user's), and the cell runs."""
    name = "hpcdeep"
    home = "/home/" + "/".join(["jupyter-hpc-deep-home-" + "d" * 20] * 3)
    try:
        pwd.getpwnam(name)
    except KeyError:
        os.makedirs(os.path.dirname(home), mode=0o755, exist_ok=True)
        subprocess.run(["useradd", "-m", "-d", home, "-s", "/bin/bash", name], check=True)
    subprocess.run(["usermod", "-p", "*", name], check=True)
    assert len(os.path.join(home, ".jupyter-hpc", "run", "x" * 20, "k-5")) > 107
    with running_sshd([name], "deep") as daemon:
        entry = {"display_name": "Cori", **daemon.provisioner_config(name, remote_python=remote_python)}
        specs, _ = installed(entry)
        with kernel(specs["python3"].name) as (km, client):  # the venv's own spec
            info = provisioner_info(km)
            assert info["remote_transport"] == "ipc" and info["kernel_dir"].startswith("/tmp/jh-"), info
            assert os.stat(info["kernel_dir"]).st_uid == pwd.getpwnam(name).pw_uid
            assert execute(client, PY_CODE["who"])["stdout"].strip() == name
    assert not os.path.exists(info["kernel_dir"])
