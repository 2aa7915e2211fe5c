"""SSHCertAuthenticator: password + one-time code in, a short-lived SSH certificate out.

The hub posts the user's password with the code appended to a key service
(``…/create_pair/<scope>/``, ours or NERSC's sshproxy) and keeps the key and certificate in
encrypted ``auth_state``. A certificate ends; the login must end with it. So:

- ``refresh_user`` answers False from ``expiry_margin`` (plus one ``auth_refresh_age``, the
  longest a stale answer can go unasked) before the certificate's end: the next
  cookie-authenticated request goes to the login page, a spawn included
  (``refresh_pre_spawn``), and token-authenticated requests are refused too
  (``auth_refresh_strict``), so that no server starts that could not log in to the cluster.
- ``auth_refresh_age`` defaults to 1 s here (JupyterHub's 300 s would let a login outlive
  a 60 s certificate by minutes); a refresh reads the validity from auth_state, no round trip.
- The hub's login cookie is set with that end as its expiry (at every login), and the
  browser's OAuth tokens for the user's servers get it as ``expires_at`` when they are
  issued, so neither the hub session nor a server's session outlives the certificate.
- Logout removes the key and certificate from auth_state, and running servers drop theirs.

Refusals raise ``tornado.web.HTTPError`` with the key service's reason as the message; the
login handler renders it on the login form (JupyterHub would show its error page), so a wrong
password or code, a replayed code, a locked account and an unreachable key service each read
as themselves and none is a 500.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timezone
from urllib.parse import urlsplit

from jupyterhub import orm
from jupyterhub.apihandlers.auth import OAuthTokenHandler
from jupyterhub.auth import Authenticator
from jupyterhub.handlers.login import LoginHandler, LogoutHandler
from oauthlib import oauth2
from tornado import web
from tornado.httpclient import AsyncHTTPClient
from traitlets import Float, Integer, Unicode, default, validate

from ..keyservice import (
    AccessDenied,
    KeyServiceError,
    KeyServiceUnavailable,
    LoginRefused,
    UnknownScope,
    keyservice_http_client,
    request_certificate,
)
from ..ssh.credentials import Credential, CredentialError
from . import state

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class SSHCertLoginHandler(LoginHandler):
    """JupyterHub's login form; after a login, a running server is told to fetch the new
    credential before the browser is redirected, so its next kernel starts with it."""

    async def post(self):
        # JupyterHub turns an HTTPError from authenticate() into its error page; a refused
        # login belongs on the login form, with the key service's reason.
        try:
            await super().post()
        except web.HTTPError as refusal:
            if self._finished or refusal.status_code not in (403, 503) or not refusal.log_message:
                raise
            self.set_status(refusal.status_code)
            username = self.get_argument("username", "", strip=True)[:64]
            self.finish(await self._render(login_error=refusal.log_message, username=username))

    async def login_user(self, data=None):
        user = await super().login_user(data)
        if user is not None:
            await self.end_cookie_with_login(user)
            await notify_servers(user, self.log)
        return user

    async def end_cookie_with_login(self, user) -> None:
        """Give the hub's login cookie the login's end, so the browser drops it then.

        Set at every login: JupyterHub keeps a cookie that still names the same user, which
        would keep the previous certificate's end after a re-login.
        """
        valid_before = ((await user.get_auth_state()) or {}).get(state.VALID_BEFORE)
        if not valid_before:
            return
        self._set_cookie(
            self.hub.cookie_name, user.cookie_id, encrypted=True, path=self.hub.base_url,
            expires=datetime.fromtimestamp(self.authenticator.login_end(valid_before), timezone.utc),
        )


class SSHCertOAuthTokenHandler(OAuthTokenHandler):
    """JupyterHub's OAuth token endpoint: a token it issues for a user's server (the browser's
    session there) gets the login's end as its ``expires_at`` from the start."""

    async def post(self):
        uri, http_method, body, headers = self.extract_oauth_params()
        try:
            headers, body, status = self.oauth_provider.create_token_response(uri, http_method, body, headers, {})
        except oauth2.FatalClientError as e:
            raise web.HTTPError(e.status_code, e.description) from None
        if status == 200:
            await self.end_token_with_login(body)
        self.send_oauth_response(headers, body, status)

    async def end_token_with_login(self, body: str) -> None:
        try:
            access_token = json.loads(body)["access_token"]
        except (ValueError, KeyError, TypeError):
            return
        orm_token = orm.APIToken.find(self.db, access_token)
        if orm_token is None or orm_token.user is None:
            return
        user = self.users[orm_token.user]
        valid_before = ((await user.get_auth_state()) or {}).get(state.VALID_BEFORE)
        if valid_before:
            self.authenticator.cap_server_tokens(user, self.authenticator.login_end(valid_before))


