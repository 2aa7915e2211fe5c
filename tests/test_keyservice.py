"""The key service (`jupyter hpc keyservice`), run as its own process: sshproxy's wire format,
bounded certificates, one-time codes used once, lockouts that survive a restart, private state,
and an sshproxy-style curl client whose key logs into a real sshd that trusts only the CA."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncssh
import pyotp
import pytest
import requests

from jupyter_hpc.keyservice import (
    AccessDenied,
    AccountLocked,
    KeyService,
    KeyServiceUnavailable,
    LoginRefused,
    UnknownScope,
    UserStore,
    certificate_info,
    request_certificate,
    split_pair,
)
from testbed.sshd import SSHDaemon, free_port, write_private
from testbed.users import ensure_user

CERT_USER = "hpccert"  # a unix account of this test's own: its only way in is a certificate
LIFETIME = 120
PASSWORDS = {
    "alice": "alice-correct-horse",
    "erin": "erin-battery-staple",
    "dave": "dave-locked-out-soon",
    "carol": "carol-not-on-staff",
    "frank": "frank-uses-python",
    "gina": "gina-not-on-staff-either",
    CERT_USER: "hpccert-curls-it",
}
SCOPES = {"default": {}, "staff": {"allowed_users": ["alice"], "lifetime": 60}}


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jupyter_hpc.cli.main", "keyservice", *args],
        capture_output=True, text=True, timeout=60, **kwargs,
    )


class ServiceProcess:
    """`jupyter hpc keyservice` in a subprocess; its stdout's first line gives the URL."""

    def __init__(self, state: Path, log: Path, *extra: str) -> None:
        self.state, self.log, self.extra = state, log, extra
        self.process: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> "ServiceProcess":
        argv = [sys.executable, "-m", "jupyter_hpc.cli.main", "keyservice", "--port", "0",
                "--state-dir", str(self.state), "--lifetime", str(LIFETIME), *self.extra]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True)
        line = self.process.stdout.readline()
        assert "listening on" in line, f"no URL from the key service: {line!r}; log: {self.log.read_text()}"
        self.url = line.split("listening on", 1)[1].strip()
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def create_pair(self, user: str, password: str, code: str, scope: str = "default") -> requests.Response:
        return requests.post(f"{self.url}create_pair/{scope}/", auth=(user, password + code), timeout=30)

    def audit(self) -> list[dict]:
        return [json.loads(line) for line in (self.state / "audit.log").read_text().splitlines()]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    root = tmp_path_factory.mktemp("keyservice")
    state = root / "state"
    secrets = {}
    for name, password in PASSWORDS.items():
        added = cli("adduser", name, "--state-dir", str(state), "--password-stdin", input=password + "\n")
        assert added.returncode == 0, added.stderr
        uri = added.stdout.strip()
        assert uri.startswith("otpauth://totp/") and f"{name}?" in uri
        secrets[name] = pyotp.parse_uri(uri).secret
    write_private(state / "scopes.json", json.dumps(SCOPES))
    running = ServiceProcess(state, root / "service.log").start()
    running.secrets = secrets
    running.issued_keys = []
    yield running
    running.stop()


def code(service, user: str) -> str:
    return pyotp.TOTP(service.secrets[user]).now()


def wrong_code(service, user: str) -> str:
    totp = pyotp.TOTP(service.secrets[user])
    near = {totp.at(time.time() + 30 * offset) for offset in (-2, -1, 0, 1, 2)}
    return next(c for c in (f"{n:06d}" for n in range(123456, 999999, 7919)) if c not in near)


def test_status_and_the_ca_public_key(service):
    assert requests.get(f"{service.url}status.html", timeout=10).text == "OK"
    answer = requests.get(f"{service.url}get_ca_pubkey/default/", timeout=10)
    ca = asyncssh.import_private_key((service.state / "ca_key").read_bytes())
    assert answer.status_code == 200 and answer.text.split() == ca.export_public_key().decode().split()[:2]
    assert answer.text.startswith("ssh-ed25519 ")
    assert requests.get(f"{service.url}get_ca_pubkey/nope/", timeout=10).status_code == 404


