"""The key service (`jupyter hpc keyservice`), run as its own process: sshproxy's wire format,
bounded certificates, one-time codes used once, lockouts that survive a restart, private state,
and an sshproxy-style curl client whose key logs into a real sshd that trusts only the CA."""

from __future__ import annotations

import asyncio
import base64
import grp
import json
import os
import pwd
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
    "hugo": "hugo-behind-a-fence",
    CERT_USER: "hpccert-curls-it",
}
SCOPES = {"default": {}, "staff": {"allowed_users": ["alice"], "lifetime": 60},
          "fenced": {"source_address": ["192.0.2.0/24"]}}


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jupyter_hpc.cli.main", "keyservice", *args],
        capture_output=True, text=True, timeout=60, **kwargs,
    )


class SourceAddressAdapter(requests.adapters.HTTPAdapter):
    """Connects from a given local address: all of 127/8 is this host's loopback, so
    127.0.0.2 stands in for a second client machine."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def from_address(address: str) -> requests.Session:
    session = requests.Session()
    session.mount("http://", SourceAddressAdapter(address))
    return session


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

    def create_pair(self, user: str, password: str, code: str, scope: str = "default",
                    source: str | None = None) -> requests.Response:
        """POST create_pair, from the loopback address ``source`` (e.g. 127.0.0.2) when given."""
        session = from_address(source) if source else requests
        return session.post(f"{self.url}create_pair/{scope}/", auth=(user, password + code), timeout=30)

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


def answer_of(response: requests.Response) -> tuple:
    """Everything a client sees of a refusal, less the Date header."""
    headers = {k: v for k, v in response.headers.items() if k.lower() not in ("date",)}
    return response.status_code, tuple(sorted(headers.items())), response.text


def test_a_password_cannot_be_confirmed_without_the_code(service):
    """The oracle attack: a right password with a wrong, replayed or missing code answers exactly
    as a wrong password does, and as a name the service does not know; only the private audit
    log (the control: the cases do differ) says which check failed."""
    good = code(service, "erin")
    assert service.create_pair("erin", PASSWORDS["erin"], good).status_code == 200
    bad = wrong_code(service, "erin")
    answers = {
        "password": service.create_pair("erin", "erin-wrong-password", code(service, "erin")),
        "code": service.create_pair("erin", PASSWORDS["erin"], bad),
        "replayed": service.create_pair("erin", PASSWORDS["erin"], good),
        "no-code": service.create_pair("erin", PASSWORDS["erin"], ""),
        "unknown-user": service.create_pair("nobody-here", "erin-wrong-password", bad),
    }
    for answer in answers.values():
        assert_refused(answer, "failed")
    assert len({answer_of(a) for a in answers.values()}) == 1, {k: answer_of(a) for k, a in answers.items()}
    assert "wrong password or code" in answers["code"].text
    refused = [r for r in service.audit() if r["user"] in ("erin", "nobody-here") and r["event"] == "refused"]
    assert [r["check"] for r in refused] == list(answers)
    assert [r["argon2"] for r in refused] == ["user", "user", "user", "none", "dummy"]
    for text in ((service.state / "audit.log").read_text(), service.log.read_text()):
        assert PASSWORDS["erin"] not in text and "erin-wrong-password" not in text
        assert good not in text and bad not in text


def test_a_third_party_cannot_lock_a_user_out(service):
    """The lockout attack: five wrong tries from another address lock that address out (across a
    restart), never the user at their own address."""
    attacker = "127.0.0.2"
    for _ in range(5):
        assert_refused(service.create_pair("dave", "not-daves-password", code(service, "dave"), source=attacker), "failed")
    # The sixth attempt from there is refused even with the right password and code.
    assert_refused(service.create_pair("dave", PASSWORDS["dave"], code(service, "dave"), source=attacker), "locked")
    service.restart()
    assert_refused(service.create_pair("dave", PASSWORDS["dave"], code(service, "dave"), source=attacker), "locked")
    # Dave, at his own address, logs in.
    assert service.create_pair("dave", PASSWORDS["dave"], code(service, "dave")).status_code == 200
    events = [(r["event"], r.get("reason"), r["client"]) for r in service.audit() if r["user"] == "dave"]
    assert events == [("refused", "failed", attacker)] * 4 + [("locked-out", None, attacker), ("refused", "failed", attacker)] + \
        [("refused", "locked", attacker)] * 2 + [("issued", None, "127.0.0.1")]
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
    assert refused.value.reason == "failed" and refused.value.message.startswith("Wrong password or code.")
    with pytest.raises(LoginRefused) as replayed:
        await request_certificate(url, "frank", PASSWORDS["frank"], code(service, "frank"))
    assert replayed.value.reason == "failed" and replayed.value.message == refused.value.message
    for _ in range(3):
        with pytest.raises(LoginRefused):
            await request_certificate(url, "frank", "frank-wrong", code(service, "frank"))
    with pytest.raises(AccountLocked) as locked:
        await request_certificate(url, "frank", PASSWORDS["frank"], code(service, "frank"))
    assert "Too many failed logins" in locked.value.message
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
    async with KeyService(state_dir=str(tmp_path / "state"), scopes={"default": {}, "short": {"lifetime": 30}},
                          lockout=2) as ks:
        assert ks.port > 0 and ks.url == f"http://127.0.0.1:{ks.port}/"
        otp = pyotp.TOTP(hana).now()
        url = ks.create_pair_url("short")
        # Two requests racing with one code: exactly one certificate.
        results = await asyncio.gather(*(request_certificate(url, "hana", "hana-password-1", otp) for _ in range(2)),
                                       return_exceptions=True)
        pairs = [r for r in results if isinstance(r, tuple)]
        refused = [r for r in results if isinstance(r, LoginRefused)]
        assert len(pairs) == 1 and len(refused) == 1 and refused[0].reason == "failed", results
        audit = [json.loads(line) for line in (tmp_path / "state" / "audit.log").read_text().splitlines()]
        assert [r["check"] for r in audit if r["user"] == "hana" and r["event"] == "refused"] == ["replayed"]
        info = certificate_info(pairs[0][1])
        assert abs(info.valid_before - (time.time() + 30)) <= 3 and info.ca_public_key == ks.public_key("short")
        assert "scope=short" in info.key_id
        # Ten guesses at once: five are tried, the rest meet the lock.
        guesses = await asyncio.gather(*(
            request_certificate(ks.create_pair_url(), "ivan", f"wrong-password-{n}", pyotp.TOTP(ivan).now())
            for n in range(10)), return_exceptions=True)
        assert sorted(g.reason for g in guesses) == ["failed"] * 5 + ["locked"] * 5, guesses
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


async def post_from(url: str, user: str, secret: str, *, source: str = "127.0.0.1", forwarded_for: str = ""):
    """POST create_pair from the loopback address ``source``; (status, reason header, body)."""
    from tornado.httpclient import AsyncHTTPClient, HTTPRequest

    token = base64.b64encode(f"{user}:{secret}".encode()).decode()
    headers = {"Authorization": f"Basic {token}", **({"X-Forwarded-For": forwarded_for} if forwarded_for else {})}
    client = AsyncHTTPClient(force_instance=True)
    try:
        answer = await client.fetch(HTTPRequest(url, method="POST", body=b"", headers=headers, network_interface=source,
                                                request_timeout=60), raise_error=False)
    finally:
        client.close()
    return answer.code, answer.headers.get("X-Keyservice-Reason"), (answer.body or b"").decode()


async def test_unknown_names_are_checked_like_known_ones(tmp_path):
    """Timing equivalence shown by the code path, not the clock: a wrong password for a known name
    and any password for an unknown one each cost one argon2 verification with the same cost
    parameters (the users' own, here not the library's defaults), then the same answer; after
    five failures both meet the same lock."""
    from argon2 import PasswordHasher, extract_parameters

    state = tmp_path / "state"
    secret = UserStore(state, hasher=PasswordHasher(time_cost=2, memory_cost=16384, parallelism=1)).add_user(
        "mona", "mona-password-1")
    async with KeyService(state_dir=str(state), scopes={"default": {}}) as ks:
        verified = []

        class CountingHasher:
            """The store's own hasher, noting each hash it verifies against."""

            def __init__(self, real):
                self.real = real

            def verify(self, hash_, password):
                verified.append(hash_)
                return self.real.verify(hash_, password)

        ks.users.hasher = CountingHasher(ks.users.hasher)
        url = ks.create_pair_url()
        otp = pyotp.TOTP(secret).now()
        known = await post_from(url, "mona", "mona-wrong-pw" + otp)
        unknown = await post_from(url, "nemo", "mona-wrong-pw" + otp)
        assert known == unknown and known[:2] == (401, "failed"), (known, unknown)
        mona_hash = json.loads((state / "users.json").read_text())["users"]["mona"]["password_hash"]
        assert len(verified) == 2 and verified[0] == mona_hash and verified[1] != mona_hash
        assert extract_parameters(verified[1]) == extract_parameters(mona_hash)  # the same cost
        assert extract_parameters(mona_hash) != extract_parameters(PasswordHasher().hash("x"))  # not the default's
        audit = [json.loads(line) for line in (state / "audit.log").read_text().splitlines()]
        assert [(r["user"], r["check"], r["argon2"]) for r in audit] == [
            ("mona", "password", "user"), ("nemo", "unknown-user", "dummy")]
        for name in ("mona", "nemo"):
            for _ in range(4):
                await post_from(url, name, "mona-wrong-pw" + otp)
        assert await post_from(url, "mona", "mona-password-1" + otp) == await post_from(url, "nemo", "x" * 9 + otp)
        assert (await post_from(url, "nemo", "x" * 9 + otp))[1] == "locked"
        assert len(verified) == 10  # the locked answers verified nothing, for either name


