"""A keystroke's echo through JupyterLab's terminal on the cluster vs OpenSSH's ``ssh -tt``.

Side by side in one run, against the same sshd and the same user, at a bash prompt:
- jupyter-hpc: the websocket JupyterLab's terminal speaks (``["stdin", "x"]`` in, the echo's
  ``["stdout", ...]`` out) to a real jupyter_server with the site configured, its shell a PTY
  session on the pooled asyncssh connection;
- OpenSSH: ``ssh -tt`` to the same sshd, the keystroke written to its stdin and the echo read
  from its stdout;
- for scale, asyncssh's PTY session in this process (the SSH layer alone, no server) and
  JupyterLab's stock local terminal (terminado: the same websocket, no SSH, a shell on the
  server's host);
- the floor: the same websocket client and messages against a bare echo handler in a
  jupyter_server (``_ws_echo.py``: no shell, no PTY, no SSH), what the websocket hop alone
  costs. Any terminal JupyterLab's Terminal talks to pays at least that.

Each keystroke is timed from the write to the first output that holds its echo; keystrokes
alternate between a letter and a backspace, so the line stays short. Interleaved in blocks, so
noise falls on both alike. Target (issue 27): p50 within 1.5x of OpenSSH's. The last line adds
the floor and the SSH layer alone: what a terminal made of those two parts costs at the least.

    python benchmarks/terminal.py [--quick] [--keys 400] [--block 50]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import subprocess
import sys
import time

from _bed import Bed, summarize, table

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

import websocket  # noqa: E402
from lab_browser import Lab, lab_config  # noqa: E402

KEYS = ("x", "\x7f")  # a letter, then a backspace: each echoes (x; \b \b or an erase)


def echoed(key: str, text: str) -> bool:
    return ("x" in text) if key == "x" else ("\b" in text or "\x1b[K" in text)


class WebTerminal:
    """JupyterLab's side of a terminal: terminado's JSON messages on a jupyter_server websocket
    (a new terminal's, or ``path``: the floor's echo socket)."""

    def __init__(self, lab: Lab, path: str | None = None) -> None:
        path = path or "/terminals/websocket/" + lab.api("POST", "terminals").json()["name"]
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{lab.port}{path}",
                                              header=[f"Authorization: token {lab.token}"], timeout=30)
        self.ws.send(json.dumps(["set_size", 24, 80, 400, 640]))
        self.settle()

    def settle(self, quiet: float = 0.5) -> None:
        """Read until the shell has said nothing for ``quiet`` s (the prompt is up)."""
        self.ws.settimeout(quiet)
        while True:
            try:
                self.ws.recv()
            except websocket.WebSocketTimeoutException:
                return

    def key(self, key: str) -> float:
        self.ws.settimeout(10)
        started = time.perf_counter()
        self.ws.send(json.dumps(["stdin", key]))
        seen = ""
        while not echoed(key, seen):
            message = json.loads(self.ws.recv())
            if message[0] == "stdout":
                seen += message[1]
        return time.perf_counter() - started

    def close(self) -> None:
        self.ws.close()


class AsyncSSHTerminal:
    """The SSH layer alone: a PTY session of asyncssh in this process, no server, no websocket."""

    def __init__(self, bed: Bed) -> None:
        import asyncio

        from jupyter_hpc.ssh import SSHTarget
        from jupyter_hpc.ssh.loop import new_loop
        from jupyter_hpc.ssh.quiet_import import asyncssh

        self.loop = new_loop()
        options = SSHTarget(**{k: v for k, v in bed.ssh_config().items() if k in ("host", "port", "username", "known_hosts")},
                            client_keys=(str(bed.sshd.client_key),)).connect_options()

        async def open_():
            conn = await asyncssh.connect(**options)
            return conn, await conn.create_process(term_type="xterm-256color", term_size=(80, 24), encoding="utf-8")

        self.conn, self.process = self.loop.run_until_complete(open_())
        self.asyncio = asyncio
        self.settle()

    def settle(self, quiet: float = 0.5) -> None:
        async def drain():
            while True:
                try:
                    await self.asyncio.wait_for(self.process.stdout.read(65536), quiet)
                except self.asyncio.TimeoutError:
                    return
        self.loop.run_until_complete(drain())

    def key(self, key: str) -> float:
        async def one() -> float:
            started = time.perf_counter()
            self.process.stdin.write(key)
            seen = ""
            while not echoed(key, seen):
                seen += await self.process.stdout.read(65536)
            return time.perf_counter() - started
        return self.loop.run_until_complete(one())

    def close(self) -> None:
        self.process.close()
        self.conn.close()


class OpenSSHTerminal:
    def __init__(self, bed: Bed) -> None:
        self.process = subprocess.Popen(bed.ssh_argv("-tt"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, bufsize=0)
        self.out = self.process.stdout.fileno()
        self.settle(2.0)

    def read(self, timeout: float) -> str:
        ready, _, _ = select.select([self.out], [], [], timeout)
        return os.read(self.out, 65536).decode(errors="replace") if ready else ""

    def settle(self, quiet: float = 0.5) -> None:
        while self.read(quiet):
            pass

    def key(self, key: str) -> float:
        started = time.perf_counter()
        self.process.stdin.write(key.encode())
        seen = ""
        while not echoed(key, seen):
            chunk = self.read(10)
            if not chunk:
                raise RuntimeError("ssh -tt stopped echoing")
            seen += chunk
        return time.perf_counter() - started

    def close(self) -> None:
        self.process.stdin.write(b"exit\r")
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=400, help="keystrokes timed per variant")
    parser.add_argument("--block", type=int, default=50, help="keystrokes per variant before switching")
    parser.add_argument("--quick", action="store_true", help="200 keystrokes per variant")
    args = parser.parse_args()
    if args.quick:
        args.keys = min(args.keys, 200)
    bed = Bed()
    try:
        run(bed, args)
    finally:
        bed.close()


def run(bed: Bed, args: argparse.Namespace) -> None:
    config = lab_config({"cori": {"display_name": "Cori", **bed.ssh_config()}}, remote_specs=False,
                        ServerApp={"jpserver_extensions": {"jupyter_lsp": False}})
    lab = Lab(bed.root / "lab", config)
    # JupyterLab's stock local terminal (terminado, no SSH) over the same websocket protocol:
    # how much of the difference is the browser-side protocol rather than the cluster.
    # It also serves the floor's echo websocket (_ws_echo.py, from this folder).
    here = os.path.dirname(os.path.abspath(__file__))
    local_lab = Lab(bed.root / "local-lab", lab_config(None, remote_specs=False, ServerApp={
                        "jpserver_extensions": {"jupyter_lsp": False, "_ws_echo": True}}),
                    name="local", env={"PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))})
    try:
        print("JupyterLab up; opening the terminals", file=sys.stderr, flush=True)
        variants = {
            "jupyter-hpc terminal (websocket)": WebTerminal(lab),
            "asyncssh PTY session, in-process (the SSH layer alone)": AsyncSSHTerminal(bed),
            "OpenSSH ssh -tt": OpenSSHTerminal(bed),
            "JupyterLab's local terminal (terminado, no SSH)": WebTerminal(local_lab),
            "floor: websocket echo in a jupyter_server (no shell, no SSH)": WebTerminal(local_lab, "/bench-echo/websocket"),
        }
        print("all at a prompt; timing", file=sys.stderr, flush=True)
        times: dict[str, list[float]] = {label: [] for label in variants}
        for variant in variants.values():  # warm each: a few keys untimed
            for key in KEYS * 5:
                variant.key(key)
        done = 0
        while done < args.keys:
            for label, variant in variants.items():
                for index in range(args.block):
                    times[label].append(variant.key(KEYS[index % 2]))
            done += args.block
        for variant in variants.values():
            variant.close()
    finally:
        lab.stop()
        local_lab.stop()
    rows = []
    baseline = summarize(times["OpenSSH ssh -tt"])
    floor = summarize(next(values for label, values in times.items() if label.startswith("floor")))
    for label, values in times.items():
        stats = summarize(values)
        rows.append([label, str(stats["n"]), f"{stats['p50'] * 1000:.2f}", f"{stats['p99'] * 1000:.2f}",
                     f"{stats['min'] * 1000:.2f}–{stats['max'] * 1000:.2f}", f"{stats['p50'] / baseline['p50']:.2f}x",
                     f"{(stats['p50'] - floor['p50']) * 1000:+.2f}"])
    print("Keystroke echo round trip (ms), same sshd, bash prompt, one run (target: p50 within 1.5x of OpenSSH's)")
    print(table(["variant", "keys", "p50", "p99", "min–max", "p50 vs ssh -tt", "p50 − floor"], rows))
    ssh_layer = summarize(times["asyncssh PTY session, in-process (the SSH layer alone)"])
    parts = floor["p50"] + ssh_layer["p50"]
    print(f"1.5x ssh -tt is {1.5 * baseline['p50'] * 1000:.2f} ms. The websocket hop alone (floor) takes "
          f"{floor['p50'] / baseline['p50']:.2f}x ssh -tt's p50, asyncssh's PTY session alone "
          f"{ssh_layer['p50'] / baseline['p50']:.2f}x; the two in a row, the least a terminal built of "
          f"them can take, {parts * 1000:.2f} ms = {parts / baseline['p50']:.2f}x.")


if __name__ == "__main__":
    main()
