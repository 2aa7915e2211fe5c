"""Scopes: which certificates the key service signs, for whom, and for how long.

A scope is sshproxy's unit of policy: ``POST /create_pair/<scope>/`` asks for a certificate of
that scope. Each has a ``lifetime`` in seconds (default: the service's ``lifetime``, 12 h),
bounded by ``max_lifetime`` so no configuration yields an unbounded certificate, an optional
``allowed_users`` list (absent: every user of the service), a ``key_type`` and an optional
``source_address`` list (CIDR blocks written into each certificate: sshd then accepts it only
from there, e.g. the hub's address). Each scope signs with its own CA key (see
:mod:`jupyter_hpc.keyservice.ca`), so a login node that trusts one scope's CA trusts no other.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from .ca import KEY_TYPES
from .state import KeyServiceError

SCOPES_FILE = "scopes.json"
SCOPE_KEYS = {"lifetime", "allowed_users", "key_type", "source_address"}
# A scope's name is part of a URL and of its CA key's file name.
SCOPE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


class ScopeConfigError(KeyServiceError):
    """A scope's settings are not usable."""


@dataclass(frozen=True)
class Scope:
    name: str
    lifetime: int
    allowed_users: frozenset[str] | None = None
    key_type: str = "ssh-ed25519"
    source_address: tuple[str, ...] | None = None

    def allows(self, user: str) -> bool:
        return self.allowed_users is None or user in self.allowed_users


def parse_scopes(raw: dict, *, lifetime: int, max_lifetime: int, source: str) -> dict[str, Scope]:
    """Check ``{name: {lifetime, allowed_users, key_type}}`` and build the scopes from it."""
    if not isinstance(raw, dict):
        raise ScopeConfigError(f"Scopes in {source} must be a mapping of scope name to settings, not {raw!r}.")
    scopes = {}
    for name, settings in raw.items():
        where = f"scope {name!r} in {source}"
        if not isinstance(name, str) or not SCOPE_NAME.match(name):
            raise ScopeConfigError(
                f"{where}: a scope name is letters, digits, '_', '.' and '-' (at most 64, not starting with '.' or '-')."
            )
        settings = settings or {}
        if not isinstance(settings, dict):
            raise ScopeConfigError(f"{where}: settings must be a mapping like {{\"lifetime\": 3600}}.")
        unknown = set(settings) - SCOPE_KEYS
        if unknown:
            raise ScopeConfigError(f"{where}: unknown setting(s) {sorted(unknown)}; known: {sorted(SCOPE_KEYS)}.")
        life = settings.get("lifetime", lifetime)
        if isinstance(life, bool) or not isinstance(life, int) or not 0 < life <= max_lifetime:
            raise ScopeConfigError(
                f"{where}: lifetime must be a whole number of seconds from 1 to {max_lifetime} "
                f"(max_lifetime), not {life!r}; certificates are never unbounded."
            )
        users = settings.get("allowed_users")
        if users is not None and (not isinstance(users, list) or not all(isinstance(u, str) for u in users)):
            raise ScopeConfigError(f"{where}: allowed_users must be a list of user names, or absent for everyone.")
        key_type = settings.get("key_type", "ssh-ed25519")
        if key_type not in KEY_TYPES:
            raise ScopeConfigError(f"{where}: key_type must be one of {', '.join(KEY_TYPES)}, not {key_type!r}.")
        scopes[name] = Scope(name, life, None if users is None else frozenset(users), key_type,
                             _source_address(settings.get("source_address"), where))
    return scopes


def _source_address(value, where: str) -> tuple[str, ...] | None:
    """``source_address`` as OpenSSH's critical option takes it: CIDR blocks (a bare address is /32 or /128)."""
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ScopeConfigError(f"{where}: source_address must be a non-empty list like [\"192.0.2.10/32\"], or absent.")
    try:
        return tuple(str(ipaddress.ip_network(v, strict=False)) for v in value)
    except ValueError as error:
        raise ScopeConfigError(f"{where}: source_address {value!r}: {error}.") from None
