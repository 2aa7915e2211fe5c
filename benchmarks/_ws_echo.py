"""A jupyter_server extension for ``terminal.py``'s floor row: terminado's websocket with no
terminal behind it.

``/bench-echo/websocket`` is a ``JupyterHandler`` websocket authenticated as
jupyter_server_terminals' ``TermSocket`` is (``WebSocketMixin, JupyterHandler``, a
``WebSocketHandler``), speaking the same JSON messages (``["setup", {}]`` on open,
``["stdin", text]`` in, ``["stdout", text]`` out), that answers each keystroke at once with what
a shell's line editor would echo (the letter; ``\\b \\b`` for a backspace). No shell, no PTY, no
SSH: what the browser's websocket hop through a jupyter_server costs by itself, which every
terminal JupyterLab talks to pays before any shell sees a key.

Loaded with ``ServerApp.jpserver_extensions = {"_ws_echo": True}`` and this folder on
``PYTHONPATH``; only the benchmark does that.
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.websocket import WebSocketHandler

ECHO = {"\x7f": "\b \b"}  # what readline echoes for a backspace, as far as the client checks


class EchoSocket(WebSocketMixin, JupyterHandler, WebSocketHandler):
    async def get(self, *args: Any, **kwargs: Any) -> None:
        if not self.current_user:  # authenticated like a terminal's websocket
            raise web.HTTPError(403)
        await super().get(*args, **kwargs)

    def open(self, *args: Any, **kwargs: Any) -> None:
        super().open(*args, **kwargs)  # WebSocketMixin's pings, as a terminal's
        self.write_message(json.dumps(["setup", {}]))

    def on_message(self, message: str | bytes) -> None:
        command = json.loads(message)
        if command[0] == "stdin":
            text = command[1]
            self.write_message(json.dumps(["stdout", ECHO.get(text, text)]))


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "_ws_echo"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    web_app = serverapp.web_app
    web_app.add_handlers(".*$", [(url_path_join(web_app.settings["base_url"], "/bench-echo/websocket"), EchoSocket)])