def test_create_pair_gives_a_key_and_a_bounded_certificate(service):
    before = time.time()
    answer = service.create_pair("alice", PASSWORDS["alice"], code(service, "alice"))
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain")
    key_text, cert_text = split_pair(answer.text)
    assert key_text.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert cert_text.startswith("ssh-ed25519-cert-v01@openssh.com ")
    service.issued_keys.append(key_text)
    key = asyncssh.import_private_key(key_text)
    cert = asyncssh.import_certificate(cert_text)
    assert cert.key.public_data == key.convert_to_public().public_data
    info = certificate_info(cert_text)
    assert info.principals == ["alice"]
    assert before - 61 <= info.valid_after <= time.time()
    assert abs(info.valid_before - (before + LIFETIME)) <= 5
    assert info.ca_public_key == requests.get(f"{service.url}get_ca_pubkey/default/", timeout=10).text.strip()
    assert info.key_id.startswith("user=alice scope=default from=127.0.0.1 at=20")
    assert f"serial={info.serial}" in info.key_id
    # OpenSSH reads the same certificate the same way.
    listed = subprocess.run(["ssh-keygen", "-L", "-f", "-"], input=cert_text, capture_output=True, text=True, check=True)
    assert f'Key ID: "{info.key_id}"' in listed.stdout and f"Serial: {info.serial}" in listed.stdout
    issued = [r for r in service.audit() if r["event"] == "issued" and r["user"] == "alice"]
    assert issued[-1]["serial"] == info.serial and issued[-1]["client"] == "127.0.0.1"


def assert_refused(answer: requests.Response, reason: str) -> None:
    assert answer.status_code == 401, answer.text
    assert answer.headers["WWW-Authenticate"].startswith("Basic")
    assert answer.headers["X-Keyservice-Reason"] == reason
    assert answer.text.startswith("Authentication failed.")


def test_wrong_password_wrong_code_and_a_replayed_code_are_refused_and_audited(service):
    good = code(service, "erin")
    assert service.create_pair("erin", PASSWORDS["erin"], good).status_code == 200
    assert_refused(service.create_pair("erin", "erin-wrong-password", code(service, "erin")), "password")
    bad = wrong_code(service, "erin")
    assert_refused(service.create_pair("erin", PASSWORDS["erin"], bad), "code")
    assert_refused(service.create_pair("erin", PASSWORDS["erin"], good), "replayed")
    assert_refused(service.create_pair("erin", PASSWORDS["erin"], ""), "code")
    reasons = [r["reason"] for r in service.audit() if r["user"] == "erin" and r["event"] == "refused"]
    assert reasons == ["password", "code", "replayed", "code"]
    for text in ((service.state / "audit.log").read_text(), service.log.read_text()):
        assert PASSWORDS["erin"] not in text and "erin-wrong-password" not in text
        assert good not in text and bad not in text


def test_five_failures_lock_the_user_out_across_a_restart(service):
    for _ in range(5):
        assert_refused(service.create_pair("dave", "not-daves-password", code(service, "dave")), "password")
    # The sixth attempt is refused even with the right password and code.
    assert_refused(service.create_pair("dave", PASSWORDS["dave"], code(service, "dave")), "locked")
    service.restart()
    assert_refused(service.create_pair("dave", PASSWORDS["dave"], code(service, "dave")), "locked")
    events = [(r["event"], r.get("reason")) for r in service.audit() if r["user"] == "dave"]
    assert events == [("refused", "password")] * 4 + [("locked-out", None), ("refused", "password")] + \
        [("refused", "locked")] * 2
    # Other users are not affected.
    assert requests.get(f"{service.url}status.html", timeout=10).text == "OK"


def test_unknown_scope_is_404_and_a_user_outside_a_scope_403(service):
    answer = service.create_pair("carol", PASSWORDS["carol"], "000000", scope="no-such-scope")
    assert answer.status_code == 404 and "no-such-scope" in answer.text
    answer = service.create_pair("carol", PASSWORDS["carol"], code(service, "carol"), scope="staff")
    assert answer.status_code == 403 and "carol" in answer.text
    refused = [r for r in service.audit() if r["user"] in ("carol", None) and r["event"] == "refused"]
    assert [r["reason"] for r in refused][-2:] == ["unknown-scope", "not-allowed"]


