"""jupyter_hpc as a jupyter_server extension: the REST handlers under ``/jupyter-hpc/api/``.

Enabled by ``jupyter_server_config.d/jupyter_hpc.json`` (installed with the package) or
``c.ServerApp.jpserver_extensions = {"jupyter_hpc": True}``. Another part adds its handlers
by listing a module with a ``handlers(base_url) -> list`` function in ``HANDLER_MODULES``.
"""

from __future__ import annotations

import importlib

HANDLER_MODULES = ["jupyter_hpc.server.discovery_handlers", "jupyter_hpc.server.handlers", "jupyter_hpc.proxy.handlers",
                   "jupyter_hpc.kernelspecs.handlers"]


def _link_jupyter_server_extension(serverapp) -> None:
    # Before the kernel and kernelspec managers are made (they may log in at once): the SSH
    # layer runs in the server's own loop, so no message crosses threads on its way
    # (``JUPYTER_HPC_SSH_LOOP=thread`` keeps the SSH layer's thread, for comparison).
    import os

    if os.environ.get("JUPYTER_HPC_SSH_LOOP", "").lower() != "thread":
        from ..ssh.loop import adopt_loop

        adopt_loop(serverapp.io_loop.asyncio_loop)


def _load_jupyter_server_extension(serverapp) -> None:
    # Enabled under both names ("jupyter_hpc" by the installed config, "jupyter_hpc.server" by
    # older configs and the hub's servers), it must still register each route and start once.
    if serverapp.web_app.settings.get("jupyter_hpc_extension_loaded"):
        return
    serverapp.web_app.settings["jupyter_hpc_extension_loaded"] = True
    base_url = serverapp.web_app.settings["base_url"]
    for module in HANDLER_MODULES:
        serverapp.web_app.add_handlers(".*$", importlib.import_module(module).handlers(base_url))
    serverapp.log.info("jupyter_hpc: REST handlers under %sjupyter-hpc/api/", base_url)
    from ..terminals import load_terminals

    load_terminals(serverapp)  # with sites: JupyterLab's Terminal opens shells there, none here
    from .connect_ahead import ConnectAhead

    ConnectAhead(parent=serverapp).start(serverapp)
