"""The demo's key service: the site's SSH certificate authority, with one user, in memory.

It is the reference key service (:mod:`jupyter_hpc.keyservice`), run in the demo's own event
loop on 127.0.0.1, with its state (CA key, the user's argon2id hash and TOTP secret, audit
log) in the demo's private state directory. The one user is the person running the demo,
since the embedded login node serves only them; their password is made for this run.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import pyotp

from ..keyservice import KeyService, UserStore

log = logging.getLogger("jupyter_hpc.demo.keyservice")


class DemoKeyService:
    """``await start()``, then :meth:`add_user`; :meth:`code` is the user's current code."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        # The demo user is whoever runs it, root included (the service refuses root by default).
        self.service = KeyService(state_dir=str(state_dir), scopes={"default": {}}, unallowed_users=[], log=log)
        self.username = ""
        self.password = ""
        self.provisioning_uri = ""
        self._totp: pyotp.TOTP | None = None

    async def start(self) -> "DemoKeyService":
        await self.service.start()
        return self

    async def stop(self) -> None:
        await self.service.stop()

    @property
    def ca_public_key(self) -> str:
        return self.service.ca_public_key

    @property
    def create_pair_url(self) -> str:
        return self.service.create_pair_url()

    def add_user(self, name: str) -> None:
        self.username = name
        self.password = "-".join(secrets.token_hex(3) for _ in range(3))
        store = UserStore(self.state_dir)
        self._totp = pyotp.TOTP(store.add_user(name, self.password, replace=True))
        self.provisioning_uri = store.provisioning_uri(name)

    def code(self) -> str:
        assert self._totp is not None
        return self._totp.now()