async def test_the_python_client_splits_pairs_and_names_each_refusal(service):
    url = f"{service.url}create_pair/default/"
    key_text, cert_text = await request_certificate(url, "frank", PASSWORDS["frank"], code(service, "frank"))
    service.issued_keys.append(key_text)
    assert certificate_info(cert_text).principals == ["frank"]
    asyncssh.import_private_key(key_text)
    with pytest.raises(LoginRefused) as refused:
        await request_certificate(url, "frank", "frank-wrong", code(service, "frank"))
    assert refused.value.reason == "password" and "password" in refused.value.message
    with pytest.raises(LoginRefused) as refused:
        await request_certificate(url, "frank", PASSWORDS["frank"], code(service, "frank"))
    assert refused.value.reason == "replayed" and "already used" in refused.value.message
    with pytest.raises(AccountLocked) as locked:
        await request_certificate(url, "dave", PASSWORDS["dave"], code(service, "dave"))
    assert "locked" in locked.value.message
    with pytest.raises(UnknownScope):
        await request_certificate(f"{service.url}create_pair/gone/", "frank", PASSWORDS["frank"], "000000")
    with pytest.raises(AccessDenied):
        await request_certificate(f"{service.url}create_pair/staff/", "gina", PASSWORDS["gina"], code(service, "gina"))
    with pytest.raises(KeyServiceUnavailable) as unreachable:
        await request_certificate(f"http://127.0.0.1:{free_port()}/create_pair/default/", "frank", "x", "000000")
    assert "cannot be reached" in unreachable.value.message


async def test_in_process_service_one_code_once_scope_lifetime_and_lock_expiry(tmp_path):
    """The Python API the hub uses: KeyService in this loop, UserStore, request_certificate."""
    store = UserStore(tmp_path / "state")
    hana, ivan = store.add_user("hana", "hana-password-1"), store.add_user("ivan", "ivan-password-1")
    async with KeyService(state_dir=str(tmp_path / "state"), scopes={"short": {"lifetime": 30}}, lockout=2) as ks:
        assert ks.port > 0 and ks.url == f"http://127.0.0.1:{ks.port}/"
        otp = pyotp.TOTP(hana).now()
        url = ks.create_pair_url("short")
        # Two requests racing with one code: exactly one certificate.
        results = await asyncio.gather(*(request_certificate(url, "hana", "hana-password-1", otp) for _ in range(2)),
                                       return_exceptions=True)
        pairs = [r for r in results if isinstance(r, tuple)]
        refused = [r for r in results if isinstance(r, LoginRefused)]
        assert len(pairs) == 1 and len(refused) == 1 and refused[0].reason == "replayed", results
        info = certificate_info(pairs[0][1])
        assert abs(info.valid_before - (time.time() + 30)) <= 3 and info.ca_public_key == ks.ca_public_key
        assert "scope=short" in info.key_id
        # Ten guesses at once: five are tried, the rest meet the lock.
        guesses = await asyncio.gather(*(
            request_certificate(ks.create_pair_url(), "ivan", f"wrong-password-{n}", pyotp.TOTP(ivan).now())
            for n in range(10)), return_exceptions=True)
        assert sorted(g.reason for g in guesses) == ["locked"] * 5 + ["password"] * 5, guesses
        with pytest.raises(AccountLocked):
            await request_certificate(ks.create_pair_url(), "ivan", "ivan-password-1", pyotp.TOTP(ivan).now())
        await asyncio.sleep(2.2)  # the lock (lockout=2 s) ends
        _, cert_text = await request_certificate(ks.create_pair_url(), "ivan", "ivan-password-1", pyotp.TOTP(ivan).now())
        assert certificate_info(cert_text).principals == ["ivan"]
        assert certificate_info(cert_text).valid_before - time.time() > 12 * 3600 - 10
        # A user added while the service runs can log in at once (users.json is re-read).
        late = cli("adduser", "lena", "--state-dir", str(tmp_path / "state"), "--password-stdin",
                   input="lena-came-later\n")
        secret = pyotp.parse_uri(late.stdout.strip()).secret
        _, cert_text = await request_certificate(ks.create_pair_url(), "lena", "lena-came-later", pyotp.TOTP(secret).now())
        assert certificate_info(cert_text).principals == ["lena"]