async def test_lockouts_back_off_per_user_and_address_and_trust_only_the_named_proxy(tmp_path):
    """A third party's failures lock only the third party's address, each lock twice as long as
    the one before; X-Forwarded-For counts only from a trusted proxy (the hub)."""
    store = UserStore(tmp_path / "state")
    secret = store.add_user("olga", "olga-password-1")
    async with KeyService(state_dir=str(tmp_path / "state"), scopes={"default": {}}, lockout=1,
                          trusted_proxies=["127.0.0.3"]) as ks:
        url = ks.create_pair_url()
        otp = pyotp.TOTP(secret).now
        ends = []
        for round_ in range(2):
            for _ in range(5):
                assert (await post_from(url, "olga", "wrong-password" + otp(), source="127.0.0.2"))[1] == "failed"
            started = time.time()
            assert (await post_from(url, "olga", "olga-password-1" + otp(), source="127.0.0.2"))[1] == "locked"
            until = [json.loads(line) for line in (tmp_path / "state" / "audit.log").read_text().splitlines()
                     if '"locked-out"' in line][-1]["until"]
            ends.append(until - started)
            await asyncio.sleep(until + 1 - time.time() + 0.1)  # the audit's end is in whole seconds, rounded down
        assert ends[0] <= 1.0 < ends[1] <= 2.0, ends  # 1 s, then 2 s
        # An untrusted client cannot pick its address with X-Forwarded-For.
        for _ in range(5):
            await post_from(url, "olga", "wrong-password" + otp(), source="127.0.0.2", forwarded_for="198.51.100.7")
        assert (await post_from(url, "olga", "x" * 9 + otp(), source="127.0.0.2", forwarded_for="203.0.113.9"))[1] == "locked"
        # The trusted proxy's header names the client: its locked-out browser is 192.0.2.66, not olga's.
        for _ in range(5):
            await post_from(url, "olga", "wrong-password" + otp(), source="127.0.0.3", forwarded_for="192.0.2.66")
        assert (await post_from(url, "olga", "x" * 9 + otp(), source="127.0.0.3", forwarded_for="192.0.2.66"))[1] == "locked"
        status, _, body = await post_from(url, "olga", "olga-password-1" + otp(), source="127.0.0.3", forwarded_for="192.0.2.7")
        assert status == 200 and "PRIVATE KEY" in body
        audit = [json.loads(line) for line in (tmp_path / "state" / "audit.log").read_text().splitlines()]
        assert audit[-1]["event"] == "issued" and audit[-1]["client"] == "192.0.2.7"


