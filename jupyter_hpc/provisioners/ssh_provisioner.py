"""SSHProvisioner: a kernel on a cluster's login node, every ZMQ message inside SSH.

Registered as ``hpc-ssh`` in the ``jupyter_client.kernel_provisioners`` entry-point group. A
kernelspec selects it with::

    "metadata": {"kernel_provisioner": {"provisioner_name": "hpc-ssh",
                 "config": {"host": "cori.nersc.gov", "username": "alice", ...}}}

The kernelspec's ``argv`` is run on the remote by the zero-install launcher
(:mod:`jupyter_hpc.launcher`). The kernel binds Unix sockets in a 0700 directory of the user's
(``ipc`` transport) so that no one else on a shared login node can reach it; each channel is
forwarded from a local endpoint over the one pooled SSH connection. Where the site forbids
stream-local forwarding, the kernel binds the remote loopback with CurveZMQ encryption.

All SSH work runs in the SSH layer's own loop (:mod:`jupyter_hpc.ssh.loop`); the hooks
below await it across threads, so forwarding flows even while the caller's loop is idle.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import os
import signal
from typing import Any

from ..ssh.quiet_import import asyncssh
import zmq
from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning import KernelProvisionerBase
from jupyter_core.paths import jupyter_runtime_dir
from traitlets import Bool, CaselessStrEnum, Dict, Float, Int, List, Unicode, default, validate

from ..errors import HPCError, KernelLaunchError
from ..launcher import RemoteKernel, kernel_shim_source
from ..kernel_links import kernel_helper_files, kernel_proxy_env, kernel_site
from ..ssh import SiteConnection, SSHTarget, get_pool, run_in_ssh_loop, ssh_loop
from ..ssh import credentials
from . import kernel_env
from .endpoints import LocalEndpoints
from .kernel_pool import KernelPool
from .kernel_warmup import adopt, warm_up
from .transport import TRANSPORTS, choose_transport, spec_transport

log = logging.getLogger("jupyter_hpc.provisioners")

RECONNECT_ATTEMPT_TIMEOUT = 5.0  # seconds one reconnection attempt may take before the next
ZMQ_RECONNECT_GRACE = 1.0  # seconds for clients' sockets to rejoin reopened endpoints


def _served_by_jupyter_server(manager: Any) -> bool:
    """Whether the kernel manager is jupyter_server's (its ServerKernelManager or a subclass),
    without importing jupyter_server where it is not already loaded."""
    return any(cls.__module__.startswith("jupyter_server.") for cls in type(manager).__mro__)


class SSHProvisioner(KernelProvisionerBase):  # type: ignore[misc]
    """Launch a kernel on a login node over SSH and forward its five channels."""

    host = Unicode(config=True, help="The login node's host name or address, e.g. 'cori.nersc.gov'.")
    port = Int(
        None, allow_none=True, config=True,
        help="The login node's SSH port. Default: ~/.ssh/config's Port for the host, else 22.",
    )
    username = Unicode(
        None, allow_none=True, config=True,
        help="The remote user name. Default: ~/.ssh/config's User, else the local user name.",
    )
    client_keys = List(
        Unicode(), config=True,
        help="Paths of private keys to log in with; a '<key>-cert.pub' beside one is used as "
        "its OpenSSH certificate. Empty: the ssh-agent and ~/.ssh/id_* as OpenSSH would.",
    )
    known_hosts = Unicode(
        None, allow_none=True, config=True,
        help="known_hosts file the login node's host key must be in. Default: "
        "~/.ssh/known_hosts. Host keys are always checked; there is no setting to skip that.",
    )
    jump_host = Unicode(
        None, allow_none=True, config=True,
        help="A bastion to go through, as '[user@]host[:port]' (OpenSSH's ProxyJump).",
    )
    remote_python = Unicode(
        "python3", config=True,
        help="The Python (3.8+) on the remote that runs the launcher; it needs only the "
        "standard library, e.g. '/usr/bin/python3'.",
    )
    env = Dict(
        value_trait=Unicode(), config=True,
        help="Extra environment variables for the kernel; '${VAR}' expands on the remote.",
    )
    cwd = Unicode(
        None, allow_none=True, config=True,
        help="The kernel's working directory on the remote ('~' expands). Default: the home.",
    )
    setup = List(
        Unicode(), config=True,
        help="Shell lines run before the kernel starts, in a login bash: e.g. "
        "['module load python', 'conda activate myenv'].",
    )
    launch_timeout = Float(
        60.0, config=True,
        help="Seconds allowed for connecting and starting the kernel before the start fails.",
    )
    remote_transport = CaselessStrEnum(
        list(TRANSPORTS), default_value="auto", config=True,
        help="How the remote kernel listens. 'ipc': Unix sockets in a 0700 directory (no one "
        "else on the node can connect). 'tcp-curve': the remote 127.0.0.1 with CurveZMQ "
        "encryption (for kernels that cannot do ipc). 'tcp': the remote 127.0.0.1 in plaintext "
        "(for kernels that can do neither, e.g. JVM kernels; needs allow_plaintext_loopback). "
        "'auto': ipc, or tcp-curve where the site's sshd refuses stream-local forwarding. A "
        "kernelspec's metadata.jupyter_hpc.transport chooses for that kernel.",
    )
    allow_plaintext_loopback = Bool(
        False, config=True,
        help="Accept a kernel on the remote 127.0.0.1 without encryption: one whose kernelspec "
        "asks for plain 'tcp', or where neither Unix sockets nor CurveZMQ are possible. Anyone "
        "on the login node could then read and drive the kernel; leave off unless the login "
        "node is not shared.",
    )
    debugger = CaselessStrEnum(
        ["private", "off", "open"], default_value="private", config=True,
        help="What an ipykernel's listeners beyond its channels may expose on the shared node: "
        "its IOPub pipe for forked subprocesses and debugpy's ports, which open when the "
        "JupyterLab debugger is switched on (debugpy runs whatever whoever reaches them asks). "
        "'private': the pipe is a Unix socket in the kernel's 0700 directory and debugpy's "
        "127.0.0.1 ports accept only your own processes, checked by the peer's uid in "
        "/proc/net/tcp; JupyterLab's debugger works as usual, through the control channel. "
        "'off': the same pipe, and the kernel offers no debugger (JupyterLab greys its switch). "
        "'open': ipykernel as it comes, every user of the node can connect; only for a node "
        "nobody else logs in to. Applied by a sitecustomize shim the launcher puts first on "
        "the kernel's PYTHONPATH (Python kernels only); `jupyter hpc doctor` shows the outcome.",
    )
    local_transport = CaselessStrEnum(
        ["tcp", "ipc"], config=True,
        help="Where the server's side listens: 'tcp' (ephemeral 127.0.0.1 ports) or 'ipc' "
        "(Unix sockets in a 0700 runtime directory: private on a shared host, e.g. JupyterLab "
        "on a login node; its iopub also streams faster). Default: 'ipc' when the kernel's client "
        "is jupyter_server (JupyterLab, a hub's server), else 'tcp' (scripts, `jupyter console`, "
        "whose connection file other tools may expect to hold ports).",
    )
    pool_size = Int(
        0, config=True,
        help="Kernels of each kernelspec kept pre-started on the login node, so that a start "
        "costs only the attach. They run as you, are never shared, are topped up in the "
        "background and stopped on exit. Each has answered its first requests before it is "
        "offered (its first cell is still In [1]); a Python kernel taken for a notebook is moved "
        "to the notebook's folder and given its session name. 0: no pool.",
    )
    pool_idle_lifetime = Float(
        600.0, config=True,
        help="Seconds a pre-started kernel may wait unused before it is stopped (and not "
        "replaced until the next start).",
    )
    launcher_standby = Float(
        60.0, config=True,
        help="Seconds a launcher started ahead of need may wait on the connection for the next "
        "kernel start or restart, which then skips the launcher's own start (25-30 ms). It is "
        "an idle python on the login node holding one SSH session. 0: none.",
    )
    lease = Float(
        300.0, config=True,
        help="Seconds the remote kernel outlives a dropped SSH connection: the server reconnects "
        "within it, or a restarted server takes the kernel over. Past it, the kernel (and its "
        "SLURM job) is killed and its files removed, so nothing is orphaned. 0 ends it at once.",
    )

    @default("username")
    def _default_username(self) -> str | None:
        return None

    @default("local_transport")
    def _default_local_transport(self) -> str:
        # A Unix socket's path must fit sun_path (108 bytes): a very long runtime dir keeps TCP.
        fits = len(os.path.join(jupyter_runtime_dir(), "hpc-12345678", "k-5").encode()) < 100
        return "ipc" if fits and _served_by_jupyter_server(self.parent) else "tcp"

    @validate("port")
    def _valid_port(self, proposal: dict) -> int | None:
        if proposal["value"] is None:
            return None
        value = int(proposal["value"])
        if not 0 < value < 65536:
            raise ValueError(f"port must be between 1 and 65535, not {value}")
        return value

    @validate("launch_timeout", "lease", "pool_idle_lifetime", "launcher_standby")
    def _valid_seconds(self, proposal: dict) -> float:
        name, value = proposal["trait"].name, float(proposal["value"])
        if not math.isfinite(value) or value < 0 or (name == "launch_timeout" and value == 0):
            raise ValueError(f"{name} must be a finite number of seconds, not {proposal['value']!r}")
        return value

    def kernel_name(self) -> str:
        """The kernelspec's name, as the manager knows it (the spec itself may not)."""
        return getattr(self.parent, "kernel_name", "") or getattr(self.kernel_spec, "name", "") or ""

    _remote: RemoteKernel | None = None
    _endpoints: LocalEndpoints | None = None

    def __init__(self, **kwargs: Any) -> None:
        """Kernelspec config arrives as keyword arguments: a misspelt setting is an error that
        names it, not a silently ignored value."""
        unknown = sorted(set(kwargs) - set(self.class_trait_names()) - {"parent", "config", "log"})
        if unknown:
            settings = ", ".join(sorted(self.class_trait_names(config=True)))
            raise ValueError(
                f"Unknown setting(s) {', '.join(map(repr, unknown))} in the kernelspec's "
                f"{type(self).__name__} config (metadata.kernel_provisioner.config). "
                f"Known settings: {settings}."
            )
        super().__init__(**kwargs)

    # -- what the connection knows ---------------------------------------------------------

    @property
    def has_process(self) -> bool:
        """Whether a remote kernel has been launched and not yet cleaned up."""
        return self._remote is not None

    def ssh_target(self) -> SSHTarget:
        if not self.host:
            raise ValueError(
                "The kernelspec's hpc-ssh provisioner has no host: set "
                "metadata.kernel_provisioner.config.host"
            )
        return SSHTarget(
            host=self.host,
            port=self.port,
            username=self.username,
            client_keys=tuple(self.client_keys),
            # A hub's server holds the user's key + certificate in memory (ssh.credentials).
            identities=() if self.client_keys else credentials.identities(),
            known_hosts=self.known_hosts,
            jump_host=self.jump_host,
            connect_timeout=self.launch_timeout,
        )

    async def poll(self) -> int | None:
        """Reached from ``KernelManager.is_alive``: None while the kernel runs, else its status.

        Answers from the monitor channel's state, which the remote launcher keeps current;
        no network round trip per call.
        """
        if self._remote is None:
            return 0
        return self._remote.exit_status

    async def wait(self) -> int | None:
        """Reached from ``KernelManager.finish_shutdown``: resolves when the kernel has ended."""
        while self._remote is not None:
            remote = self._remote
            status = await asyncio.wrap_future(remote.done)
            if self._remote is remote:  # not replaced by a reconnection meanwhile
                return status
        return None

    async def send_signal(self, signum: int) -> None:
        """Reached from ``KernelManager.interrupt_kernel`` (SIGINT) and ``signal_kernel``.

        The remote launcher delivers it to the kernel's process group.
        """
        if self._remote is not None:
            await run_in_ssh_loop(self._remote.signal(signum))

    async def kill(self, restart: bool = False) -> None:
        """Reached from ``KernelManager._kill_kernel``: SIGKILL to the kernel's group."""
        await self.send_signal(signal.SIGKILL)

    async def terminate(self, restart: bool = False) -> None:
        """Reached from ``KernelManager._send_kernel_sigterm``: SIGTERM to the kernel's group."""
        await self.send_signal(signal.SIGTERM)

    # -- launching -------------------------------------------------------------------------

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        """Reached from ``KernelManager.pre_start_kernel``; calls ``super()`` for the env.

        The kernel's environment is :mod:`.kernel_env`'s allow list: ``JPY_SESSION_NAME`` of
        the server's, the kernelspec's env and ``env`` above; never a token (the server's
        environment is not the cluster's, and a hub server's holds its hub API token).
        """
        self._connect_early()
        extra_arguments = kwargs.pop("extra_arguments", None) or []
        # The notebook's folder on the cluster, from the contents manager (the server's own
        # ``cwd`` is a local path); restarts pass it again.
        self._remote_cwd = kwargs.pop("remote_cwd", None)
        local_env = kwargs.pop("env", None) or {}
        kwargs["env"] = kernel_env.from_server(local_env)
        kwargs = await super().pre_launch(**kwargs)
        kwargs["env"].update(kernel_proxy_env(kernel_site(self)))  # the web-UI proxy's links
        kwargs["env"].update(self.env)
        km = self.parent
        if km is not None and km.curve_publickey is None and self._curve_wanted(km):
            km.curve_publickey, km.curve_secretkey = zmq.curve_keypair()
        kwargs["cmd"] = list(self.kernel_spec.argv) + list(extra_arguments)
        return kwargs

    def _connect_early(self) -> None:
        """Begin the login now, in the SSH loop, so that its key exchange overlaps the rest of
        the start's preparation here; launch_kernel's connect then joins it (the pool shares
        one connect per target). A failure is left for launch_kernel to report."""
        try:
            target = self.ssh_target()
        except Exception:  # noqa: BLE001 - launch_kernel raises it with its context
            return
        asyncio.run_coroutine_threadsafe(get_pool().connect(target), ssh_loop())

    def _curve_wanted(self, km: Any) -> bool:
        policy = km._transport_encryption_policy() if hasattr(km, "_transport_encryption_policy") else "disabled"
        return policy == "required" or (policy == "auto" and km._kernel_supports_curve_encryption())

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        """Reached from ``KernelManager._launch_kernel``: start the remote kernel, open forwards.

        Returns the local connection info the manager's clients use. On restart the local
        endpoints are the same as before, so connected clients stay connected.
        """
        km = self.parent
        request = {
            "op": "launch",
            "argv": cmd,
            "env": kernel_env.without_secrets(kwargs.get("env", {})),
            "cwd": getattr(self, "_remote_cwd", None) or self.cwd,
            "setup": list(self.setup),
            "key": km.session.key.decode() if km is not None else "",
            "signature_scheme": km.session.signature_scheme if km is not None else "hmac-sha256",
            "kernel_name": self.kernel_name(),
            "kernel_id": self.kernel_id,
            "lease": self.lease,
            # The launcher's own deadline comes first, so its reason (which sockets the kernel
            # did not bind) reaches the user rather than this side's bare timeout.
            "ready_timeout": max(self.launch_timeout - 3, self.launch_timeout * 0.8),
            "listeners": self.debugger,
            "pythonpath_files": kernel_helper_files(),  # jupyter_hpc.proxy_url in the kernel
        }
        if self.debugger != "open":
            request["shim"] = kernel_shim_source()
        target = self.ssh_target()
        self._remote, self.connection_info = await asyncio.wait_for(
            run_in_ssh_loop(self._launch(target, request)), self.start_deadline()
        )
        return self.connection_info

    def start_deadline(self) -> float:
        """Seconds after which a start is abandoned, whatever stage it is in."""
        return self.launch_timeout + 5

    async def _launch(self, target: SSHTarget, request: dict[str, Any]) -> tuple[RemoteKernel, dict]:
        """In the SSH loop: connect (pooled), launch on the best transport, forward.

        The first kernel on a connection tries Unix sockets and probes the forward on a socket
        the launcher itself listens on in the kernel's directory (never the kernel's own: a
        kernel that binds late, elsewhere or not at all says nothing about the site); only
        that answer is remembered for the connection. Where the site refuses, the kernel is
        relaunched on TCP with CurveZMQ.
        """
        login = await get_pool().connect(target)
        transport = self._first_transport(self._stream_local_hint(login))
        if transport == "ipc" and login.stream_local is None:
            request = dict(request, probe=True)
        restarting = self._endpoints is not None and self._endpoints.ports is not None
        pool = None if restarting else self._kernel_pool(target, login, request, transport)
        taken = pool.take() if pool is not None else None
        if taken is not None:
            remote, pool_key = taken
            not_adopted = await adopt(remote, pool_key, request["signature_scheme"], *self._pool_adoption(request))
            if not_adopted is None:
                remote.set_lease(self.lease)
            else:
                log.info("kernel %s: a pre-started kernel could not take the notebook's folder (%s); "
                         "starting one there", self.kernel_id, not_adopted)
                await remote.cleanup()
                taken = None
        if taken is None:
            remote = await self._start_kernel(login, request, transport)
        if transport == "ipc" and remote.connection.stream_local is None and remote.answer.get("probe"):
            if not await remote.connection.probe_stream_local(remote.answer["probe"]):
                await self._stop_kernel(remote)
                transport = self._first_transport(False)
                remote = await self._start_kernel(login, dict(request, probe=False), transport)
        secrets = self._session_secrets()  # after the transport is settled: it may add Curve keys
        if taken is not None:
            secrets["key"] = pool_key.encode()  # the manager adopts the pre-started kernel's key
        try:
            info = await self._forward(remote.connection, remote.answer, secrets)
        except BaseException:
            await self._stop_kernel(remote)
            raise
        self._check_listeners(remote)
        log.info(
            "kernel %s started on %s (pid %s, %s transport)",
            self.kernel_id, remote.answer.get("host"), remote.pid, transport,
        )
        if self._reconnectable():
            remote.on_lost = self._reconnect
        if not restarting and (pool := self._kernel_pool(target, login, request, transport)) is not None:
            pool.top_up_soon()  # the site is now known to take Unix sockets: fill the pool for next time
        return remote, info

    def _check_listeners(self, remote: RemoteKernel) -> None:
        """Say in the log, once, what the kernel exposes on the shared node, when it exposes
        anything: the TCP listeners its processes hold beyond its channels, as the launcher saw
        them on the node just after starting it (an ipykernel's IOPub pipe where the listener
        shim did not run, a language server a kernel starts). Nothing exposed, nothing said: an
        R or xeus kernel on Unix sockets is as private as an ipykernel with the shim."""
        if self.debugger == "open":
            return
        if remote.tcp_listeners is not None:
            self._warn_exposed(remote.answer, remote.tcp_listeners)
        else:  # the launcher tells a moment after its answer
            remote.on_listeners = lambda exposed: self._warn_exposed(remote.answer, exposed)

    def _warn_exposed(self, answer: dict, exposed: list[str]) -> None:
        if not exposed:
            return
        shim = answer.get("listeners")
        why = "" if isinstance(shim, dict) else (
            " (the listener shim did not run in it: not a Python kernel, a setup line replaced "
            "PYTHONPATH, or python -I/-E)")
        log.warning(
            "kernel %s listens on TCP %s on %s beyond its channels%s: other users of that node "
            "can connect there", self.kernel_id, ", ".join(exposed), answer.get("host"), why,
        )

    def _reconnectable(self) -> bool:
        """Whether a dropped connection is worth reconnecting: the kernel waits out its lease."""
        return self.lease > 0

    async def _reconnect(self, lost: RemoteKernel) -> None:
        """In the SSH loop: the connection dropped under a live kernel. Reconnect with backoff,
        take the kernel over again on the same local endpoints, within its lease.

        Meanwhile jupyter_server's kernel model says ``reconnecting`` (GET /api/kernels), not
        dead: poll() keeps answering "alive" until the lease is spent.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.lease
        delay = 0.25
        log.warning("kernel %s: connection to %s lost; reconnecting", self.kernel_id, self.host)
        before = self._show_state("reconnecting")
        started = loop.time()
        target = dataclasses.replace(self.ssh_target(), connect_timeout=RECONNECT_ATTEMPT_TIMEOUT)
        request = {"op": "attach", "pid": lost.pid, "kernel_dir": lost.answer["kernel_dir"], "lease": self.lease}
        while loop.time() < deadline and self._remote is lost:
            attempt = min(RECONNECT_ATTEMPT_TIMEOUT, max(0.5, deadline - loop.time()))
            try:
                remote, info = await asyncio.wait_for(self._reattach(target, request), attempt)
            except KernelLaunchError as exc:  # reached the host: the kernel itself has ended
                log.warning("kernel %s is gone: %s", self.kernel_id, exc)
                break
            except (HPCError, OSError, asyncssh.Error, asyncio.TimeoutError) as exc:
                log.info("kernel %s: reconnect failed (%s); retrying in %.1f s", self.kernel_id, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if self._remote is not lost:  # shut down meanwhile
                await remote.cleanup()
                return
            remote.on_lost = self._reconnect
            self._remote, self.connection_info = remote, info
            # ZMQ clients retry every 100 ms; give their iopub time to resubscribe before the
            # state invites the next cell, whose output would otherwise go unheard.
            await asyncio.sleep(ZMQ_RECONNECT_GRACE)
            self._show_state(before or "idle")
            log.warning("kernel %s reconnected after %.1f s", self.kernel_id, loop.time() - started)
            lost.give_up()
            return
        self._show_state("dead")
        lost.give_up()

    def _show_state(self, state: str) -> str | None:
        """Set the kernel's execution_state where the manager has one (jupyter_server's)."""
        km = self.parent
        if km is None or not km.has_trait("execution_state"):
            return None
        before, km.execution_state = km.execution_state, state
        return before

    def _kernel_pool(
        self, target: SSHTarget, login: SiteConnection, request: dict[str, Any], transport: str
    ) -> KernelPool | None:
        """The pool of pre-started kernels for this launch, when one may serve it.

        Only once the site is known to take Unix-socket forwarding, and never on restart (the
        caller's check: the manager's clients keep the old signing key). A Python kernel's pool
        serves notebooks in any folder: its kernels start in the site's ``cwd`` and are moved to
        the notebook's, with its session name, when taken (:meth:`_pool_adoption`); other
        kernels' pools are per folder, and their kernels miss the per-kernel ``JPY_*`` variables.
        """
        if self.pool_size <= 0 or transport != "ipc" or login.stream_local is not True:
            return None
        template = {
            name: value for name, value in request.items() if name not in ("key", "kernel_id", "env", "probe")
        }
        template["env"] = {k: v for k, v in request.get("env", {}).items() if not k.startswith("JPY_")}
        template.update(transport="ipc", kernel_id="pool", lease=0)
        if self._adoptable():
            template["cwd"] = self.cwd
        remote_python, timeout = self.remote_python, self.launch_timeout

        async def start(key: str) -> RemoteKernel:
            connection = await get_pool().connect(target)
            remote = await RemoteKernel.start(connection, remote_python, dict(template, key=key), timeout)
            await warm_up(remote, key, template["signature_scheme"])  # its user's first cell pays none of that
            return remote

        pool_key = (target.pool_key(), remote_python, json.dumps(template, sort_keys=True))
        return KernelPool.for_launch(pool_key, self.pool_size, self.pool_idle_lifetime, start)

    def _adoptable(self) -> bool:
        """Whether a pre-started kernel can be moved to the notebook's folder once taken: an
        ipykernel (the one kernel whose language we can speak to for that)."""
        return getattr(self.kernel_spec, "language", "") == "python"

    def _pool_adoption(self, request: dict[str, Any]) -> tuple[str | None, str | None]:
        """(folder, session name) a kernel taken from the pool must still be given: what its
        template left out of ``request`` (see :meth:`_kernel_pool`)."""
        if not self._adoptable():
            return None, None
        cwd = request.get("cwd")
        return (cwd if cwd != self.cwd else None), request.get("env", {}).get("JPY_SESSION_NAME")

    def _stream_local_hint(self, login: SiteConnection) -> bool | None:
        """What is known of stream-local forwarding where the kernel will run: the login node."""
        return login.stream_local

    def _launch_request(self, request: dict[str, Any], transport: str) -> dict[str, Any]:
        """The launch request for ``transport``, with the manager's Curve keys when it has any
        (our TCP fallback's, or jupyter_client's ``transport_encryption``)."""
        km = self.parent
        request = dict(request, transport=transport)
        if km is not None and km.curve_publickey is not None:
            request["curve_publickey"] = km.curve_publickey.decode()
            request["curve_secretkey"] = km.curve_secretkey.decode()
        return request

    async def _start_kernel(self, login: SiteConnection, request: dict[str, Any], transport: str) -> RemoteKernel:
        """Where the kernel runs: here, on the login node itself. Subclasses choose elsewhere."""
        return await RemoteKernel.start(
            login, self.remote_python, self._launch_request(request, transport), self.launch_timeout,
            standby=self.launcher_standby,
        )

    async def _stop_kernel(self, remote: RemoteKernel, restart: bool = False) -> None:
        """Stop the kernel and remove its files; ``restart`` says another kernel follows."""
        await remote.cleanup()

    def wanted_transport(self) -> tuple[str, str]:
        """The transport this kernel asks for, and who asks: its kernelspec's
        ``metadata.jupyter_hpc.transport`` (a kernel that cannot do ipc or CurveZMQ), else
        ``remote_transport``."""
        choice = spec_transport(getattr(self.kernel_spec, "metadata", None))
        if choice is not None:
            return choice, "its kernelspec's metadata.jupyter_hpc.transport"
        return self.remote_transport, "remote_transport"

    def _first_transport(self, stream_local: bool | None) -> str:
        """The launcher's transport ('ipc' or 'tcp') for this kernel, from what it asks for
        (:meth:`wanted_transport`) and what the site is known to allow (:mod:`.transport`);
        or a refusal that says which setting to change. Makes the Curve keys tcp-curve needs."""
        km = self.parent
        wanted, who = self.wanted_transport()
        has_keys = km is not None and km.curve_publickey is not None
        transport, why = choose_transport(
            wanted, who, stream_local, curve=has_keys or (km is not None and zmq.has("curve")),
            allow_plaintext=self.allow_plaintext_loopback, host=self.host, kernel=self.kernel_name() or str(self.kernel_id),
        )
        if transport == "ipc":
            return "ipc"
        if transport == "tcp-curve" and not has_keys:
            km.curve_publickey, km.curve_secretkey = zmq.curve_keypair()
        log.warning("kernel %s on %s: %s (%s)", self.kernel_id, self.host, transport, why)
        return "tcp"

    def _session_secrets(self) -> dict[str, Any]:
        """The manager's signing key and Curve keypair, as they go into the connection info."""
        km = self.parent
        secrets: dict[str, Any] = {
            "key": km.session.key if km is not None else b"",
            "signature_scheme": km.session.signature_scheme if km is not None else "hmac-sha256",
        }
        if km is not None and km.curve_publickey is not None:
            secrets["curve_publickey"] = km.curve_publickey.decode()
            secrets["curve_secretkey"] = km.curve_secretkey.decode()
        return secrets

    async def _forward(self, connection: SiteConnection, answer: dict, secrets: dict) -> dict[str, Any]:
        """In the SSH loop: forward the kernel's channels from this kernel's local endpoints
        (the same ones as before, on a restart or a reconnection); return the connection info."""
        if self._endpoints is None:
            self._endpoints = self._new_endpoints()
        await self._endpoints.open(connection, answer)
        return self._endpoints.connection_info(secrets, self.kernel_name())

    def _new_endpoints(self) -> LocalEndpoints:
        ipc_dir = os.path.join(jupyter_runtime_dir(), f"hpc-{str(self.kernel_id)[:8]}")
        return LocalEndpoints(self.local_transport, ipc_dir)

    # -- ending ----------------------------------------------------------------------------

    async def cleanup(self, restart: bool = False) -> None:
        """Reached from ``KernelManager.cleanup_resources``: no remote process or file stays.

        The remote launcher stops the kernel's process group and removes its directory; the
        local listeners close. On restart the local endpoints are remembered and reopened by
        the next launch, so the manager's clients reconnect to the new kernel.
        """
        remote, self._remote = self._remote, None
        await run_in_ssh_loop(self._close(remote, restart))
        if not restart:
            self._endpoints = None

    async def _close(self, remote: RemoteKernel | None, restart: bool) -> None:
        if self._endpoints is not None:
            self._endpoints.close() if restart else self._endpoints.remove()
        if remote is not None:
            await self._stop_kernel(remote, restart)

    # -- persistence -----------------------------------------------------------------------

    async def get_provisioner_info(self) -> dict[str, Any]:
        """Ids only, on top of ``super()``'s: where the kernel runs and how to reach it."""
        info = await super().get_provisioner_info()
        answer = self._remote.answer if self._remote is not None else {}
        info.update(
            host=self.host,
            port=self.port,
            username=self.username,
            remote_host=answer.get("host"),
            pid=answer.get("pid"),
            kernel_dir=answer.get("kernel_dir"),
            remote_transport=answer.get("transport"),
            local_transport=self.local_transport,
            local_endpoints=self._endpoints.ports if self._endpoints is not None else None,
        )
        return info

    async def load_provisioner_info(self, provisioner_info: dict) -> None:
        """Restore what ``get_provisioner_info`` saved and reattach; calls ``super()`` first.

        A kernel outlives its server for ``lease`` seconds; within that time a new server
        (after a restart, say) takes it over here, on the same local endpoints, with its state
        intact. A kernel that has ended leaves ``has_process`` false, with the reason logged.
        """
        await super().load_provisioner_info(provisioner_info)
        self.host = provisioner_info.get("host", self.host)
        self.port = provisioner_info.get("port", self.port)
        self.username = provisioner_info.get("username", self.username)
        self.local_transport = provisioner_info.get("local_transport", self.local_transport)
        if provisioner_info.get("local_endpoints"):
            self._endpoints = self._new_endpoints()
            self._endpoints.ports = provisioner_info["local_endpoints"]
        if not (provisioner_info.get("pid") and provisioner_info.get("kernel_dir")):
            return
        request = {
            "op": "attach",
            "pid": provisioner_info["pid"],
            "kernel_dir": provisioner_info["kernel_dir"],
            "lease": self.lease,
        }
        try:
            self._remote, self.connection_info = await asyncio.wait_for(
                run_in_ssh_loop(self._reattach(self.ssh_target(), request)), self.launch_timeout + 5
            )
        except (HPCError, asyncio.TimeoutError) as exc:
            log.warning("kernel %s cannot be reattached: %s", self.kernel_id, exc)

    async def _reattach(self, target: SSHTarget, request: dict[str, Any]) -> tuple[RemoteKernel, dict]:
        """Attach a new monitor to a running kernel and forward on the saved local endpoints."""
        remote = await self._monitor_existing(target, request)
        secrets = {
            name: value for name, value in self.connection_info.items()
            if name in ("key", "signature_scheme", "curve_publickey", "curve_secretkey")
        }
        if isinstance(secrets.get("key"), str):
            secrets["key"] = secrets["key"].encode()
        try:
            info = await self._forward(remote.connection, remote.answer, secrets)
        except BaseException:
            remote.process.close()
            raise
        if self._reconnectable():
            remote.on_lost = self._reconnect
        log.info("kernel %s reattached on %s (pid %s)", self.kernel_id, remote.answer.get("host"), remote.pid)
        return remote, info

    async def _monitor_existing(self, target: SSHTarget, request: dict[str, Any]) -> RemoteKernel:
        """In the SSH loop: a new monitor for the running kernel ``request`` names, where it runs:
        here, on the login node. Subclasses choose elsewhere."""
        connection = await get_pool().connect(target)
        return await RemoteKernel.start(connection, self.remote_python, request, self.launch_timeout)
