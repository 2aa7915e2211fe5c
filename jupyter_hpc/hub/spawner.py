"""HPCSpawner: the user's server as the hub's own unix user, for the cluster only; no root.

Users of a hub like NERSC's have accounts on the cluster, not on the hub host. So the server
runs as the hub's unix user (no setuid, no sudo) and is configured so that no user code runs
on the hub host: kernelspecs, files and terminals only on the cluster, and every path that
would run or render user content locally turned off (:mod:`jupyter_hpc.hub.lockdown`). Each
user's server gets a 0700 directory of its own for HOME, config, runtime and data (it holds no
secret), and runs in a bubblewrap sandbox that shows it that directory and the Python
environment, nothing else of the hub's (:mod:`jupyter_hpc.hub.sandbox`). Its kernels' channels
end in Unix sockets there.

The SSH credential never travels in the environment, argv or a file: the hub pushes it to the
server (:mod:`jupyter_hpc.hub.singleuser`) once the server answers after a spawn and at every
login and logout, authenticated by the server's own API token. No token can read it back:
neither the server's token nor a user's (``server_token_scopes`` holds no
``admin:auth_state``, and the ``user`` role needs none; the authenticator warns at start when a
config still grants it).

``HPCCredentialMixin`` is the hand-off alone (server token scopes, the server's config, the
pushes), so a site can put it in front of KubeSpawner or SystemdSpawner::

    class HPCKubeSpawner(HPCCredentialMixin, KubeSpawner): ...
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import pwd
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_data_dir
from jupyterhub.spawner import LocalProcessSpawner
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import CaselessStrEnum, Dict, Float, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from ..sites import HPCSites, SiteConfigError
from . import sandbox, spawn_report, state
from .lockdown import lockdown_config

KERNELSPEC_MANAGER = "jupyter_hpc.kernelspecs.RemoteKernelSpecManager"
# Every site's files, one folder per site when there are several; opens in the first home.
CONTENTS_MANAGER = "jupyter_hpc.contents.ClusterContentsManager"
# A kernel of one site started for another site's folder says so in its first output line.
KERNEL_WEBSOCKET = "jupyter_hpc.server.notice.NoticeWebsocketConnection"
KERNEL_MANAGER = "jupyter_hpc.server.kernel_manager.HPCMappingKernelManager"


def importable(dotted: str) -> bool:
    module = dotted.rpartition(".")[0]
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


class HPCCredentialMixin(LoggingConfigurable):
    """The credential hand-off and the cluster-only server config, for any Spawner."""

    host_certificate_authority = Unicode(
        "",
        config=True,
        help="""The public key of the CA that signs the sites' host keys (one line,
        e.g. 'ssh-ed25519 AAAA...'), trusted as an '@cert-authority' line for a site whose
        config names no known_hosts. Host keys are always checked: a site with neither is
        an error at spawn.""",
    )
    server_config_overrides = Dict(
        config=True,
        help="""Extra jupyter_server config for every user's server, merged over what this
        spawner writes, e.g. {"RemoteKernelSpecManager": {"discovery_ttl": 600}}.""",
    )
    credential_notify_timeout = Float(
        10.0, config=True, help="Seconds to wait for a running server to take a new credential after a login."
    )

    @default("server_token_scopes")
    def _default_server_token_scopes(self) -> list[str]:
        # No admin:auth_state: the hub pushes the credential, the server never reads it.
        return ["users:activity!user", "access:servers!server"]

    def get_state(self) -> dict[str, Any]:
        """The server's token survives a hub restart, so the hub can still push to a server
        that kept running (it is the hub's proof to the server, and reads no credential)."""
        state = super().get_state()
        if self.api_token:
            state["hpc_server_token"] = self.api_token
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        if state.get("hpc_server_token") and not self.api_token:
            self.api_token = state["hpc_server_token"]

    def hpc_sites(self) -> dict[str, dict[str, Any]]:
        """The hub's ``c.HPCSites.sites`` for this user: a site's username defaults to the
        hub user's name, and every site has a host-key source."""
        sites = {}
        for name, entry in HPCSites(config=self.config).sites.items():
            entry = dict(entry)
            entry.setdefault("username", self.user.name)
            if not entry.get("known_hosts"):
                if not self.host_certificate_authority:
                    raise SiteConfigError(
                        f"Site {name!r} names no known_hosts and HPCSpawner.host_certificate_authority "
                        "is empty: set one of them (host keys are always checked)."
                    )
                entry["known_hosts"] = str(self.write_known_hosts_ca())
            sites[name] = entry
        return sites

    def user_dir(self) -> Path | None:
        """A private directory of the server's on the hub host, where the spawner has one
        (HPCSpawner); other spawners' servers run elsewhere and have none."""
        return None

    def write_known_hosts_ca(self) -> Path:
        if self.user_dir() is None:
            raise SiteConfigError(
                f"{type(self).__name__} has no directory of the server's to write host_certificate_authority "
                "into: give each site a known_hosts file that exists where the server runs."
            )
        path = self.user_dir() / "known_hosts"
        _write(path, f"@cert-authority * {self.host_certificate_authority.strip()}\n")
        return path

    def server_config(self) -> dict[str, Any]:
        """The jupyter_server config of the user's server: cluster only, and nothing that
        runs or renders user content on the hub host (:mod:`jupyter_hpc.hub.lockdown`)."""
        config: dict[str, Any] = lockdown_config()
        extensions = config["ServerApp"].setdefault("jpserver_extensions", {})
        extensions["jupyter_hpc.hub.singleuser"] = True
        if importable("jupyter_hpc.server.extension"):
            extensions["jupyter_hpc.server"] = True
        config.update({
            "HPCSites": {"sites": self.hpc_sites()},
            # The credential comes from the hub once the server runs (singleuser): the first
            # discovery waits for it rather than fail a login without it.
            "RemoteKernelSpecManager": {**config.get("RemoteKernelSpecManager", {}), "wait_for_credential": True},
            # A stale login must reach the server's sessions soon (its OAuth token ends
            # with the certificate, but the server caches a token's answer this long).
            "HubOAuth": {"cache_max_age": 5},
            # The kernel channels' local ends are Unix sockets in the server's 0700 runtime
            # directory: no other unix user of the hub host connects to them.
            "SSHProvisioner": {"local_transport": "ipc"},
        })
        if importable(KERNELSPEC_MANAGER):
            config["ServerApp"]["kernel_spec_manager_class"] = KERNELSPEC_MANAGER
        else:
            self.log.error("%s is not installed: %s's server would offer no kernels", KERNELSPEC_MANAGER, self.user.name)
        if importable(KERNEL_MANAGER):
            # Kernels' working directory follows the file browser; SLURM resources per kernel.
            config["ServerApp"]["kernel_manager_class"] = KERNEL_MANAGER
        if importable(CONTENTS_MANAGER):
            config["ServerApp"]["contents_manager_class"] = CONTENTS_MANAGER
            config["ServerApp"]["kernel_websocket_connection_class"] = KERNEL_WEBSOCKET
        for section, values in self.server_config_overrides.items():
            config.setdefault(section, {}).update(values)
        return config

    async def notify_credential(self) -> None:
        """Push the user's current credential (none after a logout) to the running server,
        and wait until it holds it: the browser's next request finds it in place."""
        if not self.api_token or self.server is None:
            self.log.warning("%s's server has no token the hub knows: it cannot be handed the credential", self.user.name)
            return
        auth_state = await self.user.get_auth_state()
        credential = {name: value for name, value in (auth_state or {}).items() if name in state.CREDENTIAL_FIELDS}
        url = f"{self.server.url.rstrip('/')}/jupyter-hpc/api/credential"
        request = HTTPRequest(
            url, method="POST", body=json.dumps({"auth_state": credential or None}),
            headers={"Authorization": f"token {self.api_token}", "Content-Type": "application/json"},
            request_timeout=self.credential_notify_timeout, **self._internal_ssl_options(),
        )
        await AsyncHTTPClient().fetch(request)

    def _internal_ssl_options(self) -> dict[str, Any]:
        """With JupyterHub's ``internal_ssl``, the push is TLS to the server's certificate,
        checked against the hub's own internal CA, with the hub's client certificate."""
        if not self.internal_ssl:
            return {}
        settings = self.user.settings
        return {
            "ca_certs": settings.get("internal_ssl_ca"),
            "client_key": settings.get("internal_ssl_key"),
            "client_cert": settings.get("internal_ssl_cert"),
            "validate_cert": True,
        }

    async def push_when_up(self) -> None:
        """After a spawn: push the credential as soon as the server answers (the sites'
        first discovery waits for it), trying until the spawn's own timeout."""
        deadline = asyncio.get_running_loop().time() + self.start_timeout
        while asyncio.get_running_loop().time() < deadline:
            if await self.poll() is not None:
                return  # the server ended (it could not start): nothing to hand over
            if self.server is not None and self.api_token:
                try:
                    await self.notify_credential()
                    return
                except (OSError, HTTPClientError) as exc:
                    if isinstance(exc, HTTPClientError) and exc.code not in (599, 502, 503, 404):
                        self.log.error("%s's server refused the credential: %s", self.user.name, exc)
                        return
            await asyncio.sleep(0.1)
        self.log.error("%s's server never answered the credential push", self.user.name)

    def start_push(self) -> None:
        self._push_task = asyncio.ensure_future(self.push_when_up())

    #: Whether :meth:`start` pushes the credential once the server answers (a spawner that
    #: delivers it within its own start, as HPCSpawner does, sets False).
    push_after_start = True

    async def start(self):
        result = await super().start()
        if self.push_after_start:
            self.start_push()
        return result

    def server_config_args(self) -> list[str]:
        """The server config as jupyter_server command-line options (``--Section.name=value``,
        Python literals as traitlets reads them): delivered by the spawner's own ``get_args``,
        so it works wherever the spawner starts the server (a container, a systemd unit), with
        no file on the hub's host. It holds no secret."""
        return [f"--{section}.{name}={value if isinstance(value, str) else repr(value)}"
                for section, values in self.server_config().items() for name, value in values.items()]

    def get_args(self) -> list[str]:
        return [*super().get_args(), *self.server_config_args()]


class HPCSpawner(HPCCredentialMixin, LocalProcessSpawner):
    """A local server per user, run as the hub's own unix user, for the cluster only."""

    push_after_start = False  # start() delivers the credential itself, on the progress page

    def server_config_args(self) -> list[str]:
        return []  # the config is a 0600 file in the server's own directory (prepare_user_dir)

    user_dir_root = Unicode(
        config=True,
        help="""Where each user's 0700 server directory lives (HOME, config, runtime, data),
        one subdirectory per hub user. Default: <jupyter data dir>/hpc-hub-users of the hub's account.""",
    )

    sandbox = CaselessStrEnum(
        ["bwrap", "off"], default_value="bwrap", config=True,
        help="""'bwrap' (default): each server runs in an unprivileged bubblewrap sandbox (new
        user, mount, pid and IPC namespaces) that shows it the Python environment read-only,
        its own directory read-write and nothing else of the hub's (see
        jupyter_hpc.hub.sandbox). The hub refuses to start where that is impossible, unless
        this is 'off', which the log says gives up that isolation.""",
    )

    @default("user_dir_root")
    def _default_user_dir_root(self) -> str:
        return os.path.join(jupyter_data_dir(), "hpc-hub-users")

    @validate("user_dir_root")
    def _valid_root(self, proposal: dict) -> str:
        return os.path.abspath(os.path.expanduser(proposal["value"]))

    @default("cmd")
    def _default_cmd(self) -> list[str]:
        # The hub's own Python: the server is the hub's user, in the hub's environment.
        return [sys.executable, "-m", "jupyterhub.singleuser"]

    def user_dir(self) -> Path:
        return Path(self.user_dir_root) / self.user.name

    def _stage(self, progress: int, message: str) -> None:
        self._stages.append({"progress": progress, "message": message})

    def prepare_user_dir(self) -> Path:
        runtime_socket = self.user_dir() / "runtime" / "hpc-12345678" / "k-5"
        if len(str(runtime_socket).encode()) >= 100:
            raise SiteConfigError(
                f"HPCSpawner.user_dir_root {self.user_dir_root!r} is too long for the kernels' Unix sockets "
                f"({runtime_socket} must stay under 100 bytes): choose a shorter directory, e.g. /var/lib/jupyterhub/users."
            )
        root = Path(self.user_dir_root)
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        home = self.user_dir()
        for sub in ("", "config", "runtime", "data", "files"):
            (home / sub).mkdir(mode=0o700, exist_ok=True)
            os.chmod(home / sub, 0o700)
        _write(home / "config" / "jupyter_server_config.json", json.dumps(self.server_config(), indent=1))
        return home

    def make_preexec_fn(self, name: str):
        """No setuid: the server is the hub's user. A private umask for what it writes."""
        home = str(self.user_dir())

        def preexec() -> None:
            os.umask(0o077)
            os.chdir(home)

        return preexec

    def user_env(self, env: dict[str, str]) -> dict[str, str]:
        hub_user = pwd.getpwuid(os.getuid())
        home = self.user_dir()
        env.update({
            "USER": hub_user.pw_name,
            "HOME": str(home),
            "SHELL": "/bin/false",  # no terminals, and nothing else should start a shell here
            "JUPYTER_CONFIG_DIR": str(home / "config"),
            "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
            "JUPYTER_DATA_DIR": str(home / "data"),
            "IPYTHONDIR": str(home / "data" / "ipython"),
        })
        return env

    def get_args(self) -> list[str]:
        return [*super().get_args(), f"--ServerApp.root_dir={self.user_dir() / 'files'}"]

    def sandboxed_cmd(self) -> list[str]:
        """The server's command, inside the sandbox unless ``sandbox = 'off'``."""
        if not hasattr(self, "_server_cmd"):
            self._server_cmd = list(self.cmd)
        if self.sandbox == "off":
            return list(self._server_cmd)
        read_only = [site["known_hosts"] for site in HPCSites(config=self.config).sites.values()
                     if site.get("known_hosts")]
        return sandbox.argv(self.user_dir(), read_only) + self._server_cmd

    def sandboxed_server_pid(self) -> int | None:
        """The server's own process inside the sandbox (bwrap, then bwrap's pid 1, then it)."""
        pid = self.pid
        for _ in range(3):
            try:
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
                pid = int(children[0]) if children else 0
                argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] if pid else b""
            except (OSError, ValueError):
                return None
            if not pid:
                return None
            if not argv0.endswith(b"bwrap"):
                return pid
        return None

    async def _signal(self, sig):
        """SIGINT and SIGTERM go to the server itself, which shuts its kernels down: bwrap
        would die of them and take the server with it at once (SIGKILL, kernels left to their
        lease). SIGKILL goes to bwrap, which ends everything in the sandbox."""
        if self.sandbox != "off" and sig != signal.SIGKILL:
            server = self.sandboxed_server_pid()
            if server is not None:
                try:
                    os.kill(server, sig)
                except ProcessLookupError:
                    pass
                return await super()._signal(0)
        return await super()._signal(sig)

    async def start(self):
        self.cmd = self.sandboxed_cmd()
        note = sandbox.memory_limit_note(self.mem_limit)
        if note:
            self.log.warning("%s", note)
        self._stages = []
        self._stage(10, "Preparing your server's private directory")
        await asyncio.get_running_loop().run_in_executor(None, self.prepare_user_dir)
        self._stage(30, "Starting your server (JupyterLab, cluster kernels only)")
        result = await super().start()
        self._stage(60, "Server started; the hub hands it your SSH certificate and it lists the cluster's kernels")
        # The certificate delivered and each site's kernels found, said on this page; a
        # server that cannot offer a kernel fails here with the reason (spawn_report).
        spawn_report.point_server_at(self, result)
        try:
            await spawn_report.report_server(self, self._stage, self.site_display_names(), self.start_timeout)
        except spawn_report.ServerNotUsable:
            await self.stop(now=True)
            raise
        await asyncio.sleep(0.5)  # progress() polls every 0.2 s: the last stages reach the page before "ready"
        return result

    def site_display_names(self) -> dict[str, str]:
        return {site.name: site.display_name for site in HPCSites(config=self.config).all()}

    async def progress(self):
        sent = 0
        while True:
            stages = getattr(self, "_stages", [])
            while sent < len(stages):
                yield stages[sent]
                sent += 1
            await asyncio.sleep(0.2)

    async def move_certs(self, paths):
        """JupyterHub's ``internal_ssl``: the server's key and certificate (and the CA bundle
        it trusts) move into its own 0700 directory, the only one its sandbox shows it."""
        certs = self.user_dir() / "certs"
        for directory in (Path(self.user_dir_root), self.user_dir(), certs):
            directory.mkdir(mode=0o700, exist_ok=True)
            os.chmod(directory, 0o700)
        moved = {}
        for name in ("keyfile", "certfile", "cafile"):
            target = certs / os.path.basename(paths[name])
            if name == "cafile":
                shutil.copyfile(paths[name], target)
            else:
                shutil.move(paths[name], target)
            os.chmod(target, 0o600)
            moved[name] = str(target)
        return moved


def _write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)
