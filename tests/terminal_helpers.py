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


# -- in the browser: what JupyterLab's own terminal shows, read through the page ---------------

_SCREEN_JS = """async ([name, wait]) => {
  const base = JSON.parse(document.getElementById('jupyter-config-data').textContent).baseUrl;
  const url = location.origin.replace(/^http/, 'ws') + base + 'terminals/websocket/' + name;
  const ws = new WebSocket(url);
  let text = '';
  ws.onmessage = event => { const m = JSON.parse(event.data); if (m[0] === 'stdout') { text += m[1]; } };
  await new Promise(resolve => setTimeout(resolve, wait));
  ws.close();
  return text;
}"""

_NAMES_JS = """async () => {
  const base = JSON.parse(document.getElementById('jupyter-config-data').textContent).baseUrl;
  const xsrf = (document.cookie.match(/(?:^|; )_xsrf=([^;]*)/) || [])[1] || '';
  const reply = await fetch(base + 'api/terminals', {credentials: 'same-origin', headers: {'X-XSRFToken': decodeURIComponent(xsrf)}});
  const body = await reply.json();
  if (!reply.ok) { throw new Error(`GET api/terminals: ${reply.status} ${JSON.stringify(body)}`); }
  return body.map(t => t.name);
}"""


def page_terminal_names(page) -> list[str]:
    """The server's terminals, asked by the page itself (its cookies, its base URL)."""
    return page.evaluate(_NAMES_JS)


def page_terminal_screen(page, name: str, wait_ms: int = 1000) -> str:
    """Terminal ``name``'s recent screen as a second websocket of the page's replays it: the text
    the browser's terminal shows (xterm.js draws on a canvas, so the DOM holds none of it)."""
    return ANSI.sub("", page.evaluate(_SCREEN_JS, [name, wait_ms]))


def open_launcher_terminal(page, expect: str, command: str = "pwd", timeout: float = 60) -> str:
    """Click the launcher's Terminal tile, type ``command`` and Enter in JupyterLab's terminal,
    and wait until its screen shows ``expect`` on a line of its own; the terminal's name."""
    before = set(page_terminal_names(page))
    page.locator(".jp-LauncherCard[data-category='Other']", has_text="Terminal").first.click()
    page.locator(".jp-Terminal:visible .xterm-helper-textarea").wait_for()
    deadline = time.monotonic() + timeout
    while not (names := set(page_terminal_names(page)) - before):
        assert time.monotonic() < deadline, "no terminal was made"
        time.sleep(0.3)
    (name,) = names
    page.locator(".jp-Terminal:visible .xterm-helper-textarea").focus()
    page.keyboard.type(command)
    page.keyboard.press("Enter")
    while not re.search(rf"[\r\n]{re.escape(expect)}\r\n", screen := page_terminal_screen(page, name)):
        assert time.monotonic() < deadline, f"{expect!r} not on the terminal; screen:\n{screen[-2000:]}"
    return name
