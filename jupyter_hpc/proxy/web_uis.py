"""``GET /jupyter-hpc/api/proxy/kernels``: the web UIs each running cluster kernel serves, for the
Cluster sidebar's "Open" links.

A web UI here is a TCP port that the kernel's process tree listens on, on its node (a Dask
dashboard started in the kernel, TensorBoard or a Panel app it launched), as
:mod:`.node_probe` reads it from ``/proc`` there; asked on demand, cached a few seconds per
kernel. Each gets the route's URL when the route can reach it: on a compute node, a port bound
to the node's loopback only is listed without a link (the login node cannot reach it; bind
the app to the node's address).
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import web

from ..errors import HPCError
from .. import kernel_links as links
from .node_probe import kernel_remote, probe_kernel


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _unspecified(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_unspecified
    except ValueError:
        return False


def web_ui(site: str, node: str | None, on_login_node: bool, listener: dict[str, Any]) -> dict[str, Any]:
    """One listening port as the sidebar shows it: where, what, and the route's URL (or why none)."""
    address = str(listener.get("address") or "")
    port = int(listener["port"])
    if on_login_node:
        host = "127.0.0.1" if _loopback(address) or _unspecified(address) else address
    elif _loopback(address):
        host = None  # only the node itself can connect
    else:
        host = node if _unspecified(address) else address
    prefix = links.route_prefix(site)
    url = f"{prefix}/{'[' + host + ']' if host and ':' in host else host}:{port}/" if host and prefix else None
    return {
        "port": port, "address": address, "command": listener.get("command", ""), "host": host, "url": url,
        "why_no_link": None if url else "listens on the node's loopback only: bind it to the node's address "
                                         "(e.g. --host 0.0.0.0) to open it through the proxy",
    }


class WebUIsHandler(APIHandler):
    auth_resource = "kernels"

    @web.authenticated
    @authorized
    async def get(self) -> None:
        out = []
        kernels = getattr(self.kernel_manager, "_kernels", {})
        for kernel_id, km in list(kernels.items()):
            found = kernel_remote(km)
            if found is None:
                continue
            provisioner, remote = found
            try:
                site = links.kernel_site(provisioner)
            except (HPCError, ValueError):
                continue
            facts = await probe_kernel(kernel_id, km)
            if facts is None:
                continue
            own = {int(p) for p in (remote.answer.get("ports") or {}).values() if str(p).isdigit()}
            on_login_node = getattr(remote, "job_id", None) is None
            uis = [web_ui(site, facts.get("node"), on_login_node, listener)
                   for listener in facts.get("listening") or [] if int(listener["port"]) not in own]
            out.append({"kernel_id": kernel_id, "kernel_name": getattr(km, "kernel_name", ""), "site": site,
                        "node": facts.get("node"), "job_id": facts.get("job_id"), "web_uis": uis})
        self.finish(json.dumps({"kernels": out}))
