"""The demo's supervisor: start the login node and JupyterLab, stop them, leave nothing behind.

One process owns everything the demo starts. It runs the embedded login node in its own
event loop (so every command the node runs is its child), starts JupyterLab as a child, and
is the child subreaper of the whole tree (:mod:`.processes`). Stopping goes from polite to
certain, and the certain part always runs:

1. JupyterLab is asked to shut down (SIGTERM, then SIGKILL, if it does not in time):
   jupyter_server shuts its kernels down through our provisioner, whose remote launchers
   end their kernels and remove their files;
2. the login node closes, ending any command still running (SIGTERM, then SIGKILL);
3. every remaining descendant is killed and reaped;
4. the private state directory (keys, kernelspec, sockets, JupyterLab's files) is removed.

A first Ctrl-C (or SIGTERM, SIGHUP) starts at step 1; a second one skips the polite steps
and goes to 3 and 4 at once. Further signals change nothing: steps 3 and 4 are not
interruptible, so there is no moment at which a signal can leave something behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from ..errors import HPCError
from .kernelspec import DISPLAY_NAME, KERNEL_NAME, write_kernelspec
from .lab import JupyterLab
from .login_node import LoginNode, make_private_dir
from .processes import become_subreaper, kill_descendants

log = logging.getLogger("jupyter_hpc.demo")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)



def has_display() -> bool:
    """Whether a browser could open here: a desktop session, not a server reached over SSH."""
    return sys.platform == "darwin" or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))

class Demo:
    """One run of ``jupyter hpc demo``; :meth:`run` returns the exit status."""

    def __init__(
        self,
        *,
        port: int = 0,
        open_browser: bool = True,
        show_log: bool = False,
        out: TextIO = sys.stdout,
        start_timeout: float = 90.0,
        stop_timeout: float = 20.0,
    ) -> None:
        self.port = port
        self.open_browser = open_browser
        self.show_log = show_log
        self.out = out
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.state_dir: Path | None = None
        self.node: LoginNode | None = None
        self.lab: JupyterLab | None = None
        self._signals = 0
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._browser_session: int | None = None

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        if self._signals == 1:
            self.say(f"\nStopping the demo ({signal.Signals(signum).name}); press Ctrl-C again to stop at once.")
            self._stop.set()
        elif self._signals == 2:
            self.say("Stopping at once.")
            self._force.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        if not become_subreaper():
            log.warning("cannot become a child subreaper: orphaned kernels may escape the cleanup")
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self._on_signal, signum)
        status = 0
        try:
            starting = asyncio.ensure_future(self._start())
            stopping = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not starting.done():
                starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                try:
                    await starting
                except HPCError as exc:
                    self.say(f"The demo could not start: {exc}")
                    status = 1
                except Exception as exc:  # noqa: BLE001 - whatever it was, clean up and say so
                    log.debug("demo start failed", exc_info=True)
                    self.say(f"The demo could not start: {type(exc).__name__}: {exc}")
                    status = 1
                else:
                    self._banner()
                    await self._stop.wait()
            await self._shut_down()
        finally:
            await self._sweep()
            for signum in STOP_SIGNALS:
                loop.remove_signal_handler(signum)
        return status

    async def _start(self) -> None:
        if importlib.util.find_spec("jupyterlab") is None:
            raise HPCError(
                "JupyterLab is not installed in this Python. Install the demo's extras: "
                "pip install 'jupyter-hpc[lab]'"
            )
        self.state_dir = Path(tempfile.mkdtemp(prefix="jupyter-hpc-demo-"))  # 0700
        runtime = make_private_dir(self.state_dir / "run")
        self.node = LoginNode(self.state_dir / "login-node", session_env={"XDG_RUNTIME_DIR": str(runtime)})
        await self.node.start()
        jupyter_path = self.state_dir / "share" / "jupyter"
        write_kernelspec(jupyter_path, self.node, sys.executable,
                         env={"IPYTHONDIR": str(self.state_dir / "ipython")})
        self.lab = JupyterLab(
            self.state_dir, jupyter_path=jupyter_path, default_kernel=KERNEL_NAME,
            port=self.port, show_log=self.show_log,
        )
        await self.lab.start(self.start_timeout)

    def _banner(self) -> None:
        assert self.lab is not None and self.node is not None
        self.say(f"jupyter-hpc demo: JupyterLab with a \"{DISPLAY_NAME}\" kernel that runs through SSH on an")
        self.say(f"embedded login node ({self.node.username}@{self.node.host} port {self.node.port}). Open:")
        self.say()
        self.say(f"    {self.lab.url}")
        self.say()
        self.say("What to try:")
        self.say(f"  * Click \"{DISPLAY_NAME}\" in the launcher and run:  import os; os.environ['SSH_CONNECTION']")
        self.say("    Only the SSH path sets it: a local \"Python 3\" kernel has no SSH_CONNECTION.")
        self.say("  * Run `while True: pass`, interrupt it (the stop button), restart the kernel.")
        self.say("Ctrl-C stops the demo and removes everything it made (notebooks included).")
        if self.open_browser and has_display():
            self._start_browser(self.lab.url)

    def _start_browser(self, url: str) -> None:
        """Open the URL in a session of its own, which the final sweep spares: a browser
        that the demo happened to start must outlive the demo."""
        with contextlib.suppress(OSError):
            opener = subprocess.Popen(
                [sys.executable, "-m", "webbrowser", "-t", url],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            self._browser_session = opener.pid

    async def _shut_down(self) -> None:
        """The polite steps, cut short by a second signal."""
        polite = asyncio.ensure_future(self._polite())
        forced = asyncio.ensure_future(self._force.wait())
        await asyncio.wait({polite, forced}, return_when=asyncio.FIRST_COMPLETED)
        forced.cancel()
        if not polite.done():
            polite.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await polite

    async def _polite(self) -> None:
        if self.lab is not None:
            await self.lab.stop(self.stop_timeout)
        if self.node is not None:
            await self.node.close()

    async def _sweep(self) -> None:
        """The certain steps: nothing alive, nothing on disk. Signals only set flags here."""
        if self.lab is not None:
            await self.lab.kill()
        if self.node is not None:
            self.node.grace = 0.5
            with contextlib.suppress(Exception):
                await self.node.close()
        spare = {self._browser_session} if self._browser_session else set()
        await kill_descendants(spare_sessions=spare)
        if self.state_dir is not None:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            if self.state_dir.exists():
                self.say(f"Could not remove all of {self.state_dir}; remove it by hand.")


def run_demo(**options: object) -> int:
    """Run the demo until stopped; the exit status."""
    return asyncio.run(Demo(**options).run())  # type: ignore[arg-type]
