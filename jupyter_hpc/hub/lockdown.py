"""Nothing runs on the hub host on a user's word: the one list of what a hub's servers turn off.

Every user's server runs on the hub host as the hub's unix user. Any path of jupyter_server or
JupyterLab that executes or renders user content *there* would hand a user the hub host, and
from it every other user's credential. Each entry of :data:`TURNED_OFF` names such a path, why it
is dangerous, and the jupyter_server config that turns it off; :func:`lockdown_config` merges
them into the server config :class:`~jupyter_hpc.hub.spawner.HPCCredentialMixin` writes. Each
entry has its attack in ``tests/test_hub_attacks.py``, and ``tests/test_hub_lockdown.py`` lists
every handler a hub server routes and fails on one that is on no allow list (new upstream
handlers that run code are the thing to watch).

What stays on is jupyter_hpc's own: kernels and terminals on the cluster over SSH, files over
SFTP, the proxy to the cluster's web UIs.

Exports that run no tool (HTML sanitised, Markdown, Python script, notebook, reST, AsciiDoc)
stay. :class:`HubServerAuthorizer` refuses the others, and any HTML export asking for
``sanitize_html=false``: jupyter_server reads that per request and nbconvert's own ``enabled``
switch is not consulted by the server's handler, so config alone cannot close them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jupyter_server.auth.authorizer import AllowAllAuthorizer
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web


@dataclasses.dataclass(frozen=True)
class TurnedOff:
    name: str
    why: str
    config: dict[str, dict[str, Any]]
    #: Routes (under the server's base URL) answered 403 ahead of whatever else serves them,
    #: where no config turns the handler off.
    routes: tuple[str, ...] = ()


#: The nbconvert formats a hub server may export: none runs a tool (LaTeX, a browser, Qt).
SAFE_EXPORT_FORMATS = frozenset({"html", "markdown", "python", "script", "notebook", "rst", "asciidoc"})

TURNED_OFF: tuple[TurnedOff, ...] = (
    TurnedOff(
        "JupyterLab's extension manager",
        "'install' runs pip (a package's setup.py) on the hub host; 'uninstall' changes the "
        "environment every user's server shares",
        {"LabApp": {"extension_manager": "readonly"}},
    ),
    TurnedOff(
        "jupyter_lsp",
        "starts language servers (processes of the hub host) on the files a user opens",
        {"ServerApp": {"jpserver_extensions": {"jupyter_lsp": False}}},
    ),
    TurnedOff(
        "nbconvert exports that run tools",
        "PDF and LaTeX run xelatex, webpdf and qtpdf/qtpng a browser or Qt, on the notebook's content",
        {"ServerApp": {"authorizer_class": "jupyter_hpc.hub.lockdown.HubServerAuthorizer"}},
    ),
    TurnedOff(
        "unsanitised HTML export",
        "a notebook's HTML and script, rendered by the user's browser as the server's page",
        {"HTMLExporter": {"sanitize_html": True},
         "ServerApp": {"authorizer_class": "jupyter_hpc.hub.lockdown.HubServerAuthorizer"}},
    ),
    TurnedOff(
        "JupyterLab's build",
        "POST /lab/api/build runs jlpm and webpack (node) on the hub host, in the application "
        "directory every user's server shares; no setting turns its route off",
        {},
        routes=(r"lab/api/build",),
    ),
    TurnedOff(
        "local kernels",
        "a kernel is code run by the user: only the cluster's kernelspecs are offered",
        {"RemoteKernelSpecManager": {"include_local": False}},
    ),
    TurnedOff(
        "local terminals",
        "a shell on the hub host (jupyter_hpc's terminals, on the cluster over SSH, stay on)",
        {"ServerApp": {"terminals_enabled": False, "jpserver_extensions": {"jupyter_server_terminals": False}}},
    ),
)


def lockdown_config() -> dict[str, dict[str, Any]]:
    """The jupyter_server config of every entry of :data:`TURNED_OFF`, merged."""
    config: dict[str, dict[str, Any]] = {}
    for entry in TURNED_OFF:
        for section, values in entry.config.items():
            target = config.setdefault(section, {})
            for name, value in values.items():
                if isinstance(value, dict):
                    target.setdefault(name, {}).update(value)
                else:
                    target[name] = value
    return config


class HubServerAuthorizer(AllowAllAuthorizer):
    """Every authenticated user may do what jupyter_server allows, except the exports that run
    a tool on the hub host or render unsanitised HTML (jupyter_server answers 403)."""

    def is_authorized(self, handler, user, action, resource) -> bool:
        export_format = handler.path_kwargs.get("format") or (handler.path_args or [None])[0]
        if resource == "nbconvert" and export_format:
            export_format = str(export_format)
            if export_format not in SAFE_EXPORT_FORMATS:
                self.log.warning("jupyter_hpc: refused an nbconvert export to %r on the hub host", export_format)
                return False
            if export_format == "html" and handler.get_argument("sanitize_html", "true").lower() != "true":
                self.log.warning("jupyter_hpc: refused an unsanitised HTML export on the hub host")
                return False
        return super().is_authorized(handler, user, action, resource)


class RefusedHandler(JupyterHandler):
    """What a route of :data:`TURNED_OFF` answers, whatever the method: 403 and why."""

    def prepare(self):  # type: ignore[override]
        raise web.HTTPError(403, "Turned off on this hub: it would run on the hub host, not the cluster.")


def refuse_routes(web_app: Any) -> None:
    """Answer every entry's ``routes`` with :class:`RefusedHandler`, ahead of every other rule
    (tornado matches rules in order, and the handlers they shadow were added before)."""
    base_url = web_app.settings.get("base_url", "/")
    rules = [(url_path_join(base_url, route), RefusedHandler) for entry in TURNED_OFF for route in entry.routes]
    web_app.add_handlers(".*$", rules)
    router_rules = web_app.default_router.rules
    router_rules.insert(0, router_rules.pop(-2))  # add_handlers put them before the catch-all
