"""Issue 26: every route a hub's user server serves is on an allow list, so a new upstream
handler that runs code on the hub host fails this test until someone looks at it.

The server is initialised as JupyterHub starts one (``tests/hub_routes_probe.py``: HPCSpawner's
config, the singleuser extension, every installed server extension), without a hub or a port.
Each entry of :data:`jupyter_hpc.hub.lockdown.TURNED_OFF` has its attack in
tests/test_hub_attacks.py; here, what the routes show of them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

PREFIX = "/user/probe/"

#: Handlers of jupyter_server, JupyterLab and JupyterHub a hub server may route, and why each
#: runs nothing of the user's on the hub host.
ALLOWED = {
    # jupyter_server: contents (SFTP, on the cluster), kernels (the cluster's), sessions, config
    # and settings in the user's own directory, status, events, the 404s and redirects.
    "jupyter_server.services.api.handlers.APISpecHandler", "jupyter_server.services.api.handlers.APIStatusHandler",
    "jupyter_server.services.api.handlers.IdentityHandler", "jupyter_server.services.api.handlers.PathResolverHandler",
    "jupyter_server.services.config.handlers.ConfigHandler",
    "jupyter_server.services.contents.handlers.CheckpointsHandler",
    "jupyter_server.services.contents.handlers.ModifyCheckpointsHandler",
    "jupyter_server.services.contents.handlers.TrustNotebooksHandler",
    "jupyter_server.services.contents.handlers.ContentsHandler",
    "jupyter_server.services.contents.handlers.NotebooksRedirectHandler",
    "jupyter_server.services.kernels.handlers.MainKernelHandler", "jupyter_server.services.kernels.handlers.KernelHandler",
    "jupyter_server.services.kernels.handlers.KernelActionHandler",
    "jupyter_server.services.kernels.websocket.KernelWebsocketHandler",
    "jupyter_server.kernelspecs.handlers.KernelSpecResourceHandler",
    "jupyter_server.services.kernelspecs.handlers.MainKernelSpecHandler",
    "jupyter_server.services.kernelspecs.handlers.KernelSpecHandler",
    # nbconvert: HubServerAuthorizer lets through only the exports that run no tool.
    "jupyter_server.nbconvert.handlers.NbconvertPostHandler", "jupyter_server.nbconvert.handlers.NbconvertFileHandler",
    "jupyter_server.services.nbconvert.handlers.NbconvertRootHandler",
    "jupyter_server.services.security.handlers.CSPReportHandler",
    "jupyter_server.services.sessions.handlers.SessionHandler", "jupyter_server.services.sessions.handlers.SessionRootHandler",
    "jupyter_server.services.shutdown.ShutdownHandler", "jupyter_server.view.handlers.ViewHandler",
    "jupyter_server.services.events.handlers.EventHandler", "jupyter_server.services.events.handlers.SubscribeWebsocket",
    "jupyter_server.base.handlers.FileFindHandler", "jupyter_server.base.handlers.TrailingSlashHandler",
    "jupyter_server.base.handlers.APIVersionHandler", "jupyter_server.base.handlers.PublicStaticFileHandler",
    "jupyter_server.base.handlers.PrometheusMetricsHandler", "jupyter_server.base.handlers.RedirectWithParams",
    "jupyter_server.base.handlers.Template404",
    # JupyterLab: its page, settings, workspaces, themes, translations, licenses (files of the
    # user's own directory or the installed app); the extension manager is read-only and the
    # plugin manager writes the user's own page config.
    "jupyterlab.handlers.extension_manager_handler.ExtensionHandler",
    "jupyterlab.handlers.plugin_manager_handler.PluginHandler",
    "jupyterlab.handlers.announcements.CheckForUpdateHandler", "jupyterlab.handlers.announcements.NewsHandler",
    "jupyterlab_server.handlers.LabHandler", "jupyterlab_server.handlers.NotFoundHandler",
    "jupyterlab_server.settings_handler.SettingsHandler", "jupyterlab_server.translations_handler.TranslationsHandler",
    "jupyterlab_server.workspaces_handler.WorkspacesHandler", "jupyterlab_server.listings_handler.ListingsHandler",
    "jupyterlab_server.themes_handler.ThemesHandler", "jupyterlab_server.licenses_handler.LicensesHandler",
    # JupyterHub's own: its OAuth callback and logout.
    "jupyterhub.singleuser.extension.JupyterHubLogoutHandler",
    "jupyterhub.singleuser.extension.JupyterHubOAuthCallbackHandler",
}
#: jupyter_hpc's own routes: files, kernels, terminals and the proxy on the cluster, over SSH.
OWN = ("jupyter_hpc.",)
#: Shadowed by a RefusedHandler ahead of it: listed, never reached.
SHADOWED = {"jupyterlab.handlers.build_handler.BuildHandler"}


@pytest.fixture(scope="module")
def routes() -> list[tuple[str, str]]:
    probe = Path(__file__).with_name("hub_routes_probe.py")
    out = subprocess.run([sys.executable, str(probe)], capture_output=True, text=True, timeout=100)
    assert out.returncode == 0, out.stderr[-3000:]
    return [tuple(row) for row in json.loads(out.stdout)]


def first_handler(routes, path: str) -> str:
    return next(handler for pattern, handler in routes if re.fullmatch(pattern, path))


def test_every_route_of_a_hub_server_is_on_the_allow_list(routes):
    unknown = sorted({handler for _, handler in routes
                      if handler not in ALLOWED and handler not in SHADOWED and not handler.startswith(OWN)})
    assert unknown == [], f"routes no one has checked for running code on the hub host: {unknown}"
    assert len(routes) > 40  # the probe saw a whole server


def test_what_is_turned_off_is_not_routed(routes):
    handlers = {handler for _, handler in routes}
    # Local terminals (jupyter_server_terminals, terminado) and jupyter_lsp are not loaded at all.
    assert not [h for h in handlers if h.startswith(("jupyter_server_terminals.", "terminado.", "jupyter_lsp."))]
    # JupyterLab's build answers 403 before its own handler is reached.
    assert first_handler(routes, f"{PREFIX}lab/api/build") == "jupyter_hpc.hub.lockdown.RefusedHandler"
    # Terminals, where routed, are jupyter_hpc's (a shell on the cluster over SSH).
    for path in (f"{PREFIX}api/terminals", f"{PREFIX}terminals/websocket/1"):
        handler = first_handler(routes, path)
        assert handler.startswith("jupyter_hpc.") or handler.endswith(("Template404", "NotFoundHandler")), (path, handler)
