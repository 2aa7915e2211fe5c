"""Who may ask for a certificate: argon2id password hashes and TOTP secrets in ``users.json``.

The file is the service's own (0600, in the 0700 state dir) and re-read when it changes, so
``jupyter hpc keyservice adduser`` works while the service runs. A password is never stored,
only its argon2id hash; the TOTP secret has to be stored as is (the service computes the
codes from it), which is why the file is as private as the CA key.
"""

from __future__ import annotations

import hmac
import os
import re
import time
from collections import Counter
from dataclasses import astuple
from pathlib import Path

import pyotp
from argon2 import Parameters, PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError

from .state import KeyServiceError, ensure_state_dir, read_json, write_json

USERS_FILE = "users.json"
ISSUER = "jupyter-hpc"
# A user name becomes the certificate's principal and a login name on the cluster: keep it to
# what a unix account name can be, and never a ':' (HTTP Basic splits user from password there).
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


class UserError(KeyServiceError):
    """A user cannot be added or changed as asked."""


def check_name(name: str) -> str:
    if not NAME.match(name or ""):
        raise UserError(
            f"{name!r} is not a usable user name: use letters, digits, '_', '.' and '-' "
            f"(at most 64, not starting with '.' or '-'), the same name as the account on the cluster."
        )
    return name


class UserStore:
    """The users file of one state directory."""

    def __init__(self, state_dir: str | os.PathLike, hasher: PasswordHasher | None = None) -> None:
        self.state_dir = ensure_state_dir(state_dir)
        self.path = Path(self.state_dir) / USERS_FILE
        self.hasher = hasher or PasswordHasher()  # argon2id, RFC 9106's low-memory profile
        self._users: dict[str, dict] = {}
        self._stamp: tuple | None = None
        # Verified when a name is unknown, so a wrong name costs what a wrong password costs;
        # made with the parameters the stored hashes use (see _match_dummy), not just ours.
        self._dummy_hash = self.hasher.hash(os.urandom(16).hex())
        # Codes are computed for unknown names too (against this), as for known ones.
        self._dummy_secret = pyotp.random_base32()

    def _load(self) -> dict[str, dict]:
        try:
            info = self.path.stat()
            stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            self._users = read_json(self.path, {"users": {}}).get("users", {})
            self._stamp = stamp
            self._match_dummy()
        return self._users

    def _match_dummy(self) -> None:
        """Give the dummy hash the cost parameters most stored hashes have.

        Hashes made by another hasher (older argon2-cffi defaults, a site's own tuning) cost
        what their parameters say; a dummy with ours would make an unknown name answer in
        another time than a known one.
        """
        counted: Counter = Counter()
        for entry in self._users.values():
            try:
                counted[astuple(extract_parameters(entry["password_hash"]))] += 1
            except (InvalidHashError, KeyError, TypeError):
                continue
        if counted:
            usual = Parameters(*counted.most_common(1)[0][0])
            if extract_parameters(self._dummy_hash) != usual:
                self._dummy_hash = PasswordHasher.from_parameters(usual).hash(os.urandom(16).hex())

    @property
    def dummy_hash(self) -> str:
        """The hash an unknown name's password is verified against (its parameters are the users')."""
        self._load()
        return self._dummy_hash

    def names(self) -> list[str]:
        return sorted(self._load())

    def __contains__(self, name: str) -> bool:
        return name in self._load()

    def add_user(self, name: str, password: str, *, replace: bool = False) -> str:
        """Add ``name`` with ``password``; returns the new base32 TOTP secret."""
        check_name(name)
        if len(password) < 8:
            raise UserError(f"The password for {name} is too short: use at least 8 characters.")
        users = dict(read_json(self.path, {"users": {}}).get("users", {}))
        if name in users and not replace:
            raise UserError(f"{name} is already a user of this key service; remove them from {self.path} first.")
        secret = pyotp.random_base32()
        users[name] = {"password_hash": self.hasher.hash(password), "totp_secret": secret, "added": int(time.time())}
        write_json(self.path, {"users": users})
        self._stamp = None
        return secret

    def provisioning_uri(self, name: str) -> str:
        """The ``otpauth://totp/...`` URI an authenticator app scans for ``name``."""
        entry = self._load().get(name)
        if entry is None:
            raise UserError(f"{name} is not a user of this key service.")
        return pyotp.TOTP(entry["totp_secret"]).provisioning_uri(name=name, issuer_name=ISSUER)

    def password_hash(self, name: str) -> str | None:
        """``name``'s argon2id hash, or None for an unknown name (cheap: the file is cached)."""
        entry = self._load().get(name)
        return entry["password_hash"] if entry else None

    def verify(self, password_hash: str | None, password: str) -> bool:
        """True when ``password`` matches ``password_hash`` (None: an unknown user, always False).

        Slow on purpose (argon2, about 64 MiB and tens of ms): the service runs it in a worker
        thread. It touches no shared state, so it is safe there.
        """
        try:
            self.hasher.verify(password_hash or self._dummy_hash, password)
        except (VerificationError, InvalidHashError):
            return False
        return password_hash is not None

    def check_password(self, name: str, password: str) -> bool:
        """True when ``password`` is ``name``'s (blocking; see :meth:`verify`)."""
        return self.verify(self.password_hash(name), password)

    def code_step(self, name: str, code: str, now: float | None = None) -> int | None:
        """The TOTP time step ``code`` belongs to (this one or either neighbour), or None.

        The step, not just yes/no, lets the caller refuse a code whose step was already used.
        """
        entry = self._load().get(name)
        if not (len(code) == 6 and code.isdigit()):
            return None
        # An unknown name's code is computed too, against a secret of no one's: same work, no match.
        totp = pyotp.TOTP(entry["totp_secret"] if entry else self._dummy_secret)
        now = time.time() if now is None else now
        current = totp.timecode(now)
        for offset in (0, -1, 1):
            if hmac.compare_digest(totp.generate_otp(current + offset), code):
                return current + offset if entry else None
        return None

