"""jupyter_hpc as a jupyter_server extension: the REST handlers of the JupyterLab extension.

Enabled by the ``jupyter_hpc.server`` entry pip installs into
``etc/jupyter/jupyter_server_config.d``, or by hand::

    c.ServerApp.jpserver_extensions = {"jupyter_hpc.server": True}

Each part of jupyter_hpc with handlers adds its own ``(pattern, handler)`` list to
``HANDLERS``; patterns are under ``/jupyter-hpc/api/`` and relative to the server's base URL.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.utils import url_path_join

from .handlers import HANDLERS as SLURM_HANDLERS

HANDLERS: list[tuple[str, type]] = [
    *SLURM_HANDLERS,
]


def load_jupyter_server_extension(serverapp: Any) -> None:
    base_url = serverapp.web_app.settings.get("base_url", "/")
    serverapp.web_app.add_handlers(".*$", [(url_path_join(base_url, pattern), handler)
                                           for pattern, handler in HANDLERS])
    serverapp.log.info("jupyter_hpc: %d REST handlers under %s", len(HANDLERS),
                       url_path_join(base_url, "jupyter-hpc/api"))