async def test_concurrent_password_checks_are_bounded_per_address_and_in_all(tmp_path):
    """A flood from one address: one check of it runs at a time, two more wait, the rest get 429
    at once; another address's logins wait their turn and are not turned away."""
    UserStore(tmp_path / "state")
    async with KeyService(state_dir=str(tmp_path / "state"), scopes={"default": {}}, max_checks=1,
                          max_checks_per_address=1, max_waiting_per_address=2) as ks:
        url = ks.create_pair_url()
        async with ks.checks.slot("192.0.2.1"):  # the one check slot is busy: everything queues
            flood = [asyncio.ensure_future(post_from(url, f"u{n}", "guess-password123456", source="127.0.0.2"))
                     for n in range(8)]
            others = [asyncio.ensure_future(post_from(url, f"v{n}", "guess-password123456", source="127.0.0.4"))
                      for n in range(2)]
            done, _ = await asyncio.wait(flood, timeout=30, return_when=asyncio.FIRST_COMPLETED)
            while len([f for f in flood if f.done()]) < 5:
                await asyncio.sleep(0.05)
            assert sorted(f.result()[0] for f in flood if f.done()) == [429] * 5
            assert not any(f.done() for f in others)
        results = await asyncio.gather(*flood, *others)
        assert sorted(r[0] for r in results) == [401] * 5 + [429] * 5
        assert [r[0] for r in results[-2:]] == [401, 401]
        assert ks.checks.peak == 1 and ks.checks.peak_per_address == 1