def test_split_pair_reads_sshproxy_shaped_answers(tmp_path):
    """sshproxy answers with ssh-keygen's RSA PEM key and a certificate without a newline."""
    ca, key = tmp_path / "ca", tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ca)], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-m", "PEM", "-N", "", "-C", "alice serial:1", "-f", str(key)], check=True)
    subprocess.run(["ssh-keygen", "-q", "-s", str(ca), "-z", "1", "-I", "user_alice", "-n", "alice", "-V", "+60",
                    str(key) + ".pub"], check=True)
    body = key.read_text() + (tmp_path / "key-cert.pub").read_text().rstrip()
    key_text, cert_text = split_pair(body)
    assert key_text == key.read_text() and key_text.startswith("-----BEGIN RSA PRIVATE KEY-----")
    info = certificate_info(cert_text)
    assert info.principals == ["alice"] and info.key_id == "user_alice" and info.serial == 1


def test_adduser_prompts_for_the_password_twice(tmp_path):
    import pexpect

    state = tmp_path / "state"
    child = pexpect.spawn(sys.executable, ["-m", "jupyter_hpc.cli.main", "keyservice", "adduser", "judy",
                                           "--state-dir", str(state)], encoding="utf-8", timeout=60)
    child.expect("Password for judy: ")
    child.sendline("judy-types-it-in")
    child.expect("Again: ")
    child.sendline("judy-types-it-in")
    child.expect(r"otpauth://totp/jupyter-hpc:judy\?secret=[A-Z2-7]+&issuer=jupyter-hpc")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert UserStore(state).check_password("judy", "judy-types-it-in")
    # Typed differently the second time: nothing is added.
    child = pexpect.spawn(sys.executable, ["-m", "jupyter_hpc.cli.main", "keyservice", "adduser", "kim",
                                           "--state-dir", str(state)], encoding="utf-8", timeout=60)
    child.expect("Password for kim: ")
    child.sendline("kim-password-one")
    child.expect("Again: ")
    child.sendline("kim-password-two")
    child.expect("the passwords differ")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1 and "kim" not in UserStore(state)
    bad = cli("adduser", "kim:x", "--state-dir", str(state), "--password-stdin", input="long-enough-password\n")
    assert bad.returncode == 1 and "not a usable user name" in bad.stderr and "Traceback" not in bad.stderr
    short = cli("adduser", "kim", "--state-dir", str(state), "--password-stdin", input="short\n")
    assert short.returncode == 1 and "at least 8" in short.stderr
    again = cli("adduser", "judy", "--state-dir", str(state), "--password-stdin", input="long-enough-password\n")
    assert again.returncode == 1 and "already a user" in again.stderr


def test_state_dir_and_files_are_private(service):
    assert stat.S_IMODE(service.state.stat().st_mode) == 0o700
    for name in ("ca_key", "users.json", "logins.json", "audit.log", "scopes.json"):
        assert stat.S_IMODE((service.state / name).stat().st_mode) == 0o600, name
    users = json.loads((service.state / "users.json").read_text())["users"]
    assert users["alice"]["password_hash"].startswith("$argon2id$")
    assert PASSWORDS["alice"] not in (service.state / "users.json").read_text()


@pytest.fixture
def cert_sshd(service):
    """An sshd whose only way in for the test user is a certificate from the key service's CA."""
    ensure_user(CERT_USER)
    root = Path(tempfile.mkdtemp(prefix="jupyter-hpc-sshd-cert-"))
    ca_pub = root / "user_ca.pub"
    ca_pub.write_text(requests.get(f"{service.url}get_ca_pubkey/default/", timeout=10).text)
    daemon = SSHDaemon(root, users=[CERT_USER],
                       options={"TrustedUserCAKeys": str(ca_pub), "AuthorizedKeysFile": "none"}).start()
    yield daemon
    daemon.stop()
    shutil.rmtree(root, ignore_errors=True)


