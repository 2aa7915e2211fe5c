"""The SSH certificate authorities: one CA key per scope in the state dir signs short-lived user keys.

One key per scope, so a login node that trusts the ``staff`` scope's CA accepts nothing a
``students`` certificate could do, and losing one scope's key exposes that scope alone. The
``default`` scope keeps the file name ``ca_key`` (existing sshd configurations trust it); any
other scope's key is ``ca_key.<scope>``.

Each certificate is bounded: a validity window of the scope's lifetime (never OpenSSH's
"forever" default, the hole in sshproxy's sample ``jupyter`` scope), one principal (the user
name, so a certificate logs in as nobody else), a random serial and a key id that says who,
which scope, from where and when, so sshd's log line ("… ID <key id> (serial N) CA …") reads
like the key service's audit line for the same login.

A certificate permits only what a notebook needs: a PTY (terminals) and port forwarding (the
kernel's channels, the jump to a compute node). OpenSSH's defaults also permit agent and X11
forwarding and ``~/.ssh/rc``; each is a way from a compromised login node back to the user's
other keys or display, so none is granted. A scope's ``source_address`` is written in too.
"""

from __future__ import annotations

import base64
import secrets
import struct
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..ssh.quiet_import import asyncssh

from .state import StateDirError, ensure_state_dir, read_private, write_private

CA_KEY_FILE = "ca_key"
KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256")
# Signed this long before "now", so a login node whose clock is a little behind still accepts.
CLOCK_SKEW = 60


def ca_key_file(scope: str) -> str:
    """The file of ``scope``'s CA key in the state dir: ``ca_key`` for ``default``, else ``ca_key.<scope>``."""
    return CA_KEY_FILE if scope == "default" else f"{CA_KEY_FILE}.{scope}"


@dataclass(frozen=True)
class IssuedPair:
    """A new key and its certificate, as text, plus what the audit log records about them."""

    private_key: str
    certificate: str
    serial: int
    key_id: str
    valid_after: int
    valid_before: int

    @property
    def body(self) -> str:
        """The ``create_pair`` response: the private key followed by the certificate line."""
        return self.private_key + self.certificate


class CertificateAuthority:
    """Loads a scope's CA key from the state dir (0600), creating an Ed25519 one on first use."""

    def __init__(self, state_dir: Path, scope: str = "default") -> None:
        self.scope = scope
        self.path = ensure_state_dir(state_dir) / ca_key_file(scope)
        data = read_private(self.path)
        if data is None:
            key = asyncssh.generate_private_key("ssh-ed25519", comment=f"jupyter-hpc keyservice CA ({scope})")
            write_private(self.path, key.export_private_key("openssh"))
            self.created = True
        else:
            try:
                key = asyncssh.import_private_key(data)
            except (asyncssh.KeyImportError, ValueError) as error:
                raise StateDirError(
                    f"The CA key {self.path} cannot be read ({error}). Restore it from a backup; "
                    f"removing it makes a new CA that no sshd trusts yet."
                ) from None
            self.created = False
        self._key = key
        # Algorithm and base64 only: the line sshd's TrustedUserCAKeys and @cert-authority take.
        self.public_key = " ".join(key.export_public_key("openssh").decode().split()[:2])

    def issue(self, user: str, scope: str, client: str, lifetime: int, key_type: str = "ssh-ed25519",
              source_address: Sequence[str] | None = None) -> IssuedPair:
        """A new key pair for ``user``, its certificate valid ``lifetime`` seconds from now,
        permitting a PTY and port forwarding only (and, given ``source_address``, only from there)."""
        if lifetime <= 0:
            raise ValueError("a certificate needs a positive lifetime")
        now = int(time.time())
        stamp = datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        serial = secrets.randbits(63)
        key_id = f"user={user} scope={scope} from={client} at={stamp} serial={serial}"
        # RSA at 3072 bits, OpenSSH's own default (asyncssh's is 2048).
        size = {"key_size": 3072} if key_type == "ssh-rsa" else {}
        user_key = asyncssh.generate_private_key(key_type, comment=f"{user}@{scope}", **size)
        cert = self._key.generate_user_certificate(
            user_key,
            key_id,
            serial=serial,
            principals=[user],
            valid_after=now - CLOCK_SKEW,
            valid_before=now + lifetime,
            source_address=list(source_address) if source_address else None,
            permit_pty=True,
            permit_port_forwarding=True,
            permit_agent_forwarding=False,
            permit_x11_forwarding=False,
            permit_user_rc=False,
            comment=key_id,
        )
        # sshproxy's clients (and its own docs) expect a PKCS#1 PEM for RSA; OpenSSH format otherwise.
        fmt = "pkcs1-pem" if key_type == "ssh-rsa" else "openssh"
        private = user_key.export_private_key(fmt).decode()
        if not private.endswith("\n"):
            private += "\n"
        return IssuedPair(
            private_key=private,
            certificate=cert.export_certificate("openssh").decode(),
            serial=serial,
            key_id=key_id,
            valid_after=now - CLOCK_SKEW,
            valid_before=now + lifetime,
        )


@dataclass(frozen=True)
class CertificateInfo:
    """What a user certificate says about itself (PROTOCOL.certkeys), as plain values."""

    type: str
    key_id: str
    serial: int
    principals: list[str]
    valid_after: int
    valid_before: int
    ca_public_key: str

    def seconds_left(self, now: float | None = None) -> float:
        return self.valid_before - (time.time() if now is None else now)


def _read_string(blob: bytes, offset: int) -> tuple[bytes, int]:
    (length,) = struct.unpack_from(">I", blob, offset)
    start = offset + 4
    if start + length > len(blob):
        raise ValueError("truncated certificate")
    return blob[start:start + length], start + length


def certificate_info(text: str | bytes) -> CertificateInfo:
    """Parse a ``…-cert-v01@openssh.com`` line: its key id, serial, principals and validity.

    asyncssh checks the signature and structure on import (and keeps these fields private);
    the fields are then read from the certificate blob after the certified key, whose length
    is that of asyncssh's own encoding of the public key.
    """
    text = text.decode() if isinstance(text, bytes) else text
    cert = asyncssh.import_certificate(text.strip())
    blob = base64.b64decode(text.split()[1])
    public = cert.key.public_data
    alg, _ = _read_string(public, 0)
    offset = 0
    cert_type, offset = _read_string(blob, offset)
    _nonce, offset = _read_string(blob, offset)
    offset += len(public) - (4 + len(alg))
    serial, kind = struct.unpack_from(">QI", blob, offset)
    offset += 12
    key_id, offset = _read_string(blob, offset)
    principals_blob, offset = _read_string(blob, offset)
    valid_after, valid_before = struct.unpack_from(">QQ", blob, offset)
    principals, p = [], 0
    while p < len(principals_blob):
        name, p = _read_string(principals_blob, p)
        principals.append(name.decode())
    if kind != 1:
        raise ValueError("not a user certificate")
    ca = " ".join(cert.signing_key.export_public_key("openssh").decode().split()[0:2])
    return CertificateInfo(
        type=cert_type.decode(),
        key_id=key_id.decode(),
        serial=serial,
        principals=principals,
        valid_after=valid_after,
        valid_before=valid_before,
        ca_public_key=ca,
    )
