"""JupyterHub pieces: log in for a short-lived SSH certificate, and hand it to the user's server.

``SSHCertAuthenticator`` trades password + one-time code at a key service (ours, or NERSC's
sshproxy) for a key and certificate kept in encrypted ``auth_state``, and sends the user back
to the login page before the certificate ends. ``HPCSpawner`` starts the user's server as the
hub's own unix user (no root), in a bubblewrap sandbox (:mod:`.sandbox`), configured for the
cluster only with nothing that runs user content on the hub host (:mod:`.lockdown`); the hub
pushes the credential to the server (:mod:`jupyter_hpc.hub.singleuser`), which holds it in
memory. ``HPCCredentialMixin`` carries the hand-off and the lockdown onto other spawners.

This is the only package of jupyter_hpc that imports JupyterHub; the names load lazily so that
the single-user side (:mod:`jupyter_hpc.hub.singleuser`) does not pull in the hub's.
"""

from __future__ import annotations

from typing import Any

__all__ = ["HPCCredentialMixin", "HPCSpawner", "SSHCertAuthenticator"]


def __getattr__(name: str) -> Any:
    if name == "SSHCertAuthenticator":
        from .authenticator import SSHCertAuthenticator

        return SSHCertAuthenticator
    if name in ("HPCSpawner", "HPCCredentialMixin"):
        from . import spawner

        return getattr(spawner, name)
    raise AttributeError(name)
