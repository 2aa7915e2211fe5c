"""SSH credentials held in this process's memory only: the hub's hand-off to a user's server.

A hub logs its user in with password + one-time code and gets a short-lived key and
certificate from a key service. The user's server receives them over the hub API (never in an
environment variable, a command line or a file) and installs them here; every
:class:`~jupyter_hpc.ssh.SSHTarget` built from settings that name no ``client_keys`` then carries
them as ``identities``.

Installing a new credential (the user logged in again) affects the *next* connection only:
``SSHTarget.pool_key`` includes the credential's public fingerprint, so the pool opens a new
connection for it while kernels on the old one keep running (sshd checks a certificate at
login, not for the life of the connection).

The first install marks the process non-dumpable (Linux ``prctl(PR_SET_DUMPABLE, 0)``): no
core file, and no other process of the same uid can read its memory through ``/proc`` or
ptrace.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import logging
import sys
import threading
import time

from .quiet_import import asyncssh

from ..errors import HPCError

log = logging.getLogger("jupyter_hpc.ssh")

PR_SET_DUMPABLE = 4


class CredentialError(HPCError):
    """A credential handed over is malformed, or its certificate is not for its key."""


@dataclasses.dataclass(frozen=True)
class Credential:
    """A private key and its certificate, as OpenSSH text, with what is known about them."""

    private_key: str = dataclasses.field(repr=False)
    certificate: str = dataclasses.field(repr=False)
    valid_before: float  # seconds since the epoch; the certificate is refused from then on
    fingerprint: str  # the public key's SHA256 fingerprint: names the credential in logs
    principals: tuple[str, ...] = ()

    @classmethod
    def parse(cls, private_key: str, certificate: str) -> "Credential":
        """Check that the certificate is for this key and read its end of validity.

        asyncssh keeps the validity only as a private attribute of its certificate object; a
        certificate without a bounded validity is refused here, as our key service never
        issues one and an unbounded credential must not live in a hub's servers.
        """
        try:
            key = asyncssh.import_private_key(private_key)
            cert = asyncssh.import_certificate(certificate)
        except (asyncssh.KeyImportError, ValueError) as exc:
            raise CredentialError(
                "The SSH credential handed over is not an OpenSSH private key and certificate.",
                log_detail=f"{type(exc).__name__}: {exc}",
            ) from None
        public = key.convert_to_public()
        if cert.key.public_data != public.public_data:
            raise CredentialError("The SSH certificate handed over is not for its private key.")
        valid_before = getattr(cert, "_valid_before", None)
        if not isinstance(valid_before, int) or valid_before >= 2**63:
            raise CredentialError(
                "The SSH certificate handed over has no end of validity; the key service must "
                "issue certificates with a lifetime."
            )
        return cls(
            private_key=private_key,
            certificate=certificate.strip(),
            valid_before=float(valid_before),
            fingerprint=public.get_fingerprint("sha256"),
            principals=tuple(cert.principals),
        )

    def expires_in(self, now: float | None = None) -> float:
        return self.valid_before - (time.time() if now is None else now)

    def identity(self) -> tuple[str, str]:
        """The ``(private_key, certificate)`` pair as ``SSHTarget.identities`` takes it."""
        return (self.private_key, self.certificate)


_lock = threading.Lock()
_current: Credential | None = None
_dumpable_off = False
_required = False


def mark_non_dumpable() -> bool:
    """Forbid core dumps and same-uid ptrace or /proc/PID/mem reads of this process (Linux).

    Returns whether the mark is in place; elsewhere it is a no-op that says so in the log.
    """
    global _dumpable_off
    if _dumpable_off:
        return True
    if not sys.platform.startswith("linux"):
        log.warning("cannot mark this process non-dumpable on %s", sys.platform)
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_DUMPABLE, 0) failed: errno %d", ctypes.get_errno())
        return False
    _dumpable_off = True
    return True


def install(credential: Credential) -> bool:
    """Make ``credential`` the one new connections use; True if it differs from the last one."""
    global _current
    mark_non_dumpable()
    with _lock:
        changed = _current is None or _current.fingerprint != credential.fingerprint
        _current = credential
    if changed:
        log.info(
            "SSH credential %s installed, valid for %.0f s", credential.fingerprint, credential.expires_in()
        )
    return changed


def clear() -> None:
    """Forget the credential (the user logged out): new connections have none from here."""
    global _current
    with _lock:
        had, _current = _current, None
    if had is not None:
        log.info("SSH credential %s cleared", had.fingerprint)


def current() -> Credential | None:
    with _lock:
        return _current


def require(required: bool = True) -> None:
    """In a hub's server, a connection without the handed-over credential must not fall back
    to asyncssh's defaults (the hub account's own ``~/.ssh`` keys or agent)."""
    global _required
    _required = required


def identities() -> tuple[tuple[str, str], ...]:
    """What ``SSHTarget.identities`` gets when the settings name no ``client_keys``.

    An expired credential is still returned: the site then refuses it with its own message,
    and a kernel already running is not affected. With none installed where one is required,
    the error says to log in again.
    """
    credential = current()
    if credential is None and _required:
        raise CredentialError(
            "This server holds no SSH credential for the cluster: log in to the hub again "
            "(your session ended or you logged out)."
        )
    return (credential.identity(),) if credential is not None else ()
