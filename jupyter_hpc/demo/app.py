"""The demo's supervisor: start the site's services and the hub, stop them, leave nothing behind.

One process owns everything the demo starts. It runs the embedded login node and the key
service in its own event loop (so every command the node runs is its child), starts
JupyterHub (or, with ``--no-hub``, JupyterLab alone) as a child, and is the child subreaper of
the whole tree (:mod:`.processes`). Stopping goes from polite to certain, and the certain
part always runs:

1. JupyterHub is stopped (it stops each user's server, whose kernels our provisioner shuts
   down on the login node) or JupyterLab is asked to shut down; SIGKILL if not in time;
2. the login node closes, ending any command still running (SIGTERM, then SIGKILL), and the
   key service stops;
3. every remaining descendant is killed and reaped;
4. the private state directory (keys, the cluster's home and scratch, sockets, the hub's
   database, JupyterLab's files) is removed.

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
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from ..errors import HPCError
from .cluster_home import MYENV, PLAIN, make_cluster
from .hub import JupyterHub
from .lab import JupyterLab
from .login_node import LoginNode, make_private_dir
from .processes import become_subreaper, kill_descendants
from .keys import DemoKeyService
from .site import NO_SLURM, SITE, default_partition, demo_site

log = logging.getLogger("jupyter_hpc.demo")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: The server's names of the demo home's two kernelspecs on the login target.
PLAIN_KERNEL = f"{SITE}-login-{PLAIN}"
MYENV_KERNEL = f"{SITE}-login-{MYENV}"


def has_display() -> bool:
    """Whether a browser could open here: a desktop session, not a server reached over SSH."""
    return sys.platform == "darwin" or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))

class Demo:
    """One run of ``jupyter hpc demo``; :meth:`run` returns the exit status."""

    def __init__(
        self,
        *,
        port: int = 0,
        hub: bool = True,
        show_otp: bool = False,
        open_browser: bool = True,
        show_log: bool = False,
        out: TextIO = sys.stdout,
        start_timeout: float = 120.0,
        stop_timeout: float = 30.0,
    ) -> None:
        self.port = port
        self.with_hub = hub
        self.show_otp = show_otp
        self.open_browser = open_browser
        self.show_log = show_log
        self.out = out
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.state_dir: Path | None = None
        self.node: LoginNode | None = None
        self.keys: DemoKeyService | None = None
        self.hub: JupyterHub | None = None
        self.lab: JupyterLab | None = None
        self.partition: str | None = None
        self._signals = 0
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._browser_session: int | None = None
        if not show_log:  # its start-up notices are for a site's admin, not the demo's reader
            logging.getLogger("jupyter_hpc.demo.keyservice").setLevel(logging.ERROR)
            # A refused login is the key service's 401 to the hub, which the login form already
            # shows the user: tornado's access log line would only repeat it on the terminal.
            logging.getLogger("tornado.access").setLevel(logging.ERROR)

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
                    codes = asyncio.ensure_future(self._show_codes()) if self.show_otp and self.keys else None
                    await self._stop.wait()
                    if codes is not None:
                        codes.cancel()
            await self._shut_down()
        finally:
            await self._sweep()
            for signum in STOP_SIGNALS:
                loop.remove_signal_handler(signum)
        if self.state_dir is not None and not self.state_dir.exists():
            self.say("The demo has stopped: no process, port or file of it is left.")
        return status

    async def _start(self) -> None:
        needed = ("jupyterlab", "jupyterhub", "pyotp") if self.with_hub else ("jupyterlab",)
        missing = [name for name in needed if importlib.util.find_spec(name) is None]
        if missing:
            raise HPCError(
                f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed in this Python. "
                "Install the demo's extras: pip install 'jupyter-hpc[lab]'"
            )
        if self.port and not port_is_free(self.port):
            raise HPCError(
                f"The port {self.port} is already in use on 127.0.0.1: choose another with --port, "
                "or leave --port out for any free one."
            )
        self.state_dir = Path(tempfile.mkdtemp(prefix="jupyter-hpc-demo-"))  # 0700
        runtime = make_private_dir(self.state_dir / "run")
        home, scratch = make_cluster(self.state_dir / "cluster", sys.executable)
        if self.with_hub:
            self.keys = await DemoKeyService(self.state_dir / "keyservice").start()
        self.node = LoginNode(
            self.state_dir / "login-node", home=home,
            # TMPDIR too: whatever a kernel or a job puts in its temporary directory is the
            # demo's, and goes when the state directory goes.
            session_env={"XDG_RUNTIME_DIR": str(runtime), "SCRATCH": str(scratch),
                         "TMPDIR": str(make_private_dir(self.state_dir / "tmp"))},
            trusted_user_ca_keys=[self.keys.ca_public_key] if self.keys else [],
        )
        await self.node.start()
        self.partition = await default_partition()
        site = demo_site(self.node, sys.executable, partition=self.partition, with_client_key=not self.with_hub)
        if self.keys is not None:
            self.keys.add_user(self.node.username)
            self.hub = JupyterHub(
                self.state_dir / "hub", sites={SITE: site}, keyservice_url=self.keys.create_pair_url,
                allowed_users=[self.node.username], port=self.port, show_log=self.show_log,
                server_config=user_server_config(),
            )
            await self.hub.start(self.start_timeout)
        else:
            self.lab = JupyterLab(
                self.state_dir, default_kernel=PLAIN_KERNEL, server_config=lab_config(site),
                port=self.port, show_log=self.show_log,
            )
            await self.lab.start(self.start_timeout)

    @property
    def url(self) -> str:
        assert self.hub is not None or self.lab is not None
        return self.hub.url if self.hub is not None else self.lab.url

    def _banner(self) -> None:
        assert self.node is not None
        flavour = "JupyterHub" if self.hub is not None else "JupyterLab"
        self.say(f"jupyter-hpc demo: {flavour} in front of \"Cori\", an embedded SSH login node "
                 f"({self.node.username}@{self.node.host} port {self.node.port}). Open:")
        self.say()
        self.say(f"    {self.url}")
        self.say()
        if self.keys is not None:
            self.say(f"Log in with user name {self.node.username} and the password")
            self.say()
            self.say(f"    {self.keys.password}")
            self.say()
            self.say(f"and the one-time code {self.keys.code()} (a new one every 30 s; `jupyter hpc demo --otp`")
            self.say("prints each here). An authenticator app takes the same codes from:")
            self.say(f"    {self.keys.provisioning_uri}")
            self.say("The key service then gives JupyterHub a 12-hour SSH certificate, which logs you in to Cori.")
        self.say("What to try:")
        self.say("  * The launcher shows your own kernelspecs from Cori's ~/.ipython/kernels: \"Cori: Python 3")
        self.say("    (login)\" and \"Cori: myenv (login)\". Run  import os; os.environ['SSH_CONNECTION']")
        self.say("  * The file browser shows Cori's files: home/ and scratch/.")
        self.say("  * %load_ext jupyter_hpc.magics, then %squeue, %sinfo, %%sbatch in a Cori cell.")
        if self.partition:
            self.say(f"  * \"Cori: Python 3 (SLURM job)\" runs a kernel in a job on partition {self.partition}.")
        else:
            self.say(f"  * {NO_SLURM}")
        self.say(f"Everything the demo makes is in {self.state_dir} (the cluster's home and scratch too).")
        self.say("Ctrl-C stops the demo and removes all of it (notebooks included).")
        if self.open_browser and has_display():
            self._start_browser(self.url)

    async def _show_codes(self) -> None:
        """``--otp``: each new one-time code as it starts."""
        assert self.keys is not None
        shown = self.keys.code()
        while True:
            await asyncio.sleep(1)
            code = self.keys.code()
            if code != shown:
                shown = code
                self.say(f"one-time code: {code}")

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
        if self.hub is not None:
            await self.hub.stop(self.stop_timeout)
        if self.lab is not None:
            await self.lab.stop(self.stop_timeout)
        if self.node is not None:
            await self.node.close()
        if self.keys is not None:
            await self.keys.stop()

    async def _sweep(self) -> None:
        """The certain steps: nothing alive, nothing on disk. Signals only set flags here."""
        if self.hub is not None:
            await self.hub.kill()
        if self.lab is not None:
            await self.lab.kill()
        if self.node is not None:
            self.node.grace = 0.5
            with contextlib.suppress(Exception):
                await self.node.close()
        if self.keys is not None:
            with contextlib.suppress(Exception):
                await self.keys.stop()
        spare = {self._browser_session} if self._browser_session else set()
        await kill_descendants(spare_sessions=spare)
        if self.state_dir is not None:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            if self.state_dir.exists():
                self.say(f"Could not remove all of {self.state_dir}; remove it by hand.")


def run_demo(**options: object) -> int:
    """Run the demo until stopped; the exit status."""
    return asyncio.run(Demo(**options).run())  # type: ignore[arg-type]


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def user_server_config() -> dict:
    """What the demo adds to each hub user's server: the launcher's first Python kernel as the
    default (jupyter_server's "python3" is no kernelspec there), and every site's files, one
    folder per site when there are several, the browser opening in the home."""
    return {
        "ServerApp": {"contents_manager_class": "jupyter_hpc.contents.ClusterContentsManager"},
        "MultiKernelManager": {"default_kernel_name": PLAIN_KERNEL},
    }


def lab_config(site: dict) -> dict:
    """jupyter_server config of JupyterLab alone (``--no-hub``): the site's kernels
    discovered, its files over SFTP, kernels starting in the notebook's folder there."""
    return {
        "ServerApp": {
            "kernel_spec_manager_class": "jupyter_hpc.kernelspecs.RemoteKernelSpecManager",
            "contents_manager_class": "jupyter_hpc.contents.ClusterContentsManager",
            "kernel_manager_class": "jupyter_hpc.server.kernel_manager.HPCMappingKernelManager",
        },
        "HPCSites": {"sites": {SITE: site}},
        "RemoteKernelSpecManager": {"include_local": False},
    }
