"""Put the cluster's terminals in place of the local ones, in a jupyter_server with sites.

Called by the jupyter_hpc server extension. With ``c.HPCSites.sites`` naming a site, our
routes answer ``/api/terminals`` and ``/terminals/websocket/<name>`` ahead of any other
extension's (jupyter_server_terminals', whose local shells would run on the server's host),
and JupyterLab's page config says terminals are available when a site offers them. This holds
whatever ``ServerApp.terminals_enabled`` says: that setting is about local shells, which a hub
turns off; no shell here ever runs on the server's host.
"""

from __future__ import annotations

from typing import Any

from ..sites import HPCSites
from .handlers import SETTING, handlers
from .manager import HPCTerminalManager


def add_handlers_first(web_app: Any, rules: list) -> None:
    """Add ``rules`` ahead of every extension's, whatever the order extensions load in.

    tornado's ``add_handlers`` inserts each host rule before the catch-all, so of two
    extensions claiming a route the first loaded would win; ours is moved to the front."""
    web_app.add_handlers(".*$", rules)
    router_rules = web_app.default_router.rules
    router_rules.insert(0, router_rules.pop(-2))


def load_terminals(serverapp: Any) -> HPCTerminalManager | None:
    """Serve the sites' terminals; None (local terminals left as they are) with no site."""
    web_app = serverapp.web_app
    if SETTING in web_app.settings:  # loaded as both "jupyter_hpc" and "jupyter_hpc.server"
        return web_app.settings[SETTING]
    sites = HPCSites(parent=serverapp).all()
    if not sites:
        return None
    manager = HPCTerminalManager(sites, parent=serverapp, log=serverapp.log)
    web_app.settings[SETTING] = manager
    add_handlers_first(web_app, handlers(web_app.settings["base_url"]))

    def claim() -> None:
        # Again once every extension has loaded: jupyter_server_terminals sets these too.
        web_app.settings["terminal_manager"] = manager
        web_app.settings["terminals_available"] = manager.available

    claim()
    serverapp.io_loop.add_callback(claim)
    offered = [site.display_name for site in sites if site.terminals]
    serverapp.log.info("jupyter_hpc: terminals open shells on %s", ", ".join(offered) or "no site (all say terminals: false)")
    return manager
