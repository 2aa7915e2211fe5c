"""Every route a hub's user server serves, as JSON: ``[[pattern, handler class], ...]`` in match order.

Run in a fresh interpreter (tests/test_hub_lockdown.py does): it writes the server config
HPCSpawner writes, sets the environment JupyterHub gives a server, answers the one hub API call
the singleuser extension makes at load (its version) from a thread, and initialises the server
exactly as ``python -m jupyterhub.singleuser`` does, without starting it.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import tempfile
import threading
import types

import jupyterhub
from traitlets.config import Config

from jupyter_hpc.hub.spawner import HPCSpawner

USER = "probe"


class VersionOnlyHub(http.server.BaseHTTPRequestHandler):
    """The hub API's answer to the version check the singleuser extension makes at load."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = json.dumps({"version": jupyterhub.__version__}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def routes(router) -> list[list[str]]:
    rows = []
    for rule in router.rules:
        target = rule.target
        if hasattr(target, "rules"):
            rows += routes(target)
            continue
        regex = getattr(rule.matcher, "regex", None)
        name = f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', target)}"
        rows.append([regex.pattern if regex else repr(rule.matcher), name])
    return rows


def main() -> None:
    work = tempfile.mkdtemp()
    try:
        config = Config({"HPCSites": {"sites": {"cori": {"host": "127.0.0.1", "known_hosts": "/dev/null"}}}})
        spawner = HPCSpawner(user=types.SimpleNamespace(name=USER, url=f"/user/{USER}/"), config=config)
        os.makedirs(f"{work}/config")
        with open(f"{work}/config/jupyter_server_config.json", "w") as handle:
            json.dump(spawner.server_config(), handle)
        hub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), VersionOnlyHub)
        threading.Thread(target=hub.serve_forever, daemon=True).start()
        hub_url = f"http://127.0.0.1:{hub.server_address[1]}"
        os.environ.update(
            JUPYTER_CONFIG_DIR=f"{work}/config", JUPYTER_RUNTIME_DIR=work, JUPYTER_DATA_DIR=work, HOME=work,
            JUPYTERHUB_SERVICE_URL=f"http://127.0.0.1:1/user/{USER}/", JUPYTERHUB_API_TOKEN="x" * 32,
            JUPYTERHUB_USER=USER, JUPYTERHUB_API_URL=f"{hub_url}/hub/api", JUPYTERHUB_SERVICE_PREFIX=f"/user/{USER}/",
            JUPYTERHUB_BASE_URL="/", JUPYTERHUB_CLIENT_ID=f"jupyterhub-user-{USER}", JUPYTERHUB_HOST="",
            JUPYTERHUB_OAUTH_CALLBACK_URL=f"/user/{USER}/oauth_callback",
            JUPYTERHUB_OAUTH_SCOPES=json.dumps([f"access:servers!user={USER}"]),
            JUPYTERHUB_OAUTH_ACCESS_SCOPES=json.dumps([f"access:servers!user={USER}"]),
        )
        from jupyterhub.singleuser.extension import JupyterHubSingleUser

        server = JupyterHubSingleUser.initialize_server(argv=[f"--ServerApp.root_dir={work}"])
        print(json.dumps(routes(server.web_app.default_router)))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
