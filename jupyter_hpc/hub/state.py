"""The shape of the credential in a user's auth_state, shared by the hub and the user's server.

Kept apart from the authenticator so that the single-user side reads it without importing
JupyterHub's hub code.
"""

from __future__ import annotations

from typing import Any

from ..ssh.credentials import Credential

KEY = "ssh_private_key"
CERTIFICATE = "ssh_certificate"
VALID_BEFORE = "ssh_valid_before"
FINGERPRINT = "ssh_fingerprint"
CREDENTIAL_FIELDS = (KEY, CERTIFICATE, VALID_BEFORE, FINGERPRINT)


def to_auth_state(credential: Credential) -> dict[str, Any]:
    return {
        KEY: credential.private_key,
        CERTIFICATE: credential.certificate,
        VALID_BEFORE: credential.valid_before,
        FINGERPRINT: credential.fingerprint,
    }


def from_auth_state(auth_state: dict[str, Any] | None) -> Credential | None:
    """The credential in ``auth_state``, or None when there is none (logged out)."""
    if not auth_state or not auth_state.get(KEY) or not auth_state.get(CERTIFICATE):
        return None
    return Credential.parse(auth_state[KEY], auth_state[CERTIFICATE])


def without_credential(auth_state: dict[str, Any] | None) -> dict[str, Any] | None:
    """``auth_state`` with the credential removed (what logout leaves)."""
    if not auth_state:
        return None
    rest = {name: value for name, value in auth_state.items() if name not in CREDENTIAL_FIELDS}
    return rest or None
