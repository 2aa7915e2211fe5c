"""``POST /jupyter-hpc/api/kernelspecs/refresh``: list the sites' kernelspecs again now;
``GET /jupyter-hpc/api/kernelspecs/first``: wait for the sites' first lists.

For a kernelspec just written on the cluster (``jupyter hpc kernel create``, or by hand): the
launcher's next poll of /api/kernelspecs then shows it, with no restart and no TTL wait.
"""

from __future__ import annotations

import json

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from ..errors import HPCError


class RefreshKernelSpecsHandler(APIHandler):
    """Authenticated and XSRF-checked as every jupyter_server API POST is."""

    auth_resource = "kernelspecs"

    @web.authenticated
    async def post(self) -> None:
        ksm = self.kernel_spec_manager
        if not hasattr(ksm, "refresh"):
            raise web.HTTPError(400, "The server's kernel_spec_manager_class is not jupyter_hpc's RemoteKernelSpecManager.")
        body = json.loads(self.request.body or b"{}") if self.request.body else {}
        site = body.get("site") if isinstance(body, dict) else None
        try:
            results = await ksm.refresh(site)
        except HPCError as exc:
            raise web.HTTPError(404, str(exc)) from exc
        sites = {}
        for name, result in results.items():
            listing = ksm.listing(name)
            entry = {"ok": not isinstance(result, Exception), "kernelspecs": sorted(listing.specs),
                     "warnings": list(listing.warnings)}
            if isinstance(result, Exception):
                entry["error"] = str(result) or type(result).__name__
            sites[name] = entry
        self.finish(json.dumps({"sites": sites}))


class FirstKernelSpecsHandler(APIHandler):
    """``GET …/kernelspecs/first?timeout=N``: answers once every site's first kernelspec list is
    in (at most N seconds, 60 by default): /api/kernelspecs answers at once, before that, and
    the JupyterLab extension refreshes the launcher when this returns. Awaited, never blocking."""

    auth_resource = "kernelspecs"

    @web.authenticated
    async def get(self) -> None:
        try:
            timeout = min(max(float(self.get_argument("timeout", "60")), 0.0), 300.0)
        except ValueError:
            raise web.HTTPError(400, "timeout must be a number of seconds") from None
        first = getattr(self.kernel_spec_manager, "first_listing", None)
        complete = True if first is None else await first(timeout)
        self.finish(json.dumps({"complete": complete}))


def handlers(base_url: str) -> list:
    return [(url_path_join(base_url, "jupyter-hpc/api/kernelspecs/refresh"), RefreshKernelSpecsHandler),
            (url_path_join(base_url, "jupyter-hpc/api/kernelspecs/first"), FirstKernelSpecsHandler)]
