"""The user's server side of the hand-off: fetch the SSH credential from the hub, hold it in memory.

A jupyter_server extension, enabled by :class:`~jupyter_hpc.hub.spawner.HPCCredentialMixin`'s
server config. At load it marks the process non-dumpable, makes the in-memory credential
mandatory for SSH (no fallback to the hub account's own ``~/.ssh``), and fetches the user's
auth_state with the server's own API token (``GET /hub/api/users/<name>``: the whoami
endpoint ``/hub/api/user`` never fills auth_state in; the token holds
``admin:auth_state!user`` for its user only, so a server can read its own user's credential
and no one else's). Nothing is written: the credential goes straight into
:mod:`jupyter_hpc.ssh.credentials`.

It fetches again when the hub says the user logged in or out (``POST
/jupyter-hpc/api/credential``, which the hub calls with the server's token), and on its own
every ``refresh_interval`` seconds and as the certificate nears its end, for the cases the hub
could not call (a hub restarted since the spawn).

This module imports no JupyterHub code, only the singleuser server's environment.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Float, Unicode, default
from traitlets.config import LoggingConfigurable

from ..errors import HPCError
from ..ssh import credentials
from . import state


class CredentialFetcher(LoggingConfigurable):
    """Keeps :mod:`jupyter_hpc.ssh.credentials` equal to what the hub's auth_state holds."""

    refresh_interval = Float(
        60.0, config=True,
        help="Seconds between the server's own checks of the hub for a new credential (the hub also tells it at each login).",
    )
    api_url = Unicode(help="The hub API's URL; default $JUPYTERHUB_API_URL, as the hub sets it.")
    api_token = Unicode(help="The server's own hub API token; default the singleuser server's.")
    user = Unicode(help="The hub user this server belongs to; default $JUPYTERHUB_USER, as the hub sets it.")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Called with no arguments after a credential with a new key is installed: what
        # failed for want of it (the sites' first discovery) is tried again at once.
        self.on_new_credential: list = []

    @default("user")
    def _default_user(self) -> str:
        return os.environ.get("JUPYTERHUB_USER", "")

    @default("api_url")
    def _default_api_url(self) -> str:
        return os.environ.get("JUPYTERHUB_API_URL", "")

    @default("api_token")
    def _default_api_token(self) -> str:
        return os.environ.get("JUPYTERHUB_API_TOKEN", "")

    def _request_args(self) -> tuple[str, dict[str, str]]:
        if not self.api_url or not self.api_token or not self.user:
            raise HPCError(
                "This server was not started by JupyterHub (no JUPYTERHUB_API_URL, token or user): "
                "jupyter_hpc.hub.singleuser fetches the SSH credential from the hub."
            )
        url = url_path_join(self.api_url, "users", urllib.parse.quote(self.user, safe=""))
        return url, {"Authorization": f"token {self.api_token}"}

    def fetch_blocking(self) -> None:
        """At the server's start, before its loop runs (nothing else to block yet)."""
        url, headers = self._request_args()
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=20) as reply:
                self._install(json.loads(reply.read()))
        except urllib.error.HTTPError as exc:
            self._refused(exc.code)
        except (OSError, ValueError) as exc:
            self.log.error("jupyter_hpc: could not fetch the SSH credential from the hub: %s", exc)

    async def fetch(self) -> None:
        url, headers = self._request_args()
        try:
            reply = await AsyncHTTPClient().fetch(HTTPRequest(url, headers=headers, request_timeout=20))
        except HTTPClientError as exc:
            self._refused(exc.code)
            return
        except OSError as exc:
            self.log.error("jupyter_hpc: could not fetch the SSH credential from the hub: %s", exc)
            return
        self._install(json.loads(reply.body))

    def _refused(self, code: int) -> None:
        # 403 once the user's login has gone stale: they must log in again, and the hub
        # tells this server when they have.
        self.log.warning("jupyter_hpc: the hub refused the credential fetch (HTTP %s): the user must log in again", code)

    def _install(self, model: dict[str, Any]) -> None:
        if "auth_state" not in model:
            self.log.error(
                "jupyter_hpc: the hub sent no auth_state: the server's token lacks the "
                "admin:auth_state!user scope (give the 'user' role that scope and keep it in "
                "Spawner.server_token_scopes, as HPCSpawner's docs say)"
            )
            return
        try:
            credential = state.from_auth_state(model["auth_state"])
        except credentials.CredentialError as exc:
            self.log.error("jupyter_hpc: unusable credential in auth_state: %s", exc)
            return
        before = credentials.current()
        if credential is None:
            credentials.clear()
        else:
            credentials.install(credential)
        if credential is not None and (before is None or before.fingerprint != credential.fingerprint):
            for callback in self.on_new_credential:
                try:
                    callback()
                except Exception:  # one listener's failure must not lose the credential
                    self.log.exception("jupyter_hpc: a listener of the new credential failed")

    def next_check_in(self) -> float:
        """Seconds to the next check: the interval, or sooner once the certificate is near
        its end (a new login may have replaced it)."""
        credential = credentials.current()
        wait = self.refresh_interval
        if credential is not None and credential.expires_in() > 0:
            wait = min(wait, max(5.0, credential.expires_in() / 2))
        return wait

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.next_check_in())
            try:
                await self.fetch()
            except Exception:  # a failed check must not end the checking
                self.log.exception("jupyter_hpc: credential check failed")


class CredentialHandler(APIHandler):
    """``POST``: the hub says the user logged in or out; fetch the credential now."""

    @web.authenticated
    async def post(self) -> None:
        await self.settings["jupyter_hpc_credential_fetcher"].fetch()
        credential = credentials.current()
        self.finish(json.dumps({
            "fingerprint": credential.fingerprint if credential else None,
            "valid_for": round(credential.expires_in()) if credential else None,
        }))


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "jupyter_hpc.hub.singleuser"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    credentials.mark_non_dumpable()
    credentials.require(True)
    fetcher = CredentialFetcher(parent=serverapp)
    hub_auth = getattr(serverapp.identity_provider, "hub_auth", None)
    if hub_auth is not None:
        fetcher.api_url = hub_auth.api_url or fetcher.api_url
        fetcher.api_token = hub_auth.api_token or fetcher.api_token
    retry = getattr(serverapp.kernel_spec_manager, "credential_changed", None)
    if retry is not None:
        fetcher.on_new_credential.append(retry)
    started = time.monotonic()
    fetcher.fetch_blocking()
    held = credentials.current()
    serverapp.log.info(
        "jupyter_hpc: SSH credential %s (%.2f s)", held.fingerprint if held else "not yet held", time.monotonic() - started
    )
    serverapp.web_app.settings["jupyter_hpc_credential_fetcher"] = fetcher
    base_url = serverapp.web_app.settings.get("base_url", "/")
    serverapp.web_app.add_handlers(".*$", [(url_path_join(base_url, "jupyter-hpc/api/credential"), CredentialHandler)])
    serverapp.io_loop.add_callback(fetcher.run)
