"""Where and as whom to connect: one options object, the way asyncssh takes its options.

An :class:`SSHTarget` is frozen and hashable so that it can key the connection pool: two
kernels with the same credential, host, port, user and jump host share one connection.
Keys held in memory (as the hub hands them over) are identified by their public key's
fingerprint, never by their secret.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

from .quiet_import import asyncssh


# AES-GCM first: with AES-NI it costs asyncssh about a third less CPU per packet than
# chacha20-poly1305 (benchmarks/profile_transport.py), which is most of a round trip's overhead.
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


@dataclasses.dataclass(frozen=True)
class SSHTarget:
    """A host to reach over SSH and the credentials to reach it with.

    ``port`` and ``username`` left as None come from ``~/.ssh/config``, else 22 and the local
    user, as with OpenSSH. ``known_hosts`` is a path; ``None`` means OpenSSH's default (``~/.ssh/known_hosts``).
    Host keys are always checked: there is deliberately no way to turn that off here.
    ``client_keys`` are paths (an ``-cert.pub`` beside a key is used as its certificate);
    when empty, asyncssh's defaults apply (the ssh-agent, ``~/.ssh/id_*``, ``~/.ssh/config``).
    ``identities`` are keys held in memory, as ``(private_key, certificate_or_None)`` pairs
    of OpenSSH-format text.
    """

    host: str
    port: int | None = None
    username: str | None = None
    client_keys: tuple[str, ...] = ()
    identities: tuple[tuple[str, str | None], ...] = dataclasses.field(default=(), repr=False)
    known_hosts: str | None = None
    jump_host: str | None = None
    connect_timeout: float = 20.0
    ciphers: tuple[str, ...] = ()
    keepalive_interval: float = 15.0
    keepalive_count_max: int = 4

    @classmethod
    def parse(cls, spec: str, **defaults: Any) -> "SSHTarget":
        """Build a target from ``[user@]host[:port]``; ``defaults`` supply the rest."""
        user, _, hostport = spec.rpartition("@")
        host, port = hostport, defaults.pop("port", None)
        if hostport.count(":") == 1:
            host, port_text = hostport.split(":")
            port = int(port_text)
        username = defaults.pop("username", None)
        return cls(host=host, port=int(port) if port else None, username=user or username, **defaults)

    def jump_target(self) -> "SSHTarget | None":
        """The jump host as a target of its own, with the same credentials and known_hosts.

        ``jump_host`` may be a chain, ``first,second`` as in OpenSSH's ProxyJump: the last hop
        is reached through the ones before it.
        """
        if not self.jump_host:
            return None
        *before, last = [hop.strip() for hop in self.jump_host.split(",")]
        return SSHTarget.parse(
            last,
            jump_host=",".join(before) or None,
            username=self.username,
            client_keys=self.client_keys,
            identities=self.identities,
            known_hosts=self.known_hosts,
            connect_timeout=self.connect_timeout,
            keepalive_interval=self.keepalive_interval,
            keepalive_count_max=self.keepalive_count_max,
        )

    def spec(self) -> str:
        """``[user@]host[:port]``, as ``parse`` and ``jump_host`` take it."""
        user = f"{self.username}@" if self.username else ""
        return f"{user}{self.host}:{self.port}" if self.port else f"{user}{self.host}"

    def credential_id(self) -> str:
        """Identify the credential without revealing it: key paths or public fingerprints."""
        parts = [os.path.abspath(os.path.expanduser(path)) for path in self.client_keys]
        for private, _certificate in self.identities:
            key = asyncssh.import_private_key(private)
            parts.append(key.convert_to_public().get_fingerprint("sha256"))
        return "|".join(parts) or "default"

    def pool_key(self) -> tuple:
        """Connections are shared only between targets with the same credential and trust:
        a kernel that pins a different known_hosts must not ride a connection verified
        against another one."""
        known_hosts = os.path.abspath(os.path.expanduser(self.known_hosts)) if self.known_hosts else None
        return (self.credential_id(), self.host, self.port, self.username, self.jump_host, known_hosts)

    def connect_options(self) -> dict[str, Any]:
        """Keyword arguments for ``asyncssh.connect`` (tunnel excluded)."""
        options: dict[str, Any] = {
            "host": self.host,
            "connect_timeout": self.connect_timeout,
            "login_timeout": self.connect_timeout,
            "keepalive_interval": self.keepalive_interval,
            "keepalive_count_max": self.keepalive_count_max,
        }
        if self.port:
            options["port"] = self.port
        preferred = list(self.ciphers or PREFERRED_CIPHERS)
        supported = [alg.decode() for alg in asyncssh.encryption.get_encryption_algs()]
        options["encryption_algs"] = preferred + [alg for alg in supported if alg not in preferred]
        if self.username:
            options["username"] = self.username
        if self.known_hosts is not None:
            options["known_hosts"] = os.path.expanduser(self.known_hosts)
        keys: list[Any] = [os.path.expanduser(path) for path in self.client_keys]
        for private, certificate in self.identities:
            key = asyncssh.import_private_key(private)
            keys.append((key, asyncssh.import_certificate(certificate)) if certificate else key)
        if keys:
            options["client_keys"] = keys
            options["agent_path"] = None
        return options


def as_tuple(values: Sequence[str] | None) -> tuple[str, ...]:
    return tuple(values or ())
