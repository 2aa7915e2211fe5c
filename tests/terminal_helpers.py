"""A terminal reached as JupyterLab reaches it: terminado's JSON messages over the server's
``/terminals/websocket/<name>``, for tests/test_terminals*.py and benchmarks/terminal.py."""

from __future__ import annotations

import itertools
import json
import re
import time

import websocket

_marks = itertools.count(1)
ANSI = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|\][^\x07]*\x07)")  # colours, modes, window titles


class TermClient:
    """One websocket on a terminal; ``screen`` is all the output it received, replay included."""

    def __init__(self, port: int, token: str | None, name: str, prefix: str = "", timeout: float = 60,
                 cookie: str | None = None) -> None:
        """``token`` in the header, or a browser's ``cookie`` (then with the page's Origin)."""
        self.name = name
        options = {"cookie": cookie, "origin": f"http://127.0.0.1:{port}"} if cookie else \
            {"header": [f"Authorization: token {token}"]}
        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{port}{prefix}/terminals/websocket/{name}", timeout=timeout, **options,
        )
        self.screen = ""
        self.disconnected = False
        first = json.loads(self.ws.recv())
        assert first == ["setup", {}], first

    def send(self, text: str) -> None:
        self.ws.send(json.dumps(["stdin", text]))

    def set_size(self, rows: int, cols: int) -> None:
        self.ws.send(json.dumps(["set_size", rows, cols, rows * 17, cols * 8]))

    def receive(self, timeout: float) -> list | None:
        """The next message (stdout appended to ``screen``), or None when ``timeout`` passes."""
        self.ws.settimeout(timeout)
        try:
            raw = self.ws.recv()
        except websocket.WebSocketTimeoutException:
            return None
        if not raw:
            self.disconnected = True
            return None
        message = json.loads(raw)
        if message[0] == "stdout":
            self.screen += message[1]
        elif message[0] == "disconnect":
            self.disconnected = True
        return message

    def wait_for(self, pattern: str, timeout: float = 30, start: int = 0) -> re.Match:
        """Read until ``pattern`` matches the screen from ``start`` on."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            found = regex.search(self.screen, start)
            if found:
                return found
            left = deadline - time.monotonic()
            if left <= 0 or self.disconnected:
                raise AssertionError(f"{pattern!r} not on terminal {self.name} within {timeout} s; screen:\n{self.screen[-3000:]}")
            self.receive(min(left, 1.0))

    def run(self, command: str, timeout: float = 30) -> str:
        """Type ``command`` and Enter; its output (what the shell printed between the echoed line
        and a marker the command line ends with, written so the echo does not match it)."""
        mark = f"M{next(_marks)}K"
        start = len(self.screen)
        self.send(f"{command}; echo '<'{mark}'>'\r")
        found = self.wait_for(f"<{mark}>", timeout, start)
        # The command line as echoed last (the tty may echo it early, then readline again).
        echo = self.screen.rindex(f"'<'{mark}'>'", start, found.start()) + len(f"'<'{mark}'>'")
        body = self.screen[echo:found.start()]
        body = body.split("\n", 1)[1] if "\n" in body else ""
        return ANSI.sub("", body).replace("\r", "")

    def wait_disconnect(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self.disconnected:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"terminal {self.name} did not disconnect; screen:\n{self.screen[-2000:]}")
            self.receive(min(left, 1.0))

    def close(self) -> None:
        self.ws.close()
