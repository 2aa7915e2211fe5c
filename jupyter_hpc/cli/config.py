"""The CLI reads the sites from the same files a server does, and writes the user's JSON one.

``jupyter hpc`` must see exactly the sites JupyterLab will: the ``jupyter_server_config``
``.py`` and ``.json`` files on Jupyter's config path, with the user's own directory winning.
Writes go to the user's ``jupyter_server_config.json`` only (never a ``.py`` file, which is
the user's code), keeping every other setting in it as it was.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_config_dir, jupyter_config_path
from traitlets.config import Application, Config

from ..errors import HPCError
from ..sites import HPCSites

SERVER_CONFIG = "jupyter_server_config"


def load_config() -> Config:
    """The merged server config, lowest priority first, as jupyter_server loads it."""
    app = Application()
    for directory in reversed(jupyter_config_path()):
        app.load_config_file(SERVER_CONFIG, path=[directory])
    return app.config


def load_sites() -> HPCSites:
    return HPCSites(config=load_config())


def user_config_file() -> Path:
    return Path(jupyter_config_dir()) / f"{SERVER_CONFIG}.json"


def read_user_config() -> dict[str, Any]:
    path = user_config_file()
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise HPCError(f"Cannot read {path}: {exc}. Fix or move it, then try again.") from None
    if not isinstance(data, dict):
        raise HPCError(f"{path} does not hold a JSON object; fix or move it, then try again.")
    return data


def write_user_config(data: dict[str, Any]) -> Path:
    """Replace the file in one step (a temporary file, then rename): an interrupted write
    never leaves half a config."""
    path = user_config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(temporary, path)
    return path
