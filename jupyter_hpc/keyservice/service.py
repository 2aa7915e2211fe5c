"""The key service's HTTP side: sshproxy's three endpoints on tornado, in the caller's loop.

Every slow step (argon2 verification, RSA key generation) runs in a worker thread, so one
login never stalls another or the status check; how many argon2 checks run at once is bounded
per source address and in all (:mod:`.limits`). The decision for one request (locked? code's
step used?) and its record happen with no ``await`` in between, so two requests racing with
the same one-time code cannot both pass.

A refusal says as little as the wire allows: any wrong password, code or replayed code is one
answer (``X-Keyservice-Reason: failed``), so a password cannot be confirmed without the code;
an unknown name is checked like a known one (argon2 against a dummy hash of the same cost, a
code against a dummy secret) and answered alike. Only the audit log, which only the service's
uid reads, records which check failed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import grp
import ipaddress
import json
import os
import socket
import ssl
import stat
from datetime import datetime, timezone
from urllib.parse import quote

from tornado import httpserver, netutil, web
from traitlets import Dict, Integer, List, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from .ca import CertificateAuthority
from .client import UNIX_SCHEME
from .limits import CheckSlots, KeyedLocks, TooManyWaiting
from .logins import LoginGuard
from .scopes import SCOPES_FILE, Scope, parse_scopes
from .state import KeyServiceError, append_private, ensure_state_dir, read_json
from .users import NAME, UserStore

AUDIT_FILE = "audit.log"
LOOPBACK = ("127.0.0.1", "::1")
REASON_HEADER = "X-Keyservice-Reason"
# First words as sshproxy's, which its shell client looks for. One text for every wrong
# password, code or replayed code: which of them was wrong is the attacker's oracle.
REFUSALS = {
    "failed": "Authentication failed. Failed login: wrong password or code (append the current 6-digit code to the password).",
    "locked": "Authentication failed. Too many failed logins from your address; wait a while and try again.",
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
    unix_socket = Unicode(
        "",
        help="""Listen on this Unix socket instead of a TCP port, e.g. /run/jupyter-hpc/keyservice.sock
        (the hub's keyservice_url is then http+unix://%2Frun%2Fjupyter-hpc%2Fkeyservice.sock/create_pair/default/).
        Only users the socket's mode lets in can connect, and nobody can bind it first, as another
        user of the host could a loopback port and collect the passwords sent there. Its
        directory must not be writable by others.""",
    ).tag(config=True)
    unix_socket_mode = Integer(
        0o600, help="The socket's mode: 0o600 (the service's own user, e.g. a hub running as it) or 0o660 (its group).",
    ).tag(config=True)
    unix_socket_group = Unicode(
        "",
        help="""The socket's group, e.g. the hub's ('jupyterhub'), with unix_socket_mode 0o660: the hub
        then connects though it runs as another user. The service's user must be in that group (or root).""",
    ).tag(config=True)

    @validate("unix_socket_mode")
    def _valid_socket_mode(self, proposal):
        if proposal.value & ~0o770:
            raise KeyServiceConfigError(
                f"unix_socket_mode {proposal.value:04o} lets everyone on the host connect: use 0o600 or 0o660."
            )
        return proposal.value
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
    max_failures = Integer(
        5, help="Failed logins of one user from one address within failure_window that lock that pair out.",
    ).tag(config=True)
    failure_window = Integer(300, help="Seconds over which failed logins are counted.").tag(config=True)
    lockout = Integer(
        60,
        help="""Seconds the first lock of a (user, address) pair lasts; each further lock of the same
        pair lasts twice the one before, up to max_lockout. Other addresses are not locked, so no
        one can lock a user out by failing on purpose. Kept across restarts.""",
    ).tag(config=True)
    max_lockout = Integer(86400, help="Longest lock, in seconds (the back-off stops doubling there).").tag(config=True)
    trusted_proxies = List(
        Unicode(),
        help="""Addresses or networks (e.g. the hub's, "10.0.0.5" or "10.0.0.0/24") whose requests
        name the client in X-Forwarded-For (the hub sends the browser's address). Lockouts and
        check limits then apply to that client; from anyone else the header is ignored.""",
    ).tag(config=True)
    max_checks = Integer(
        help="Password (argon2) checks run at once in all; more wait. Default: the number of CPUs, at least 2.",
    ).tag(config=True)
    max_checks_per_address = Integer(
        2, help="Password checks of one client address run at once; more wait in line.",
    ).tag(config=True)
    max_waiting_per_address = Integer(
        256,
        help="""Requests of one address waiting for a check slot (a hub that is not a trusted proxy
        sends all its users' logins from one address); beyond them the address gets 429.""",
    ).tag(config=True)

    @default("max_checks")
    def _default_max_checks(self):
        return max(2, os.cpu_count() or 2)

    @validate("max_checks", "max_checks_per_address", "max_failures")
    def _at_least_one(self, proposal):
        if proposal.value < 1:
            raise KeyServiceConfigError(f"{proposal.trait.name} must be 1 or more, not {proposal.value}.")
        return proposal.value

    @validate("trusted_proxies")
    def _valid_proxies(self, proposal):
        for value in proposal.value:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise KeyServiceConfigError(f"trusted_proxies: {value!r} is not an address or network.") from None
        return proposal.value

    @validate("lifetime", "max_lifetime", "lockout", "max_lockout")
    def _positive(self, proposal):
        if proposal.value <= 0:
            raise KeyServiceConfigError(f"{proposal.trait.name} must be a positive number of seconds, not {proposal.value}.")
        return proposal.value

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._server: httpserver.HTTPServer | None = None
        self.cas: dict[str, CertificateAuthority] = {}
        self._attempt_locks = KeyedLocks()
        self._proxies = []

    # -- life cycle ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self.unix_socket:
            return f"{UNIX_SCHEME}://{quote(self.unix_socket, safe='')}/"
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{'https' if self.certfile else 'http'}://{host}:{self.port}/"

    def create_pair_url(self, scope: str = "default") -> str:
        return f"{self.url}create_pair/{scope}/"

    @property
    def ca_public_key(self) -> str:
        """The ``default`` scope's CA public key (see :meth:`public_key` for any scope)."""
        return self.public_key("default")

    def public_key(self, scope: str) -> str:
        """The public key line of ``scope``'s CA, what its login nodes' TrustedUserCAKeys hold."""
        if scope not in self.cas:
            raise KeyServiceConfigError(f"The key service has no scope {scope!r}; its scopes: {', '.join(sorted(self.cas))}.")
        return self.cas[scope].public_key

    def _ssl_context(self) -> ssl.SSLContext | None:
        if bool(self.certfile) != bool(self.keyfile):
            raise KeyServiceConfigError("Give both --certfile and --keyfile for TLS, or neither.")
        if not self.certfile:
            if self.ip not in LOOPBACK and not self.unix_socket:
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
        # No scope unless configured: a "default" made up here would sign for every user.
        configured = {**self.scopes, **read_json(state / SCOPES_FILE, {})}
        if not configured:
            raise KeyServiceConfigError(
                f"The key service has no scope: give one with --scope NAME (sshproxy's clients ask for "
                f"'default'), KeyService.scopes, or {state / SCOPES_FILE}."
            )
        self.scope_map: dict[str, Scope] = parse_scopes(
            configured, lifetime=self.lifetime, max_lifetime=self.max_lifetime,
            source=f"KeyService.scopes and {state / SCOPES_FILE}",
        )
        self.cas = {name: CertificateAuthority(state, name) for name in sorted(self.scope_map)}
        for name, ca in self.cas.items():
            if ca.created:
                self.log.warning("Made a new CA key for scope %s in %s; its public key: %s", name, ca.path, ca.public_key)
        self.users = UserStore(state)
        self.guard = LoginGuard(state, max_failures=self.max_failures, window=self.failure_window,
                                lockout=self.lockout, max_lockout=self.max_lockout)
        self.checks = CheckSlots(self.max_checks, self.max_checks_per_address, self.max_waiting_per_address)
        self._proxies = [ipaddress.ip_network(p, strict=False) for p in self.trusted_proxies]
        app = web.Application(
            [
                (r"/create_pair/([^/]+)/?", CreatePairHandler),
                (r"/get_ca_pubkey/([^/]+)/?", CAPublicKeyHandler),
                (r"/status\.html", StatusHandler),
            ],
            service=self,
        )
        self._server = httpserver.HTTPServer(app, ssl_options=ssl_context)
        if self.unix_socket:
            sockets = [self._bind_unix_socket()]
        else:
            family = socket.AF_INET6 if ":" in self.ip else socket.AF_INET
            sockets = netutil.bind_sockets(self.port, address=self.ip, family=family)
            self.port = sockets[0].getsockname()[1]
        self._server.add_sockets(sockets)
        if ssl_context is None and not self.unix_socket:
            self.log.warning("Key service on plain HTTP: listening on %s only (give a certfile and keyfile for TLS).", self.ip)
        self.log.info("Key service listening on %s (scopes: %s)", self.url, ", ".join(sorted(self.scope_map)))
        return self

    def _bind_unix_socket(self) -> socket.socket:
        """The Unix socket, in a directory only its owner (or root) can change."""
        directory = os.path.dirname(os.path.abspath(self.unix_socket))
        info = os.stat(directory)
        if info.st_uid not in (os.getuid(), 0) or info.st_mode & 0o022:
            raise KeyServiceConfigError(
                f"The key service's socket directory {directory} can be changed by others (owner uid "
                f"{info.st_uid}, mode {stat.S_IMODE(info.st_mode):04o}): someone could replace the socket. "
                f"Use a directory of the service's own, e.g. mkdir -m 0755 /run/jupyter-hpc."
            )
        try:
            sock = netutil.bind_unix_socket(self.unix_socket, mode=self.unix_socket_mode)
            if self.unix_socket_group:
                os.chown(self.unix_socket, -1, grp.getgrnam(self.unix_socket_group).gr_gid)
            return sock
        except KeyError:
            raise KeyServiceConfigError(f"unix_socket_group: there is no group {self.unix_socket_group!r}.") from None
        except (OSError, ValueError) as error:
            raise KeyServiceConfigError(f"Cannot listen on {self.unix_socket}: {error}.") from None

    async def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            await self._server.close_all_connections()
            self._server = None

    async def __aenter__(self) -> "KeyService":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    def attempt_lock(self, user: str, address: str):
        """Serializes the attempts of ``user`` from ``address`` (known names and unknown alike)."""
        return self._attempt_locks.hold((user, address))

    def client_address(self, request) -> str:
        """The socket's peer, or the X-Forwarded-For client when the peer is a trusted proxy."""
        peer = request.remote_ip
        forwarded = request.headers.get("X-Forwarded-For", "")
        if forwarded and self._proxies:
            try:
                trusted = any(ipaddress.ip_address(peer) in net for net in self._proxies)
                # The last hop is the one the trusted proxy added; earlier ones are the client's word.
                client = str(ipaddress.ip_address(forwarded.split(",")[-1].strip()))
            except ValueError:
                return peer
            if trusted:
                return client
        return peer

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
        self.reply(200, self.service.public_key(scope))


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
    def refuse(self, reason: str, user: str | None, scope: str, client: str, **detail) -> None:
        """401 with one of two answers (failed, locked); the audit line says which check failed."""
        self.service.audit("refused", reason=reason, user=user, scope=scope, client=client, **detail)
        self.set_header("WWW-Authenticate", 'Basic realm="jupyter-hpc keyservice"')
        self.set_header(REASON_HEADER, reason)
        self.reply(401, REFUSALS[reason])

    def failed(self, user: str, client: str) -> None:
        """Count a failure of (user, client), known name or not; the one that locks is audited as such."""
        until = self.service.guard.record_failure(user, client)
        if until:
            self.service.audit("locked-out", user=user, client=client, until=int(until))

    async def authenticate(self, user: str, password: str, code: str, client: str) -> dict | None:
        """None when ``password`` and ``code`` are ``user``'s and the code is fresh; else the
        refusal: ``reason`` (the answer) and, for the audit, which ``check`` failed and which
        hash ``argon2`` verified (``user``, ``dummy`` for an unknown name, or none)."""
        service = self.service
        if service.guard.locked_until(user, client):
            return {"reason": "locked", "check": "locked", "argon2": "none"}
        if not (len(code) == 6 and code.isdigit()):
            # No code appended at all: spend no argon2 time on the rest (known name or not).
            self.failed(user, client)
            return {"reason": "failed", "check": "no-code", "argon2": "none"}
        stored = service.users.password_hash(user)
        async with service.checks.slot(client):
            password_ok = await asyncio.to_thread(service.users.verify, stored, password)
        step = service.users.code_step(user, code)  # computed for unknown names too
        if stored is None or not password_ok or step is None or service.guard.step_used(user, step):
            self.failed(user, client)
            check = ("unknown-user" if stored is None else "password" if not password_ok
                     else "code" if step is None else "replayed")
            return {"reason": "failed", "check": check, "argon2": "user" if stored else "dummy"}
        service.guard.record_success(user, client, step)
        return None

    async def post(self, scope_name: str) -> None:
        service = self.service
        client = service.client_address(self.request)
        scope = self.scope(scope_name)
        credentials = _basic_credentials(self.request.headers.get("Authorization", ""))
        user = credentials[0] if credentials and NAME.match(credentials[0]) else None
        if scope is None:
            service.audit("refused", reason="unknown-scope", user=user, scope=scope_name, client=client)
            return self.reply(404, f"Unknown scope {scope_name!r}.")
        if user is None:
            return self.refuse("failed", user, scope_name, client, check="no-user", argon2="none")
        try:
            # One attempt at a time per (user, address): parallel guesses would all pass the lock
            # check before the first failure is counted, and five would become as many as sent.
            async with service.attempt_lock(user, client):
                refusal = await self.authenticate(user, credentials[1][:-6], credentials[1][-6:], client)
        except TooManyWaiting:
            service.audit("refused", reason="busy", user=user, scope=scope_name, client=client)
            self.set_header("Retry-After", "5")
            return self.reply(429, "Too many logins at once from your address; try again in a few seconds.")
        if refusal is not None:
            return self.refuse(refusal.pop("reason"), user, scope_name, client, **refusal)
        if user in service.unallowed_users or not scope.allows(user):
            service.audit("refused", reason="not-allowed", user=user, scope=scope_name, client=client)
            return self.reply(403, f"User {user} is not allowed certificates of scope {scope_name!r}.")
        pair = await asyncio.to_thread(service.cas[scope_name].issue, user, scope_name, client, scope.lifetime,
                                       scope.key_type, scope.source_address)
        service.audit(
            "issued", user=user, scope=scope_name, client=client, serial=pair.serial, key_id=pair.key_id,
            valid_before=pair.valid_before, lifetime=scope.lifetime, key_type=scope.key_type,
        )
        self.set_status(200)
        self.finish(pair.body)