def test_certificates_permit_only_a_pty_and_port_forwarding(service):
    """ssh-keygen -L: no agent or X11 forwarding, no ~/.ssh/rc; a scope's source-address is in the
    certificate. The control: a certificate as OpenSSH and asyncssh make it by default has them."""
    answer = service.create_pair("hugo", PASSWORDS["hugo"], code(service, "hugo"), scope="fenced")
    assert answer.status_code == 200, answer.text
    _, cert_text = split_pair(answer.text)
    listed = subprocess.run(["ssh-keygen", "-L", "-f", "-"], input=cert_text, capture_output=True, text=True,
                            check=True).stdout
    extensions = listed.split("Extensions:")[1].split()
    assert extensions == ["permit-port-forwarding", "permit-pty"], listed
    assert "source-address 192.0.2.0/24" in listed.split("Critical Options:")[1], listed
    control_ca = asyncssh.generate_private_key("ssh-ed25519")
    control = control_ca.generate_user_certificate(asyncssh.generate_private_key("ssh-ed25519"), "control",
                                                   principals=["alice"], valid_before=time.time() + 60)
    listed = subprocess.run(["ssh-keygen", "-L", "-f", "-"], input=control.export_certificate().decode(),
                            capture_output=True, text=True, check=True).stdout
    assert {"permit-agent-forwarding", "permit-X11-forwarding", "permit-user-rc"} <= set(listed.split()), listed


def test_each_scope_has_its_own_ca_and_none_is_made_up(service, tmp_path):
    keys = {scope: requests.get(f"{service.url}get_ca_pubkey/{scope}/", timeout=10).text.strip() for scope in SCOPES}
    assert len(set(keys.values())) == len(SCOPES), keys
    for scope, name in (("default", "ca_key"), ("staff", "ca_key.staff"), ("fenced", "ca_key.fenced")):
        ca = asyncssh.import_private_key((service.state / name).read_bytes())
        assert keys[scope].split() == ca.export_public_key().decode().split()[:2]
        assert stat.S_IMODE((service.state / name).stat().st_mode) == 0o600
    refused = cli("--port", "0", "--state-dir", str(tmp_path / "noscope"))
    assert refused.returncode == 1 and "no scope" in refused.stderr and "--scope" in refused.stderr, refused.stderr
    assert not (tmp_path / "noscope" / "ca_key").exists()


