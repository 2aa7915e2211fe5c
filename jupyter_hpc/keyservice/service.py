"""The key service's HTTP side: sshproxy's three endpoints on tornado, in the caller's loop.

Every slow step (argon2 verification, RSA key generation) runs in a worker thread, so one
login never stalls another or the status check. The decision for one request (locked? code's
step used?) and its record happen with no ``await`` in between, so two requests racing with
the same one-time code cannot both pass.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import socket
import ssl
from datetime import datetime, timezone

from tornado import httpserver, netutil, web
from traitlets import Bool, Dict, Integer, List, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from .ca import CertificateAuthority
from .logins import LoginGuard
from .scopes import SCOPES_FILE, Scope, parse_scopes
from .state import KeyServiceError, append_private, ensure_state_dir, read_json
from .users import NAME, UserStore

AUDIT_FILE = "audit.log"
LOOPBACK = ("127.0.0.1", "::1")
REASON_HEADER = "X-Keyservice-Reason"
# First words as sshproxy's, which its shell client looks for; then which check failed.
REFUSALS = {
    "password": "Authentication failed. Failed login: wrong user name or password.",
    "code": "Authentication failed. Failed login: wrong or missing one-time code (append the 6-digit code to the password).",
    "replayed": "Authentication failed. Failed login: this one-time code was already used; wait for the next one.",
    "locked": "Authentication failed. Too many failed logins; the account is locked for a while.",
}


class KeyServiceConfigError(KeyServiceError):
    """The service cannot start with these settings."""


class KeyService(LoggingConfigurable):
    """An sshproxy-compatible SSH certificate authority; ``await start()`` in a running loop."""

    state_dir = Unicode(
        help="Directory for the CA key, users, lockouts and audit log (made 0700; files 0600).",
    ).tag(config=True)
    ip = Unicode("127.0.0.1", help="Address to listen on. Without certfile only 127.0.0.1 or ::1.").tag(config=True)
    port = Integer(0, help="Port to listen on; 0 picks a free one (read .port after start()).").tag(config=True)
    certfile = Unicode("", help="TLS certificate (PEM). With keyfile, the service speaks HTTPS.").tag(config=True)
    keyfile = Unicode("", help="TLS private key (PEM) for certfile.").tag(config=True)
    lifetime = Integer(
        12 * 3600,
        help="Seconds a certificate is valid, for scopes that set no lifetime of their own (default 12 h).",
    ).tag(config=True)
    max_lifetime = Integer(7 * 24 * 3600, help="Upper bound, in seconds, for any scope's lifetime.").tag(config=True)
    scopes = Dict(
        help="""Scopes by name: {"default": {"lifetime": 3600, "allowed_users": ["alice"],
        "key_type": "ssh-ed25519"}}. A scopes.json in the state dir adds to or replaces these.""",
    ).tag(config=True)
    unallowed_users = List(Unicode(), ["root"], help="Users never given a certificate (403).").tag(config=True)
    max_failures = Integer(5, help="Failed logins within failure_window that lock a user out.").tag(config=True)
    failure_window = Integer(300, help="Seconds over which failed logins are counted.").tag(config=True)
    lockout = Integer(900, help="Seconds a locked-out user stays locked (kept across restarts).").tag(config=True)
    trust_forwarded_for = Bool(
        False, help="Take the client address from X-Forwarded-For/X-Real-Ip (only behind your own proxy).",
    ).tag(config=True)

    @default("scopes")
    def _default_scopes(self):
        return {"default": {}}

    @validate("lifetime", "max_lifetime")
    def _positive(self, proposal):
        if proposal.value <= 0:
            raise KeyServiceConfigError(f"{proposal.trait.name} must be a positive number of seconds, not {proposal.value}.")
        return proposal.value

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._server: httpserver.HTTPServer | None = None
        self.ca: CertificateAuthority | None = None
        self._attempt_locks: dict[str, asyncio.Lock] = {}

    # -- life cycle ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{'https' if self.certfile else 'http'}://{host}:{self.port}/"

    def create_pair_url(self, scope: str = "default") -> str:
        return f"{self.url}create_pair/{scope}/"

    @property
    def ca_public_key(self) -> str:
        return self.ca.public_key

    def _ssl_context(self) -> ssl.SSLContext | None:
        if bool(self.certfile) != bool(self.keyfile):
            raise KeyServiceConfigError("Give both --certfile and --keyfile for TLS, or neither.")
        if not self.certfile:
            if self.ip not in LOOPBACK:
                raise KeyServiceConfigError(
                    f"Refusing to serve passwords over plain HTTP on {self.ip}: without TLS the key service "
                    f"listens on 127.0.0.1 only. Give --certfile and --keyfile to listen on {self.ip}."
                )
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(self.certfile, self.keyfile)
        except (OSError, ssl.SSLError) as error:
            raise KeyServiceConfigError(f"Cannot load the TLS certificate {self.certfile} / key {self.keyfile}: {error}.") from None
        return context

    async def start(self) -> "KeyService":
        if not self.state_dir:
            raise KeyServiceConfigError("The key service needs a state directory (--state-dir DIR).")
        state = ensure_state_dir(self.state_dir)
        self.state_path = state
        ssl_context = self._ssl_context()
        configured = {"default": {}, **self.scopes}  # sshproxy's clients ask for "default" unless told
        configured.update(read_json(state / SCOPES_FILE, {}))
        self.scope_map: dict[str, Scope] = parse_scopes(
            configured, lifetime=self.lifetime, max_lifetime=self.max_lifetime,
            source=f"KeyService.scopes and {state / SCOPES_FILE}",
        )
        self.ca = CertificateAuthority(state)
        if self.ca.created:
            self.log.warning("Made a new CA key in %s; its public key: %s", self.ca.path, self.ca.public_key)
        self.users = UserStore(state)
        self.guard = LoginGuard(state, max_failures=self.max_failures, window=self.failure_window, lockout=self.lockout)
        app = web.Application(
            [
                (r"/create_pair/([^/]+)/?", CreatePairHandler),
                (r"/get_ca_pubkey/([^/]+)/?", CAPublicKeyHandler),
                (r"/status\.html", StatusHandler),
            ],
            service=self,
        )
        self._server = httpserver.HTTPServer(app, ssl_options=ssl_context, xheaders=self.trust_forwarded_for)
        family = socket.AF_INET6 if ":" in self.ip else socket.AF_INET
        sockets = netutil.bind_sockets(self.port, address=self.ip, family=family)
        self.port = sockets[0].getsockname()[1]
        self._server.add_sockets(sockets)
        if ssl_context is None:
            self.log.warning("Key service on plain HTTP: listening on %s only (give a certfile and keyfile for TLS).", self.ip)
        self.log.info("Key service listening on %s (scopes: %s)", self.url, ", ".join(sorted(self.scope_map)))
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            await self._server.close_all_connections()
            self._server = None

    async def __aenter__(self) -> "KeyService":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    def attempt_lock(self, user: str) -> asyncio.Lock | contextlib.nullcontext:
        """The lock that serializes ``user``'s login attempts (none for unknown names, which
        always fail and must not grow this table)."""
        if user not in self.users:
            return contextlib.nullcontext()
        return self._attempt_locks.setdefault(user, asyncio.Lock())

    # -- audit --------------------------------------------------------------------------------
    def audit(self, event: str, **fields) -> None:
        """One JSON line per issue or refusal: names, addresses, serials; never a secret."""
        record = {"time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "event": event, **fields}
        line = json.dumps(record, sort_keys=True)
        append_private(self.state_path / AUDIT_FILE, line)
        self.log.info("audit %s", line)


class _Handler(web.RequestHandler):
    @property
    def service(self) -> KeyService:
        return self.settings["service"]

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Cache-Control", "no-store")

    def reply(self, status: int, text: str) -> None:
        self.set_status(status)
        self.finish(text if text.endswith("\n") else text + "\n")

    def scope(self, name: str) -> Scope | None:
        return self.service.scope_map.get(name)


class StatusHandler(_Handler):
    def get(self) -> None:
        self.finish("OK")


class CAPublicKeyHandler(_Handler):
    def get(self, scope: str) -> None:
        if self.scope(scope) is None:
            return self.reply(404, f"Unknown scope {scope!r}.")
        self.reply(200, self.service.ca_public_key)


def _basic_credentials(header: str) -> tuple[str, str] | None:
    kind, _, value = header.partition(" ")
    if kind.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


class CreatePairHandler(_Handler):
    def refuse(self, reason: str, user: str, scope: str) -> None:
        self.service.audit("refused", reason=reason, user=user, scope=scope, client=self.request.remote_ip)
        self.set_header("WWW-Authenticate", 'Basic realm="jupyter-hpc keyservice"')
        self.set_header(REASON_HEADER, reason)
        self.reply(401, REFUSALS[reason])

    def failed(self, user: str, known: bool) -> None:
        """Count a failure against a known user; the one that locks them is audited as such."""
        if known and self.service.guard.record_failure(user):
            until = int(self.service.guard.locked_until(user))
            self.service.audit("locked-out", user=user, client=self.request.remote_ip, until=until)

    async def authenticate(self, user: str, password: str, code: str) -> str | None:
        """None when ``password`` and ``code`` are ``user``'s and the code is fresh; else the reason."""
        service = self.service
        known = user in service.users
        if known and service.guard.locked_until(user):
            return "locked"
        if not (len(code) == 6 and code.isdigit()):
            # No code appended at all: say so, and spend no argon2 time on the rest.
            self.failed(user, known)
            return "code"
        if not await asyncio.to_thread(service.users.verify, service.users.password_hash(user), password):
            self.failed(user, known)
            return "password"
        step = service.users.code_step(user, code)
        if step is None or service.guard.step_used(user, step):
            self.failed(user, known)
            return "code" if step is None else "replayed"
        service.guard.record_success(user, step)
        return None

    async def post(self, scope_name: str) -> None:
        service, client = self.service, self.request.remote_ip
        scope = self.scope(scope_name)
        credentials = _basic_credentials(self.request.headers.get("Authorization", ""))
        user = credentials[0] if credentials and NAME.match(credentials[0]) else None
        if scope is None:
            service.audit("refused", reason="unknown-scope", user=user, scope=scope_name, client=client)
            return self.reply(404, f"Unknown scope {scope_name!r}.")
        if user is None:
            return self.refuse("password", user, scope_name)
        # One attempt at a time per user: parallel guesses would all pass the lock check before
        # the first failure is counted, and five would become as many as an attacker can send.
        async with service.attempt_lock(user):
            reason = await self.authenticate(user, credentials[1][:-6], credentials[1][-6:])
        if reason is not None:
            return self.refuse(reason, user, scope_name)
        if user in service.unallowed_users or not scope.allows(user):
            service.audit("refused", reason="not-allowed", user=user, scope=scope_name, client=client)
            return self.reply(403, f"User {user} is not allowed certificates of scope {scope_name!r}.")
        pair = await asyncio.to_thread(service.ca.issue, user, scope_name, client, scope.lifetime, scope.key_type)
        service.audit(
            "issued", user=user, scope=scope_name, client=client, serial=pair.serial, key_id=pair.key_id,
            valid_before=pair.valid_before, lifetime=scope.lifetime, key_type=scope.key_type,
        )
        self.set_status(200)
        self.finish(pair.body)
