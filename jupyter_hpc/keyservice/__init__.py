"""An SSH certificate authority that speaks NERSC sshproxy's HTTP API.

A user trades password + one-time code for a new key and a short-lived certificate; login
nodes trust the CA (``TrustedUserCAKeys``) instead of keeping anyone's public keys. Being
wire-compatible with sshproxy means a site that runs sshproxy needs none of this, and our hub
(jupyter_hpc.hub) works with either. Unlike sshproxy's samples, every certificate expires,
lockouts and used one-time codes survive a restart, and plain HTTP is served on loopback only.
A wrong password and a wrong code get the same answer (no password oracle), unknown names are
checked like known ones, lockouts are per (user, source address) with exponential back-off (no
one can lock another out), argon2 checks run a bounded number at a time, each scope has its own
CA key, and certificates permit a PTY and port forwarding only.
Nothing here imports JupyterHub.

Wire::

    POST /create_pair/<scope>/   Basic user:PASSWORD123456  -> 200 private key text + cert line
                                 401 (WWW-Authenticate: Basic; X-Keyservice-Reason:
                                 failed|locked), 403 not allowed, 404 no scope,
                                 429 too many logins at once from one address
    GET  /get_ca_pubkey/<scope>/ -> the CA's public key line
    GET  /status.html            -> OK

Python::

    from jupyter_hpc.keyservice import KeyService, UserStore, request_certificate, certificate_info

    secret = UserStore(state_dir).add_user("alice", password)      # base32 TOTP secret
    async with KeyService(state_dir=state_dir, port=0, scopes={"default": {}}) as service:  # .port, .url
        key_text, cert_text = await request_certificate(
            service.create_pair_url("default"), "alice", password, pyotp.TOTP(secret).now())
        certificate_info(cert_text).valid_before                    # unix seconds

Refusals raise :class:`LoginRefused` (``.reason``), :class:`AccountLocked`,
:class:`AccessDenied`, :class:`UnknownScope` or :class:`KeyServiceUnavailable`, all
:class:`jupyter_hpc.errors.HPCError` with a ``message`` fit for a login page.

State directory (0700, every file 0600): ``ca_key`` (the ``default`` scope's CA) and
``ca_key.<scope>`` for each other scope, ``users.json`` (argon2id hashes, TOTP secrets),
``logins.json`` (failures and back-off per user and address, last used code step),
``audit.log`` (one JSON line per issue or refusal, which check failed, no secrets) and,
optionally, ``scopes.json``.
"""

from .ca import CertificateAuthority, CertificateInfo, IssuedPair, certificate_info
from .client import (
    AccessDenied,
    AccountLocked,
    KeyServiceUnavailable,
    LoginRefused,
    UnknownScope,
    keyservice_http_client,
    request_certificate,
    split_pair,
)
from .scopes import Scope, ScopeConfigError
from .service import KeyService, KeyServiceConfigError
from .state import KeyServiceError
from .users import UserError, UserStore

__all__ = [
    "AccessDenied",
    "AccountLocked",
    "CertificateAuthority",
    "CertificateInfo",
    "IssuedPair",
    "KeyService",
    "KeyServiceConfigError",
    "KeyServiceError",
    "KeyServiceUnavailable",
    "LoginRefused",
    "Scope",
    "ScopeConfigError",
    "UnknownScope",
    "UserError",
    "UserStore",
    "certificate_info",
    "keyservice_http_client",
    "request_certificate",
    "split_pair",
]
