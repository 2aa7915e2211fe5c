"""Scopes: which certificates the key service signs, for whom, and for how long.

A scope is sshproxy's unit of policy: ``POST /create_pair/<scope>/`` asks for a certificate of
that scope. Each has a ``lifetime`` in seconds (default: the service's ``lifetime``, 12 h),
bounded by ``max_lifetime`` so no configuration yields an unbounded certificate, an optional
``allowed_users`` list (absent: every user of the service) and a ``key_type``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .ca import KEY_TYPES
from .state import KeyServiceError

SCOPES_FILE = "scopes.json"
SCOPE_KEYS = {"lifetime", "allowed_users", "key_type"}


class ScopeConfigError(KeyServiceError):
    """A scope's settings are not usable."""


@dataclass(frozen=True)
class Scope:
    name: str
    lifetime: int
    allowed_users: frozenset[str] | None = None
    key_type: str = "ssh-ed25519"

    def allows(self, user: str) -> bool:
        return self.allowed_users is None or user in self.allowed_users


def parse_scopes(raw: dict, *, lifetime: int, max_lifetime: int, source: str) -> dict[str, Scope]:
    """Check ``{name: {lifetime, allowed_users, key_type}}`` and build the scopes from it."""
    if not isinstance(raw, dict):
        raise ScopeConfigError(f"Scopes in {source} must be a mapping of scope name to settings, not {raw!r}.")
    scopes = {}
    for name, settings in raw.items():
        where = f"scope {name!r} in {source}"
        if not isinstance(name, str) or not name or "/" in name:
            raise ScopeConfigError(f"{where}: a scope name must be non-empty and contain no '/'.")
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
        scopes[name] = Scope(name, life, None if users is None else frozenset(users), key_type)
    return scopes
