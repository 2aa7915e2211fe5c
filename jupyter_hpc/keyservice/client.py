"""Asking a key service (ours or NERSC's sshproxy) for a key and certificate, from async code.

sshproxy answers ``create_pair`` with the private key text and the certificate line run
together (its certificate has no trailing newline; ours has one); :func:`split_pair` cuts at
the first line whose first word is a ``…-cert-v01@openssh.com`` type, which works for both.
Refusals become typed errors whose ``message`` a login page can show as is.
"""

from __future__ import annotations

import base64
import functools
import socket
import ssl
from urllib.parse import unquote, urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.netutil import Resolver

from .state import KeyServiceError

CERT_SUFFIX = "-cert-v01@openssh.com"
#: A key service on a Unix socket: ``http+unix://<the socket's path, %-encoded>/create_pair/<scope>/``
#: (as requests-unixsocket spells it), e.g. ``http+unix://%2Frun%2Fkeyservice%2Fks.sock/create_pair/default/``.
UNIX_SCHEME = "http+unix"


class _UnixSocketResolver(Resolver):
    """Resolves every host to one Unix socket: tornado's HTTP client then speaks HTTP over it."""

    def initialize(self, path: str) -> None:  # type: ignore[override]
        self.path = path

    async def resolve(self, host, port, family=socket.AF_UNSPEC):  # type: ignore[override]
        return [(socket.AF_UNIX, self.path)]

    def close(self) -> None:
        pass


def unix_socket_of(url: str) -> str | None:
    """The socket path of an ``http+unix://`` URL, or None for an http(s) one."""
    parts = urlsplit(url)
    return unquote(parts.netloc) if parts.scheme == UNIX_SCHEME else None


def keyservice_http_client(url: str, max_clients: int = 10) -> AsyncHTTPClient:
    """A client of its own for the key service at ``url``: over its Unix socket for an
    ``http+unix://`` URL (no port on the host that another user could bind first), else TCP."""
    path = unix_socket_of(url)
    if path is None:
        return AsyncHTTPClient(force_instance=True, max_clients=max_clients)
    return AsyncHTTPClient(force_instance=True, max_clients=max_clients, resolver=_UnixSocketResolver(path=path))


@functools.lru_cache(maxsize=8)
def _shared_unix_client(url_socket: str) -> AsyncHTTPClient:
    return AsyncHTTPClient(force_instance=True, max_clients=64, resolver=_UnixSocketResolver(path=url_socket))


class LoginRefused(KeyServiceError):
    """401: the password or one-time code was not accepted (``reason``: the key service's
    ``X-Keyservice-Reason``; ours says only ``failed`` or ``locked``)."""

    def __init__(self, message: str, *, reason: str | None = None, log_detail: str = "") -> None:
        super().__init__(message, log_detail=log_detail)
        self.reason = reason


class AccountLocked(LoginRefused):
    """401 after too many failed logins: nothing will succeed until the lock ends."""


class AccessDenied(KeyServiceError):
    """403: the user may not have certificates of this scope."""


class UnknownScope(KeyServiceError):
    """404: the key service has no such scope."""


class KeyServiceUnavailable(KeyServiceError):
    """The key service could not be reached or answered something that is not a key pair."""


# One message for every wrong password, code or replayed code, whatever reason a key service
# sends (older ones, ours included, said which): the login page must not confirm a password.
WRONG = "Wrong password or code. Enter your password and the current 6-digit code from your authenticator app."
MESSAGES = {
    "locked": "Too many failed logins: logins from your address are paused for a while. Try again later.",
}


def split_pair(body: str) -> tuple[str, str]:
    """``(private_key_text, certificate_line)`` from a ``create_pair`` response body."""
    lines = body.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if line.split(" ", 1)[0].endswith(CERT_SUFFIX):
            key = "".join(lines[:index])
            if "PRIVATE KEY-----" in key:
                return key, line.strip() + "\n"
            break
    raise KeyServiceUnavailable(
        "The key service's answer holds no private key and certificate; check that the key service "
        "URL ends in /create_pair/<scope>/.",
        log_detail=f"response of {len(body)} characters, first line {body.splitlines()[:1]!r}",
    )