async def test_on_a_unix_socket_no_other_user_connects_or_binds_first(tmp_path):
    """The key service on a Unix socket: the hub (SSHCertAuthenticator) logs in through it; another
    unix user of the host can neither connect to it nor make the socket first. The control: the
    same user connects to a loopback port, which anyone could also have bound before the service."""
    from jupyter_hpc.hub.authenticator import SSHCertAuthenticator
    from testbed.users import NEIGHBOUR_USER, ensure_user, run_as

    ensure_user(NEIGHBOUR_USER)
    run_dir = Path(tempfile.mkdtemp(prefix="jupyter-hpc-ks-run-", dir="/var/tmp"))
    run_dir.chmod(0o755)  # others may pass and look: only the socket's own mode keeps them out
    sock = run_dir / "keyservice.sock"
    secret = UserStore(tmp_path / "state").add_user("pia", "pia-password-1")
    probe = ("import socket, sys; s = socket.socket(socket.AF_UNIX if sys.argv[1].startswith('/') else socket.AF_INET);"
             "a = sys.argv[1] if sys.argv[1].startswith('/') else ('127.0.0.1', int(sys.argv[1]));"
             "\ntry:\n s.connect(a); print('connected')\nexcept OSError as e: print(type(e).__name__)")
    try:
        async with KeyService(state_dir=str(tmp_path / "state"), scopes={"default": {}}, unix_socket=str(sock)) as ks:
            assert ks.url == f"http+unix://{str(sock).replace('/', '%2F')}/"
            assert stat.S_IMODE(sock.lstat().st_mode) == 0o600
            authenticator = SSHCertAuthenticator(keyservice_url=ks.create_pair_url())
            login = await authenticator.authenticate(None, {"username": "pia", "password": "pia-password-1",
                                                            "otp": pyotp.TOTP(secret).now()})
            assert login["name"] == "pia" and "ssh_certificate" in login["auth_state"]
            neighbour = await asyncio.to_thread(run_as, NEIGHBOUR_USER, ["python3", "-c", probe, str(sock)],
                                                capture_output=True, text=True)
            assert neighbour.stdout.strip() == "PermissionError", neighbour
            squat = await asyncio.to_thread(run_as, NEIGHBOUR_USER, ["python3", "-c",
                                            f"import socket; socket.socket(socket.AF_UNIX).bind({str(run_dir / 'x.sock')!r})"],
                                            capture_output=True, text=True)
            assert squat.returncode != 0 and "Permission denied" in squat.stderr
        # A hub running as another user reaches it through the socket's group (mode 0660).
        group = grp.getgrgid(pwd.getpwnam(NEIGHBOUR_USER).pw_gid).gr_name
        async with KeyService(state_dir=str(tmp_path / "state"), scopes={"default": {}}, unix_socket=str(sock),
                              unix_socket_mode=0o660, unix_socket_group=group):
            assert sock.lstat().st_gid == pwd.getpwnam(NEIGHBOUR_USER).pw_gid
            member = await asyncio.to_thread(run_as, NEIGHBOUR_USER, ["python3", "-c", probe, str(sock)],
                                             capture_output=True, text=True)
            assert member.stdout.strip() == "connected", member
        with pytest.raises(Exception, match="lets everyone"):
            KeyService(state_dir=str(tmp_path / "state"), unix_socket=str(sock), unix_socket_mode=0o666)
        async with KeyService(state_dir=str(tmp_path / "state"), scopes={"default": {}}) as tcp:
            control = await asyncio.to_thread(run_as, NEIGHBOUR_USER, ["python3", "-c", probe, str(tcp.port)],
                                              capture_output=True, text=True)
            assert control.stdout.strip() == "connected", control
        # A socket directory others may write in is refused: the socket could be swapped.
        with pytest.raises(Exception, match="can be changed by others"):
            await KeyService(state_dir=str(tmp_path / "state"), scopes={"default": {}},
                             unix_socket="/tmp/jupyter-hpc-ks.sock").start()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


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


def test_sshd_honours_a_scopes_ca_and_source_address(tmp_path):
    """What the certificate says, sshd enforces: a login node that trusts only the default
    scope's CA refuses another scope's certificate for the same user, and a certificate whose
    source-address is elsewhere is refused from here while one without it logs in."""
    from jupyter_hpc.keyservice import CertificateAuthority

    ensure_user(CERT_USER)
    state = tmp_path / "state"
    default, staff = CertificateAuthority(state, "default"), CertificateAuthority(state, "staff")
    root = Path(tempfile.mkdtemp(prefix="jupyter-hpc-sshd-scope-"))
    (root / "user_ca.pub").write_text(default.public_key + "\n")
    daemon = SSHDaemon(root, users=[CERT_USER], options={"TrustedUserCAKeys": str(root / "user_ca.pub"),
                                                          "AuthorizedKeysFile": "none"}).start()
    try:
        def login_with(pair, name: str) -> subprocess.CompletedProcess:
            key = write_private(tmp_path / name, pair.private_key)
            write_private(tmp_path / f"{name}-cert.pub", pair.certificate)
            return ssh(daemon, key)

        assert login_with(default.issue(CERT_USER, "default", "test", 60), "plain").stdout.strip() == CERT_USER
        fenced = default.issue(CERT_USER, "default", "test", 60, source_address=["192.0.2.0/24"])
        assert login_with(fenced, "fenced").returncode == 255
        assert login_with(staff.issue(CERT_USER, "staff", "test", 60), "staff").returncode == 255
        log = daemon.log.read_text()
        assert "not from a permitted source address (127.0.0.1)" in log, log[-2000:]
    finally:
        daemon.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_plain_http_only_on_loopback_and_tls_when_given_a_certificate(service, tmp_path):
    refused = cli("--ip", "0.0.0.0", "--port", "0", "--state-dir", str(tmp_path / "s1"))
    assert refused.returncode == 1 and "127.0.0.1" in refused.stderr and "--certfile" in refused.stderr
    assert "listening" not in refused.stdout
    cert, key = tmp_path / "tls.pem", tmp_path / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    tls = ServiceProcess(tmp_path / "s2", tmp_path / "tls.log", "--scope", "default",
                         "--certfile", str(cert), "--keyfile", str(key)).start()
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