def ssh(daemon: SSHDaemon, key: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ssh", "-F", "none", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={daemon.known_hosts}", *options,
         "-p", str(daemon.port), f"{CERT_USER}@{daemon.host}", "id", "-un"],
        capture_output=True, text=True, timeout=30,
    )


def test_an_sshproxy_style_curl_client_logs_into_sshd(service, cert_sshd, tmp_path):
    # As NERSC's sshproxy.sh does: curl with -u given on stdin (-K -), so the password is in no argv.
    body = tmp_path / "nersc"
    otp = code(service, CERT_USER)
    fd = os.open(body, os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    curl = subprocess.run(
        ["curl", "-s", "-S", "-X", "POST", f"{service.url}create_pair/default/", "-o", str(body), "-K", "-"],
        input=f'-u "{CERT_USER}:{PASSWORDS[CERT_USER]}{otp}"\n', capture_output=True, text=True, timeout=30,
    )
    assert curl.returncode == 0, curl.stderr
    lines = body.read_text().splitlines()
    cert_lines = [line for line in lines if line.split(" ", 1)[0].endswith("-cert-v01@openssh.com")]
    assert len(cert_lines) == 1
    write_private(tmp_path / "nersc-cert.pub", cert_lines[0] + "\n")
    service.issued_keys.append(body.read_text().split(cert_lines[0])[0])
    login = ssh(cert_sshd, body)
    assert login.returncode == 0 and login.stdout.strip() == CERT_USER, login.stderr
    assert f"ID user={CERT_USER} scope=default from=127.0.0.1" in cert_sshd.log.read_text()
    # The same key without its certificate, and sshd's own authorized key, get nowhere.
    bare = write_private(tmp_path / "bare", body.read_text().split(cert_lines[0])[0])
    assert ssh(cert_sshd, bare).returncode == 255
    assert ssh(cert_sshd, cert_sshd.client_key).returncode == 255


def test_plain_http_only_on_loopback_and_tls_when_given_a_certificate(service, tmp_path):
    refused = cli("--ip", "0.0.0.0", "--port", "0", "--state-dir", str(tmp_path / "s1"))
    assert refused.returncode == 1 and "127.0.0.1" in refused.stderr and "--certfile" in refused.stderr
    assert "listening" not in refused.stdout
    cert, key = tmp_path / "tls.pem", tmp_path / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    tls = ServiceProcess(tmp_path / "s2", tmp_path / "tls.log", "--certfile", str(cert), "--keyfile", str(key)).start()
    try:
        assert tls.url.startswith("https://127.0.0.1:")
        assert requests.get(f"{tls.url}status.html", verify=str(cert), timeout=10).text == "OK"
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{tls.url}status.html", timeout=10)  # not trusted without the certificate
    finally:
        tls.stop()


def test_no_secret_in_the_services_argv_environment_or_log(service):
    """Last: looks at everything the other tests left in the service's log and audit."""
    ca_key = (service.state / "ca_key").read_text()
    secrets = [line for line in ca_key.splitlines() if "PRIVATE KEY" not in line and len(line) > 20]
    for key_text in service.issued_keys:
        secrets += [line for line in key_text.splitlines() if "PRIVATE KEY" not in line and len(line) > 20]
    secrets += list(PASSWORDS.values()) + list(service.secrets.values())
    assert len(service.issued_keys) >= 3
    pid = service.process.pid
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
    environment = Path(f"/proc/{pid}/environ").read_bytes().decode()
    texts = {"argv": argv, "environment": environment, "log": service.log.read_text(),
             "audit": (service.state / "audit.log").read_text()}
    assert "issued" in texts["audit"] and "refused" in texts["log"]
    for where, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"a secret is in the key service's {where}"