def _refusal(status: int, reason: str | None, body: str, url: str) -> KeyServiceError:
    detail = f"POST {url} -> {status} {body.strip()[:200]!r}"
    if status == 401:
        if reason is None and "Too many failed logins" in body:
            reason = "locked"  # sshproxy says so in its body only
        kind = AccountLocked if reason == "locked" else LoginRefused
        return kind(MESSAGES.get(reason, WRONG), reason=reason, log_detail=detail)
    if status == 403:
        return AccessDenied("This account may not log in here (the key service refused it a certificate).", log_detail=detail)
    if status == 404:
        return UnknownScope(
            "The key service does not know the scope in its URL; check keyservice_url (…/create_pair/<scope>/).",
            log_detail=detail,
        )
    if status == 429:
        return KeyServiceUnavailable("Too many logins at once; try again in a few seconds.", log_detail=detail)
    return KeyServiceUnavailable("The key service failed; try again in a minute, or ask the site's admins.", log_detail=detail)


async def request_certificate(
    url: str,
    user: str,
    password: str,
    otp: str,
    *,
    ca_certs: str | None = None,
    timeout: float = 20.0,
    http_client: AsyncHTTPClient | None = None,
    client_address: str | None = None,
) -> tuple[str, str]:
    """POST to ``url`` (``…/create_pair/<scope>/``) as ``user`` with ``password + otp``.

    Returns ``(private_key_text, certificate_text)``; raises :class:`LoginRefused`,
    :class:`AccountLocked`, :class:`AccessDenied`, :class:`UnknownScope` or
    :class:`KeyServiceUnavailable`. ``ca_certs`` names a PEM bundle that verifies an HTTPS
    key service's certificate (default: the system's); verification is never turned off.
    An ``http+unix://`` URL reaches a key service on its Unix socket (see :data:`UNIX_SCHEME`).
    ``http_client``: the client to send with (default: the loop's shared one, whose ten
    request slots a hub must not let a burst of logins queue behind, see SSHCertAuthenticator).
    ``client_address``: the address the login came from (the browser's, for a hub), sent as
    X-Forwarded-For; a key service that lists the sender in ``trusted_proxies`` keys lockouts
    and limits by it.
    """
    token = base64.b64encode(f"{user}:{password}{otp}".encode()).decode()
    ssl_options = ssl.create_default_context(cafile=ca_certs) if url.startswith("https:") else None
    shown, path = url, unix_socket_of(url)
    if path is not None:
        # The client must resolve to the socket; the URL's host part is only a label then.
        if not isinstance(getattr(http_client, "resolver", None), _UnixSocketResolver):
            http_client = _shared_unix_client(path)
        url = "http://keyservice" + urlsplit(url).path
    request = HTTPRequest(
        url,
        method="POST",
        body=b"",
        headers={"Authorization": f"Basic {token}", **({"X-Forwarded-For": client_address} if client_address else {})},
        request_timeout=timeout,
        connect_timeout=timeout,
        ssl_options=ssl_options,
        follow_redirects=False,
    )
    try:
        response = await (http_client or AsyncHTTPClient()).fetch(request, raise_error=False)
    except (OSError, ssl.SSLError, HTTPClientError) as error:
        raise KeyServiceUnavailable(
            "The key service cannot be reached right now; try again in a minute, or ask the site's admins.",
            log_detail=f"POST {shown}: {error!r}",
        ) from None
    body = response.body.decode("utf-8", "replace") if response.body else ""
    if response.code == 599:
        raise KeyServiceUnavailable(
            "The key service cannot be reached right now; try again in a minute, or ask the site's admins.",
            log_detail=f"POST {shown}: {response.error!r}",
        )
    if response.code != 200:
        raise _refusal(response.code, response.headers.get("X-Keyservice-Reason"), body, shown)
    return split_pair(body)
