"""What the spawn page says once the user's server runs: the admin's mistakes where the admin looks.

A server that starts but cannot use the cluster used to show an empty launcher, and the reason
only in the server's log. Here the spawn waits for the two things a working server needs, and
says each on JupyterHub's spawn page (``Spawner.progress``):

1. the hub's push of the user's SSH credential reaches the server ("Certificate received by
   your server"); a server that refuses it or never answers fails the spawn with a message
   naming what to fix (the server extension missing, the hub's token refused);
2. each site's first discovery ("Kernels on Cori discovered (3)", or the site's error). When
   no site offers a kernel, the spawn fails with those errors instead of showing an empty
   launcher; a site down among several is said and the server starts with the others.

The discovery is asked of the server itself (``POST /jupyter-hpc/api/kernelspecs/refresh``,
with the server's own token), so what the page says is what the launcher will show.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

#: Seconds a server that answers 404 to the push (not yet, or never, serving it) is given.
PUSH_404_GRACE = 3.0


class ServerNotUsable(Exception):
    """The server runs but cannot serve the user: ``jupyterhub_message`` is what the spawn page
    shows (JupyterHub reads that attribute of a failed spawn's exception)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.jupyterhub_message = message


def point_server_at(spawner: Any, started: Any) -> None:
    """Give ``spawner.server`` the address ``Spawner.start`` returns (``(ip, port)`` or a URL),
    as JupyterHub does once start returns, so that the report can reach the server from
    within start (JupyterHub sets the same values again afterwards)."""
    if not started or spawner.server is None:
        return
    if not isinstance(started, str):
        ip, port = started
        started = f"{'https' if spawner.internal_ssl else 'http'}://{f'[{ip}]' if ':' in ip else ip}:{int(port)}"
    url = urlparse(started)
    spawner.server.proto = url.scheme
    spawner.server.ip = url.hostname
    spawner.server.port = url.port or (443 if url.scheme == "https" else 80)


async def deliver_credential(spawner: Any, timeout: float) -> None:
    """Push the credential once the server answers; raise :class:`ServerNotUsable` naming the
    fix when the server refuses it, or never answers within ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    first_404 = None
    last = "it never answered"
    while loop.time() < deadline:
        if await spawner.poll() is not None:
            raise ServerNotUsable("Your server exited while starting; the hub's log has its output.")
        if spawner.server is not None and spawner.api_token:
            try:
                await spawner.notify_credential()
                return
            except HTTPClientError as exc:
                if exc.code == 404:
                    first_404 = first_404 or loop.time()
                    last = "it answered 404 for /jupyter-hpc/api/credential"
                    if loop.time() - first_404 > PUSH_404_GRACE:
                        raise ServerNotUsable(
                            "Your server does not take the SSH certificate from the hub (404 for "
                            "/jupyter-hpc/api/credential): the jupyter_hpc.hub.singleuser server extension is "
                            "not enabled. Install jupyter-hpc in the servers' environment and keep "
                            "HPCSpawner's server config (c.HPCSpawner.server_config_overrides must not turn "
                            "ServerApp.jpserver_extensions off)."
                        ) from None
                elif exc.code in (401, 403):
                    raise ServerNotUsable(
                        f"Your server refused the hub's SSH certificate (HTTP {exc.code}): the hub's token "
                        "for it was not accepted. Keep HPCSpawner's server_token_scopes (access:servers!server) "
                        "and restart the server from the hub's home page."
                    ) from None
                elif exc.code not in (599, 502, 503):
                    raise ServerNotUsable(f"Your server refused the hub's SSH certificate: {exc}") from None
                else:
                    last = f"HTTP {exc.code}"
            except OSError as exc:
                last = str(exc)
        await asyncio.sleep(0.2)
    raise ServerNotUsable(f"The hub could not hand your server its SSH certificate within {timeout:.0f} s "
                          f"({last}). Is the server reachable from the hub at {getattr(spawner.server, 'url', '?')}?")


async def discovered(spawner: Any, timeout: float) -> dict[str, dict[str, Any]]:
    """Each site's discovery as the server did it: ``{site: {"ok", "kernelspecs", "error"}}``."""
    url = f"{spawner.server.url.rstrip('/')}/jupyter-hpc/api/kernelspecs/refresh"
    request = HTTPRequest(
        url, method="POST", body=b"{}", request_timeout=timeout,
        headers={"Authorization": f"token {spawner.api_token}", "Content-Type": "application/json"},
        **spawner._internal_ssl_options(),
    )
    try:
        reply = await AsyncHTTPClient().fetch(request)
    except HTTPClientError as exc:
        detail = exc.response.body.decode(errors="replace")[:500] if exc.response is not None else str(exc)
        raise ServerNotUsable(f"Your server could not list the cluster's kernels (HTTP {exc.code}): {detail}") from None
    return json.loads(reply.body)["sites"]


async def report_server(spawner: Any, stage: Callable[[int, str], None], display_names: dict[str, str],
                        timeout: float) -> None:
    """The credential delivered, then each site's kernels, each said with ``stage``; raise
    :class:`ServerNotUsable` when the credential cannot be delivered or no site has a kernel."""
    await deliver_credential(spawner, timeout)
    stage(70, "Certificate received by your server")
    sites = await discovered(spawner, timeout)
    errors = []
    total = 0
    for index, (name, result) in enumerate(sites.items()):
        shown = display_names.get(name, name)
        if result.get("ok"):
            count = len(result.get("kernelspecs") or [])
            total += count
            stage(80 + index, f"Kernels on {shown} discovered ({count})")
        else:
            error = f"Kernels on {shown} not discovered: {result.get('error') or 'unknown error'}"
            errors.append(error)
            stage(80 + index, error)
    if total == 0:
        said = "; ".join(errors) or "the sites offer no kernelspec (see `jupyter hpc doctor SITE`)"
        raise ServerNotUsable(f"Your server has no kernel to offer: {said}")