class SSHCertLogoutHandler(LogoutHandler):
    """Logout removes the credential from auth_state, and running servers forget it."""

    async def handle_logout(self):
        user = self.current_user
        if user is None:
            return
        await user.save_auth_state(state.without_credential(await user.get_auth_state()))
        self.log.info("SSH credential of %s removed at logout", user.name)
        await notify_servers(user, self.log)


async def notify_servers(user, log) -> None:
    """Ask each of the user's running servers whose spawner can be told to fetch again."""
    calls = [
        spawner.notify_credential()
        for spawner in user.spawners.values()
        if spawner.ready and hasattr(spawner, "notify_credential")
    ]
    for outcome in await asyncio.gather(*calls, return_exceptions=True):
        if isinstance(outcome, Exception):
            log.warning("could not tell %s's server about the new credential: %s", user.name, outcome)


class SSHCertAuthenticator(Authenticator):
    """Log in with password + one-time code; the key service's certificate is the session."""

    keyservice_url = Unicode(
        config=True,
        help="""The key service's create_pair URL, scope included, e.g.
        'http://127.0.0.1:8990/create_pair/default/' (ours, `jupyter hpc keyservice`) or
        'https://sshproxy.nersc.gov/create_pair/default/' (NERSC's sshproxy). Plain HTTP
        only to a loopback address: the password travels in it. On the hub's host prefer the
        key service's Unix socket, 'http+unix://%2Frun%2Fjupyter-hpc%2Fkeyservice.sock/create_pair/default/'
        (`jupyter hpc keyservice --socket PATH`): a loopback port can be bound first by another
        user of the host, who would then receive the passwords.""",
    )
    keyservice_ca_certs = Unicode(
        "",
        config=True,
        help="A PEM bundle that verifies an HTTPS key service's certificate. Default: the system's.",
    )
    keyservice_timeout = Float(
        20.0, config=True, help="Seconds to wait for the key service before the login page says it is unreachable."
    )
    keyservice_max_requests = Integer(
        100,
        config=True,
        help="""Logins the hub sends to the key service at once; more wait in the hub, within
        keyservice_timeout. The hub's own HTTP client would hold them to 10 and fail the
        rest of a burst (twenty users at nine o'clock) as 'unreachable' while they queue.""",
    )
    expiry_margin = Float(
        300.0,
        config=True,
        help="""Seconds before the certificate's end at which the user is sent to log in
        again, so that a kernel started just before the end can still log in to the cluster.
        Must be shorter than the key service's certificate lifetime.""",
    )

    @default("request_otp")
    def _default_request_otp(self) -> bool:
        return True

    @default("otp_prompt")
    def _default_otp_prompt(self) -> str:
        return "One-time code:"

    @default("enable_auth_state")
    def _default_enable_auth_state(self) -> bool:
        return True

    @default("auth_refresh_age")
    def _default_auth_refresh_age(self) -> int:
        return 1

    @default("refresh_pre_spawn")
    def _default_refresh_pre_spawn(self) -> bool:
        return True

    @default("auth_refresh_strict")
    def _default_auth_refresh_strict(self) -> bool:
        return True

    @default("allow_all")
    def _default_allow_all(self) -> bool:
        # The key service decides who gets a certificate (its users and each scope's
        # allowed_users); allowed_users here narrows that further.
        return not self.allowed_users

    @validate("keyservice_url")
    def _valid_url(self, proposal: dict) -> str:
        url = proposal["value"]
        parts = urlsplit(url)
        if parts.scheme == "http+unix" and parts.netloc and "/create_pair/" in parts.path:
            return url if url.endswith("/") else url + "/"  # a Unix socket of the hub's host
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"SSHCertAuthenticator.keyservice_url {url!r} is not an http(s) URL; set it to the "
                "key service's create_pair URL, e.g. http://127.0.0.1:8990/create_pair/default/"
            )
        if parts.scheme == "http" and parts.hostname not in LOOPBACK:
            raise ValueError(
                f"SSHCertAuthenticator.keyservice_url {url!r} is plain HTTP to another host: the "
                "password would cross the network in clear. Use https://, or a key service on 127.0.0.1."
            )
        if "/create_pair/" not in parts.path:
            raise ValueError(
                f"SSHCertAuthenticator.keyservice_url {url!r} names no scope: it must end in /create_pair/<scope>/"
            )
        return url if url.endswith("/") else url + "/"

    @validate("keyservice_max_requests")
    def _valid_max_requests(self, proposal: dict) -> int:
        if proposal["value"] < 1:
            raise ValueError(f"SSHCertAuthenticator.keyservice_max_requests must be 1 or more, not {proposal['value']}")
        return proposal["value"]

    @property
    def keyservice_client(self) -> AsyncHTTPClient:
        """A client of the authenticator's own, with keyservice_max_requests slots."""
        if getattr(self, "_keyservice_client", None) is None:
            self._keyservice_client = keyservice_http_client(self.keyservice_url, self.keyservice_max_requests)
        return self._keyservice_client

    @validate("expiry_margin")
    def _valid_margin(self, proposal: dict) -> float:
        if proposal["value"] < 0:
            raise ValueError(f"SSHCertAuthenticator.expiry_margin must be 0 or more seconds, not {proposal['value']}")
        return proposal["value"]

    def get_handlers(self, app):
        self.warn_of_granted_auth_state(app)
        self.warn_of_plain_keyservice()
        self.check_sandbox(app)
        return [
            ("/login", SSHCertLoginHandler),
            ("/logout", SSHCertLogoutHandler),
            ("/api/oauth2/token", SSHCertOAuthTokenHandler),
        ]

    def warn_of_plain_keyservice(self) -> None:
        """Plain HTTP to a loopback key service: whoever binds its port first gets the logins."""
        if urlsplit(self.keyservice_url).scheme == "http":
            self.log.warning(
                "SSHCertAuthenticator.keyservice_url %s is plain HTTP: a unix user of this host who binds "
                "its port before the key service (at a restart) receives every password and code. Serve it "
                "on a Unix socket (jupyter hpc keyservice --socket PATH; keyservice_url http+unix://...) or "
                "over HTTPS (--certfile/--keyfile) with its CA pinned in keyservice_ca_certs.",
                self.keyservice_url,
            )

    def check_sandbox(self, app) -> None:
        """At the hub's start: HPCSpawner's sandbox must work here, or be turned off by name."""
        from .spawner import HPCSpawner

        spawner_class = getattr(app, "spawner_class", None)
        if not (isinstance(spawner_class, type) and issubclass(spawner_class, HPCSpawner)):
            return
        from . import sandbox

        if not getattr(app, "internal_ssl", False):
            self.log.warning(
                "JupyterHub.internal_ssl is off: the hub hands each server its SSH credential over plain "
                "HTTP on the server's port, which another unix user of this host who binds that port "
                "first would receive. Set c.JupyterHub.internal_ssl = True."
            )
        if spawner_class(config=app.config).sandbox == "off":
            self.log.warning("HPCSpawner.sandbox is 'off': %s", sandbox.WHAT_OFF_GIVES_UP)
            return
        try:
            sandbox.check_available()
        except sandbox.SandboxUnavailable as exc:
            self.log.critical("The hub will not start: %s", exc)
            raise

    def warn_of_granted_auth_state(self, app) -> None:
        """Warn when the config still gives the ``user`` role ``admin:auth_state``: the hub
        pushes the credential to the user's server now, and that scope lets every token a
        user makes at /hub/token read their SSH key."""
        for role in getattr(app, "load_roles", None) or []:
            granted = [scope for scope in role.get("scopes", []) if scope.split("!")[0] == "admin:auth_state"]
            if role.get("name") == "user" and granted:
                self.log.warning(
                    "The 'user' role is granted %s in JupyterHub.load_roles: remove it. HPCSpawner "
                    "hands the SSH credential to the user's server itself, and with that scope every "
                    "API token a user makes at /hub/token can read their SSH private key.",
                    ", ".join(granted),
                )

    async def authenticate(self, handler, data):
        username = self.normalize_username(data.get("username") or "")
        password = data.get("password") or ""
        otp = (data.get("otp") or "").strip()
        if not username or not password or not otp:
            raise web.HTTPError(403, "Enter your user name, your password and the current one-time code.")
        if not self.keyservice_url:
            self.log.error("SSHCertAuthenticator.keyservice_url is not set")
            raise web.HTTPError(503, "Logins are not configured on this hub yet; tell the site's admins.")
        try:
            key, certificate = await request_certificate(
                self.keyservice_url, username, password, otp,
                ca_certs=self.keyservice_ca_certs or None, timeout=self.keyservice_timeout,
                http_client=self.keyservice_client,
                # The browser's address: a key service that trusts the hub locks out per address.
                client_address=handler.request.remote_ip if handler is not None else None,
            )
        except (LoginRefused, AccessDenied) as exc:
            self.log.warning("login of %s refused by the key service: %s", username, exc.log_detail)
            raise web.HTTPError(403, exc.message) from None
        except (UnknownScope, KeyServiceUnavailable, KeyServiceError) as exc:
            self.log.error("key service failed for %s: %s (%s)", username, exc.message, exc.log_detail)
            raise web.HTTPError(503, exc.message) from None
        try:
            credential = Credential.parse(key, certificate)
        except CredentialError as exc:
            self.log.error("key service sent %s an unusable credential: %s %s", username, exc.message, exc.log_detail)
            raise web.HTTPError(503, "The key service's answer was not usable; tell the site's admins.") from None
        if credential.principals and username not in credential.principals:
            self.log.error("certificate for %s names principals %s", username, credential.principals)
            raise web.HTTPError(503, "The key service issued a certificate for another user; tell the site's admins.")
        left = credential.expires_in()
        if left <= self.expiry_margin:
            self.log.error(
                "certificate for %s lasts %.0f s, not more than expiry_margin (%.0f s)", username, left, self.expiry_margin
            )
            raise web.HTTPError(
                503, "The key service's certificates are too short-lived for this hub; tell the site's admins."
            )
        self.log.info("SSH certificate %s for %s, valid %.0f s", credential.fingerprint, username, left)
        return {"name": username, "auth_state": state.to_auth_state(credential)}

    def stale_from(self, valid_before: float) -> float:
        """When a login with a certificate ending at ``valid_before`` must be renewed."""
        return valid_before - self.expiry_margin - self.auth_refresh_age

    def login_end(self, valid_before: float) -> float:
        """When the hub cookie and the servers' OAuth tokens of that login end."""
        return self.stale_from(valid_before) + self.auth_refresh_age

    async def refresh_user(self, user, handler=None):
        auth_state = await user.get_auth_state()
        valid_before = (auth_state or {}).get(state.VALID_BEFORE)
        if not valid_before or time.time() >= self.stale_from(valid_before):
            return False
        self.cap_server_tokens(user, self.login_end(valid_before))
        return True

    def cap_server_tokens(self, user, deadline: float) -> None:
        """End the browser's OAuth tokens for the user's servers with the login.

        These are the tokens JupyterHub issues to clients ``jupyterhub-user-…``; the servers'
        own API tokens and tokens the user made are left alone.
        """
        end = datetime.fromtimestamp(deadline, timezone.utc).replace(tzinfo=None)
        changed = False
        for token in user.orm_user.api_tokens:
            if (token.client_id or "").startswith("jupyterhub-user-") and (
                token.expires_at is None or token.expires_at > end
            ):
                token.expires_at = end
                changed = True
        if changed:
            user.db.commit()
