"""The user's server side of the hand-off: the hub pushes the SSH credential, the server holds it in memory.

A jupyter_server extension, enabled by :class:`~jupyter_hpc.hub.spawner.HPCCredentialMixin`'s
server config. At load it marks the process non-dumpable and makes the in-memory credential
mandatory for SSH (no fallback to the hub account's own ``~/.ssh``).

The server cannot read the credential from the hub: no token of a server or a user holds
``admin:auth_state``, so a leaked server token or a personal API token reads no key. Instead
the hub pushes it: ``POST /jupyter-hpc/api/credential`` with ``{"auth_state": {...}}`` (or
``{"auth_state": null}`` at logout), once the server answers after a spawn and again at every
login and logout. Only the hub can push: the request must carry this server's own API token
(``Authorization: token …``, compared here in constant time, never sent anywhere else), which
the hub gave this server at spawn and which the server's kernels never see
(:mod:`jupyter_hpc.provisioners.kernel_env`). The channel is the hub's own connection to the
server (JupyterHub's ``internal_ssl`` makes it TLS with the hub's pinned CA). ``GET`` answers
the held credential's fingerprint and validity, never the credential, to anyone the server's
normal authentication lets in (the push passes it too: the server's token authenticates as the server).

**Where the credential is**: :mod:`jupyter_hpc.ssh.credentials` is the one place in the server
that holds the current credential. Every part that connects asks it at connect time
(``credentials.identities()``, through ``SSHTarget``; ``credentials.current()`` for its
fingerprint and end), so a new login reaches the next connection of every part without that
part being told; a part that wants to act at once on a new credential appends a callback to
``server.web_app.settings["jupyter_hpc_credential_receiver"].on_new_credential``.

This module imports no JupyterHub code, only the singleuser server's environment.
"""

from __future__ import annotations

import hmac
import json
import os
from typing import Any

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web
from traitlets import Unicode, default
from traitlets.config import LoggingConfigurable

from ..ssh import credentials
from . import lockdown, state


class CredentialReceiver(LoggingConfigurable):
    """Installs what the hub pushes into :mod:`jupyter_hpc.ssh.credentials`."""

    api_token = Unicode(help="The server's own hub API token (the hub's proof on a push); default the singleuser server's.")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Called with no arguments after a credential with a new key is installed: what
        # failed for want of it (the sites' first discovery) is tried again at once.
        self.on_new_credential: list = []

    @default("api_token")
    def _default_api_token(self) -> str:
        return os.environ.get("JUPYTERHUB_API_TOKEN", "")

    def from_the_hub(self, authorization: str) -> bool:
        """Whether an ``Authorization`` header is the hub's (this server's own token)."""
        if not self.api_token:
            return False
        return hmac.compare_digest(authorization.encode(), f"token {self.api_token}".encode())

    def install(self, auth_state: dict[str, Any] | None) -> None:
        """The credential in ``auth_state`` becomes the server's; none (logout) clears it."""
        credential = state.from_auth_state(auth_state)
        before = credentials.current()
        if credential is None:
            credentials.clear()
            return
        credentials.install(credential)
        if before is None or before.fingerprint != credential.fingerprint:
            for callback in self.on_new_credential:
                try:
                    callback()
                except Exception:  # one listener's failure must not lose the credential
                    self.log.exception("jupyter_hpc: a listener of the new credential failed")


def _held() -> dict[str, Any]:
    credential = credentials.current()
    return {
        "fingerprint": credential.fingerprint if credential else None,
        "valid_for": round(credential.expires_in()) if credential else None,
    }


class CredentialHandler(APIHandler):
    """``POST``: the hub pushes the user's credential (or its removal). ``GET``: what is held."""

    @property
    def receiver(self) -> CredentialReceiver:
        return self.settings["jupyter_hpc_credential_receiver"]

    @web.authenticated
    def get(self) -> None:
        self.finish(json.dumps(_held()))

    @web.authenticated
    def post(self) -> None:
        if not self.receiver.from_the_hub(self.request.headers.get("Authorization", "")):
            # Not even an authenticated user may push: a credential is the hub's to give.
            raise web.HTTPError(403, "Only the hub hands this server a credential.")
        try:
            body = json.loads(self.request.body or b"{}")
            auth_state = body["auth_state"]
            self.receiver.install(auth_state)
        except (ValueError, KeyError, TypeError, credentials.CredentialError) as exc:
            message = getattr(exc, "message", None) or type(exc).__name__
            self.log.error("jupyter_hpc: unusable credential pushed by the hub: %s", message)
            raise web.HTTPError(400, "The credential pushed is not usable.") from None
        self.finish(json.dumps(_held()))


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "jupyter_hpc.hub.singleuser"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    credentials.mark_non_dumpable()
    credentials.require(True)
    receiver = CredentialReceiver(parent=serverapp)
    hub_auth = getattr(serverapp.identity_provider, "hub_auth", None)
    if hub_auth is not None and hub_auth.api_token:
        receiver.api_token = hub_auth.api_token
    retry = getattr(serverapp.kernel_spec_manager, "credential_changed", None)
    if retry is not None:
        receiver.on_new_credential.append(retry)
    serverapp.web_app.settings["jupyter_hpc_credential_receiver"] = receiver
    base_url = serverapp.web_app.settings.get("base_url", "/")
    serverapp.web_app.add_handlers(".*$", [(url_path_join(base_url, "jupyter-hpc/api/credential"), CredentialHandler)])
    lockdown.refuse_routes(serverapp.web_app)
    serverapp.log.info("jupyter_hpc: waiting for the hub to hand over the SSH credential")
