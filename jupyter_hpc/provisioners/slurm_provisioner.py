"""SlurmProvisioner: a kernel inside a SLURM job on a compute node, reached through the login node.

Registered as ``hpc-slurm``. It is the SSH provisioner with one difference, where the kernel
runs: the launcher and a 0600 request file are staged in ``~/.jupyter-hpc`` over SFTP, the job
is submitted with ``sbatch --parsable`` (each setting one argv element), and once the job
runs, a monitor is attached to the kernel over SSH to the node, jumping through the login
node, so that ZMQ stays inside SSH and the kernel on Unix sockets, as on the login node.
Shutdown stops the kernel, which ends the job, and cancels whatever remains of it.
After a server restart, ``load_provisioner_info`` attaches a new monitor on the node, in the
same way, while squeue shows the job running.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
import secrets
from typing import Any

from ..ssh.quiet_import import asyncssh
from traitlets import CaselessStrEnum, Float, Int, List, Unicode, validate

from ..errors import KernelLaunchError, NodeUnreachableError, SlurmError, SSHConnectError
from ..launcher import RemoteKernel, launcher_source
from ..ssh import SiteConnection, SSHTarget, get_pool, run_in_ssh_loop
from ..slurm.batch import DEFAULT_BATCH_TEMPLATE, render_batch_script
from ..slurm.commands import checked_value, sbatch_argv, step_argv
from ..slurm.site import SlurmQueue, cancel, node_address, submit
from ..slurm.states import RUNNING, JobState
from .ssh_provisioner import SSHProvisioner

log = logging.getLogger("jupyter_hpc.provisioners")

STAGE_DIR = ".jupyter-hpc"


class SlurmProvisioner(SSHProvisioner):
    """Launch a kernel in a SLURM batch job; forward its channels through the login node."""

    partition = Unicode("", config=True, help="sbatch --partition, e.g. 'debug'. Empty: the site's default.")
    account = Unicode("", config=True, help="sbatch --account to charge, e.g. 'm1234'.")
    qos = Unicode("", config=True, help="sbatch --qos, e.g. 'interactive'.")
    time = Unicode("", config=True, help="Walltime, sbatch --time, e.g. '01:00:00'. Empty: the partition's default.")
    nodes = Int(1, config=True, help="sbatch --nodes; the kernel runs on the job's batch host.")
    cpus_per_task = Int(0, config=True, help="sbatch --cpus-per-task; 0 leaves it to the site.")
    gpus = Int(0, config=True, help="sbatch --gpus; 0 asks for none.")
    constraint = Unicode("", config=True, help="sbatch --constraint, e.g. 'knl' or 'gpu'.")
    reservation = Unicode("", config=True, help="sbatch --reservation.")
    extra_directives = List(
        Unicode(), config=True,
        help="More '#SBATCH' lines for the batch script, without the prefix, e.g. ['--exclusive'].",
    )
    batch_template = Unicode(
        DEFAULT_BATCH_TEMPLATE, config=True,
        help="The batch script, a jinja2 template with job_name, output, extra_directives, "
        "remote_python, launcher, request_file and answer_file; the filter 'q' shell-quotes. "
        "Its last line must run the launcher as the default does.",
    )
    queue_timeout = Float(
        None, allow_none=True, config=True,
        help="Seconds a kernel's job may wait in the queue before the start fails and the job is "
        "cancelled, e.g. 3600. None (the default): it waits until it runs or the user cancels it "
        "(the status bar's Cancel, or shutting the kernel down); the server does not hold a "
        "request open meanwhile.",
    )
    poll_interval = Float(
        1.0, config=True,
        help="Seconds between squeue calls while jobs wait; one call covers all of a site's waiting jobs.",
    )
    idle_timeout = Float(
        3600.0, allow_none=True, config=True,
        help="Seconds a kernel may go without running anything before it is ended, and its "
        "job with it, so an unattended allocation is given back, e.g. 7200. A warning in the "
        "notebook (with 'keep it') comes idle_warning seconds before. None or 0: never (the "
        "server's own cull_idle_timeout still applies). Needs the server's "
        "HPCMappingKernelManager.",
    )
    idle_warning = Float(
        300.0, config=True,
        help="Seconds before idle_timeout ends a kernel at which the notebook warns (at most half "
        "of idle_timeout).",
    )
    node_access = CaselessStrEnum(
        ["jump", "direct"], default_value="jump", config=True,
        help="How the server reaches the kernel on its node. 'jump': SSH to the node through the "
        "login node; the kernel listens on Unix sockets there, as on the login node (needs SSH to "
        "compute nodes, e.g. pam_slurm_adopt). 'direct': for sites that forbid SSH to nodes; the "
        "kernel listens on the node's address, always with CurveZMQ encryption since other users "
        "can reach that address, its monitor runs as a job step (srun --overlap), and the "
        "channels are forwarded from the login node.",
    )
    node_port = Int(
        None, allow_none=True, config=True,
        help="SSH port of the compute nodes (reached through the login node). Default: ~/.ssh/config, else 22.",
    )

    @validate("partition", "account", "qos", "time", "constraint", "reservation")
    def _plain_value(self, proposal: dict) -> str:
        value = proposal["value"]
        return checked_value(proposal["trait"].name, value) if value else value

    @validate("restart_window")
    def _finite(self, proposal: dict) -> float:
        value = float(proposal["value"])
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"restart_window must be a finite number of seconds, not {proposal['value']!r}")
        return value

    @validate("idle_timeout", "idle_warning")
    def _idle_seconds(self, proposal: dict) -> float | None:
        value = proposal["value"]
        if value is None:
            return None
        if not math.isfinite(float(value)) or float(value) < 0:
            raise ValueError(f"{proposal['trait'].name} must be a number of seconds >= 0, not {value!r}")
        return float(value)

    @validate("queue_timeout", "poll_interval")
    def _positive(self, proposal: dict) -> float | None:
        if proposal["value"] is None and proposal["trait"].name == "queue_timeout":
            return None
        if not math.isfinite(float(proposal["value"])) or float(proposal["value"]) <= 0:
            raise ValueError(f"{proposal['trait'].name} must be positive")
        return float(proposal["value"])

    restart_window = Float(
        60.0, config=True,
        help="Seconds a kernel's job waits, after its kernel ends, for a restart to start the next "
        "kernel in the same allocation (no new wait in the queue). Shutdown still cancels at once. "
        "0: every restart submits a new job.",
    )

    queue_state: JobState | None = None  # the job's latest state while it waits, for progress
    cancel_requested = False  # the user cancelled the waiting job (the resource dialog's Cancel)
    queue: SlurmQueue | None = None  # the site's one poller, whose ``latest`` the REST status reads
    _kept_job: tuple[str, str, str] | None = None  # (job id, staging token, node) across a restart
    _job_token: str | None = None
    _saved_job: tuple[str, str] | None = None  # (job id, node): the running job, or a saved one
    #: The job submitted and not yet attached: {"job_id", "job_token", "answer_file", "request_file"}. Recorded by
    #: the server the moment sbatch answers, so a restarted server finds it still queued.
    queued_job: dict[str, str] | None = None
    _caller_loop: asyncio.AbstractEventLoop | None = None  # the kernel manager's loop

    def start_deadline(self) -> float | None:
        if self.queue_timeout is None:
            return None  # the queue wait is the user's to end (Cancel), not a timer's
        return self.queue_timeout + 2 * self.launch_timeout + 5

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
        """Reached from ``KernelManager._launch_kernel``; as ``SSHProvisioner``'s (calls
        ``super()``), noting the manager's loop so the submission can be announced in it."""
        self._caller_loop = asyncio.get_running_loop()
        return await super().launch_kernel(cmd, **kwargs)

    def _announce_job(self) -> None:
        """In the SSH loop, right after sbatch answered: tell the kernel manager (its
        ``job_submitted``, in its own loop), which records the job before the queue wait."""
        announce = getattr(self.parent, "job_submitted", None)
        if announce is not None and self._caller_loop is not None and not self._caller_loop.is_closed():
            self._caller_loop.call_soon_threadsafe(announce)

    def _stream_local_hint(self, login: SiteConnection) -> bool | None:
        if self.node_access == "direct":
            return False  # no SSH to the node: only its address is reachable, with CurveZMQ
        return None  # the compute node's sshd is not the login node's; probe it there

    def _launch_request(self, request: dict[str, Any], transport: str) -> dict[str, Any]:
        request = super()._launch_request(request, transport)
        if self.node_access == "direct":
            request["ip"] = "node"
        return request

    def _kernel_pool(self, target, login, request, transport):  # type: ignore[override]
        return None  # a pool of batch jobs would hold allocations idle; not offered

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        """Reached from ``KernelManager.pre_start_kernel``, on each start and restart; calls
        ``super()``. ``slurm_resources`` (the server's kernel manager passes the user's checked
        choice from the resource dialog) sets this kernel's own settings, through the same
        validation as the kernelspec's; ``_launch_args`` keeps it, so a restart that needs a
        new job asks for the same."""
        resources = kwargs.pop("slurm_resources", None) or {}
        for name, value in resources.items():
            if name not in self.sbatch_options():
                raise ValueError(f"{name!r} is not a SLURM resource a kernel start may set")
            setattr(self, name, value)
        return await super().pre_launch(**kwargs)

    def sbatch_options(self) -> dict[str, object]:
        return {
            "partition": self.partition,
            "account": self.account,
            "qos": self.qos,
            "time": self.time,
            "nodes": self.nodes,
            "cpus_per_task": self.cpus_per_task,
            "gpus": self.gpus,
            "constraint": self.constraint,
            "reservation": self.reservation,
        }

    async def _start_kernel(self, login: SiteConnection, request: dict[str, Any], transport: str) -> RemoteKernel:
        """Reuse the job kept from a restart, else stage, submit and wait for RUNNING; then
        attach a monitor to the kernel on the node."""
        request = dict(self._launch_request(request, transport), restart_window=self.restart_window)
        request.pop("probe", None)  # the node's monitor probes (_attach), not the batch launcher
        kept, self._kept_job = self._kept_job, None
        if kept is not None:
            job_id, token, node = kept
            state = (await SlurmQueue.of(login).query([job_id])).get(job_id)
            if state is not None and state.state == RUNNING:
                _, _, answer_file, _ = await self._stage(login, request, token)
                log.info("kernel %s restarts inside job %s (allocation kept)", self.kernel_id, job_id)
                return await self._attach(login, job_id, node, answer_file)
            log.info("job %s of kernel %s has ended; submitting a new one", job_id, self.kernel_id)
        token = secrets.token_hex(8)
        job_name = "jupyter-" + (re.sub(r"[^A-Za-z0-9._-]", "_", self.kernel_name()) or "kernel")
        launcher, request_file, answer_file, output = await self._stage(login, request, token)
        job_id = None
        try:
            script = render_batch_script(
                self.batch_template,
                job_name=job_name,
                output=output,
                extra_directives=list(self.extra_directives),
                remote_python=self.remote_python,
                launcher=launcher,
                request_file=request_file,
                answer_file=answer_file,
            )
            job_id = await submit(login, sbatch_argv(self.sbatch_options(), job_name), script)
            log.info("kernel %s submitted as job %s on %s", self.kernel_id, job_id, login.target.host)
            self.queued_job = {"job_id": job_id, "job_token": token, "answer_file": answer_file,
                               "request_file": request_file}
            self._announce_job()
            state = await self._wait_running(login, job_id)
            remote = await self._attach(login, job_id, state.nodes, answer_file)
        except BaseException:
            self.queued_job = None
            if job_id is not None:
                await asyncio.shield(cancel(login, job_id))
            # A job that never ran leaves its request (signing key inside) behind: remove it.
            await asyncio.shield(self._unstage(login, request_file, answer_file))
            raise
        self.queued_job = None
        self._job_token = token
        return remote

    async def _attach(self, login: SiteConnection, job_id: str, node: str, answer_file: str) -> RemoteKernel:
        """A monitor on the node, for the kernel the job publishes in ``answer_file``."""
        attach = {"op": "attach", "answer_file": answer_file, "lease": self.lease,
                  "ready_timeout": self.launch_timeout, "probe": True}
        remote = await self._monitor_on_node(login, job_id, node, attach)
        self._saved_job = (job_id, node)  # where a reconnection finds the kernel again
        return remote

    async def _monitor_existing(self, target: SSHTarget, request: dict[str, Any]) -> RemoteKernel:
        """Reattach (``load_provisioner_info``) to a kernel in a job: on its node, through the
        login node (jump) or as a job step (direct), once squeue shows the job still running."""
        if self._saved_job is None:
            raise KernelLaunchError("no SLURM job id or node was saved for this kernel")
        job_id, node = self._saved_job
        login = await get_pool().connect(target)
        queue = self.queue = SlurmQueue.of(login)
        state = (await queue.query([job_id])).get(job_id)
        if state is None or state.state != RUNNING:
            raise KernelLaunchError(
                f"its job {job_id} is {state.state if state is not None else 'no longer in the queue'}"
            )
        self.queue_state = state  # its walltime left, so the warnings before the end still come
        return await self._monitor_on_node(login, job_id, node, dict(request, ready_timeout=self.launch_timeout))

    async def _monitor_on_node(self, login: SiteConnection, job_id: str, node: str, attach: dict[str, Any]) -> RemoteKernel:
        """Run the launcher's ``attach`` where the job's kernel runs."""
        if self.node_access == "direct":
            step = step_argv(job_id, node)
            remote = await RemoteKernel.start(login, self.remote_python, attach, self.launch_timeout + 5, step)
        else:
            connection = await self._node_connection(login, node, job_id)
            remote = await RemoteKernel.start(connection, self.remote_python, attach, self.launch_timeout + 5)
        remote.job_id = job_id
        remote.node = node
        return remote

    async def _stage(self, login: SiteConnection, request: dict[str, Any], token: str) -> tuple[str, str, str, str]:
        """Put the launcher (once per version) and this kernel's 0600 request file in ~/.jupyter-hpc."""
        source = launcher_source()
        digest = hashlib.sha256(source).hexdigest()[:12]
        async with login.sftp() as sftp:
            home = await sftp.realpath(".")
            base = f"{home}/{STAGE_DIR}"
            for directory in (base, f"{base}/jobs"):
                if not await sftp.isdir(directory):
                    await sftp.mkdir(directory, asyncssh.SFTPAttrs(permissions=0o700))
                await sftp.chmod(directory, 0o700)
            launcher = f"{base}/launcher-{digest}.py"
            if not await sftp.exists(launcher):
                partial = f"{launcher}.{token}"
                async with sftp.open(partial, "wb", asyncssh.SFTPAttrs(permissions=0o600)) as handle:
                    await handle.write(source)
                await sftp.rename(partial, launcher)
            request_file = f"{base}/jobs/{token}.request.json"
            partial = f"{request_file}.partial"
            async with sftp.open(partial, "wb", asyncssh.SFTPAttrs(permissions=0o600)) as handle:
                await handle.write(json.dumps(request).encode())
            await sftp.chmod(partial, 0o600)
            await sftp.posix_rename(partial, request_file)  # the job sees it whole, or not at all
        return launcher, request_file, f"{base}/jobs/{token}.answer.json", f"{base}/jobs/slurm-%j.out"

    @staticmethod
    async def _unstage(login: SiteConnection, *paths: str) -> None:
        async with login.sftp() as sftp:
            for path in paths:
                try:
                    await sftp.remove(path)
                except asyncssh.SFTPError:
                    pass  # consumed by the job, or never written

    async def _wait_running(self, login: SiteConnection, job_id: str) -> JobState:
        """Follow the job through the queue, logging each state change with SLURM's Reason."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        queue = self.queue = SlurmQueue.of(login)
        self.queue_state = JobState(job_id, "PENDING", "", "")

        async def follow() -> None:
            async for update in queue.watch(job_id, self.poll_interval):
                self.queue_state = update
                log.info(
                    "kernel %s: job %s %s%s after %.0f s", self.kernel_id, job_id, update.state,
                    f" (Reason: {update.reason})" if update.reason and update.reason != "None" else "",
                    loop.time() - started,
                )

        try:
            await asyncio.wait_for(follow(), self.queue_timeout)
        except asyncio.TimeoutError:
            raise SlurmError(
                f"Job {job_id} did not start within {self.queue_timeout:.0f} s (queue_timeout): "
                f"it is {self.queue_state.state} (Reason: {self.queue_state.reason or 'none given'}). The job has been "
                "cancelled. Try another partition or fewer resources, or raise queue_timeout."
            ) from None
        state = self.queue_state
        if state.state != RUNNING and self.cancel_requested:
            raise SlurmError(f"Job {job_id} was cancelled at your request before its kernel started. "
                             "Start the kernel again to queue a new job.")
        if state.state != RUNNING:
            raise SlurmError(
                f"Job {job_id} ended before the kernel started: {state.state}"
                f"{' (Reason: ' + state.reason + ')' if state.reason else ''}. "
                f"See ~/{STAGE_DIR}/jobs/slurm-{job_id}.out on {login.target.host}."
            )
        return state

    async def _node_connection(self, login: SiteConnection, node: str, job_id: str = "") -> SiteConnection:
        """SSH to the job's node through the login node. Failing, say that it is the compute
        node (which one, for which job, through which login node) and the two ways out: the
        nodes' SSH port, or no SSH to nodes at all."""
        address = await node_address(login, node)
        try:
            return await get_pool().connect(self._node_target(login.target, address))
        except SSHConnectError as exc:
            job = f" of job {job_id}" if job_id else ""
            raise NodeUnreachableError(
                f"Cannot reach compute node {node}{job} ({address} port {self.node_port or 22}) over "
                f"SSH through the login node {login.target.host}: {exc}. If the nodes' sshd listens "
                "on another port, set node_port; if the site allows no SSH to compute nodes, set "
                'node_access = "direct".',
                log_detail=exc.log_detail,
            ) from exc

    def _node_target(self, login_target: SSHTarget, address: str) -> SSHTarget:
        chain = ",".join(hop for hop in (login_target.jump_host, login_target.spec()) if hop)
        return SSHTarget(
            host=address,
            port=self.node_port,
            username=login_target.username,
            client_keys=login_target.client_keys,
            identities=login_target.identities,
            known_hosts=login_target.known_hosts,
            jump_host=chain,
            connect_timeout=self.launch_timeout,
        )

    async def _stop_kernel(self, remote: RemoteKernel, restart: bool = False) -> None:
        """Stop the kernel; on restart keep its job for the next kernel, else cancel the job
        (TERM to its steps, then scancel)."""
        await remote.cleanup()
        if remote.job_id is None:
            return
        if restart and self.restart_window > 0:
            self._kept_job = (remote.job_id, self._job_token, remote.node)
            return
        login = await get_pool().connect(self.ssh_target())
        await cancel(login, remote.job_id)

    async def get_provisioner_info(self) -> dict[str, Any]:
        """Adds the job id to ``SSHProvisioner``'s ids (calls ``super()``)."""
        info = await super().get_provisioner_info()
        info["job_id"] = self._remote.job_id if self._remote is not None else None
        info["node"] = self._remote.node if self._remote is not None else None
        info["job_token"] = self._job_token  # names the job's request file, for a restart in the allocation
        return info

    def queued_job_info(self) -> dict[str, Any] | None:
        """What a restarted server needs to take over the job still queued: ids (site, job id,
        staging token, answer file) and the session's secrets (the job's kernel signs with
        them); None when no job waits. Synchronous, for the record written as sbatch answers."""
        if self.queued_job is None:
            return None
        secrets = {k: v.decode() if isinstance(v, bytes) else v for k, v in self._session_secrets().items()}
        return {
            "kernel_id": self.kernel_id,
            "connection_info": secrets,
            "host": self.host, "port": self.port, "username": self.username,
            "local_transport": self.local_transport,
            "queued_job": dict(self.queued_job),
        }

    async def load_provisioner_info(self, provisioner_info: dict) -> None:
        """Reattach to the kernel in the saved job, on its node (see ``_monitor_existing``);
        calls ``super()``. A job that has ended leaves ``has_process`` false, the reason logged.
        A job saved while queued (``queued_job``) is only noted: :meth:`follow_queued_job` waits
        for it to run and attaches, :meth:`cancel_queued_job` ends it."""
        job_id, node = provisioner_info.get("job_id"), provisioner_info.get("node")
        self._saved_job = (str(job_id), str(node)) if job_id and node else None
        self._job_token = provisioner_info.get("job_token")
        queued = provisioner_info.get("queued_job")
        self.queued_job = dict(queued) if isinstance(queued, dict) and queued.get("job_id") else None
        await super().load_provisioner_info(provisioner_info)

    async def follow_queued_job(self) -> dict[str, Any]:
        """After a server restart: wait (without limit unless ``queue_timeout``) for the job a
        previous server submitted to run, attach to its kernel and forward its channels with
        the recorded secrets. Returns the connection info; a job that ended or was cancelled
        raises SlurmError saying so. Reached from the server's kernel manager only."""
        if self.queued_job is None:
            raise KernelLaunchError("no queued SLURM job was saved for this kernel")
        self._caller_loop = asyncio.get_running_loop()
        self._remote, self.connection_info = await asyncio.wait_for(
            run_in_ssh_loop(self._follow(self.ssh_target())), self.start_deadline()
        )
        return self.connection_info

    async def _follow(self, target: SSHTarget) -> tuple[RemoteKernel, dict[str, Any]]:
        job = self.queued_job or {}
        login = await get_pool().connect(target)
        job_id = job["job_id"]
        try:
            state = await self._wait_running(login, job_id)
            remote = await self._attach(login, job_id, state.nodes, job["answer_file"])
        except BaseException:
            await asyncio.shield(cancel(login, job_id))
            await asyncio.shield(self._unstage(login, job["answer_file"], job["request_file"]))
            self.queued_job = None
            raise
        secrets = {k: v for k, v in self.connection_info.items()
                   if k in ("key", "signature_scheme", "curve_publickey", "curve_secretkey")}
        if isinstance(secrets.get("key"), str):
            secrets["key"] = secrets["key"].encode()
        try:
            info = await self._forward(remote.connection, remote.answer, secrets)
        except BaseException:
            await self._stop_kernel(remote)
            raise
        if self._reconnectable():
            remote.on_lost = self._reconnect
        self._job_token, self.queued_job = job.get("job_token"), None
        log.info("kernel %s: job %s, queued under the previous server, attached on %s", self.kernel_id,
                 job_id, state.nodes)
        return remote, info

    async def cancel_waiting_job(self) -> bool:
        """Cancel the job of a start still under way (queued, or running but not yet attached):
        the start then fails saying the user cancelled it. False when no job is submitted yet."""
        job = self.queued_job
        if job is None:
            return False
        self.cancel_requested = True

        async def go() -> None:
            await cancel(await get_pool().connect(self.ssh_target()), job["job_id"])

        await run_in_ssh_loop(go())
        log.info("kernel %s: job %s cancelled at the user's request before its kernel started",
                 self.kernel_id, job["job_id"])
        return True

    async def cancel_queued_job(self) -> None:
        """End the job a previous server left queued (``reattach_queued = "cancel"``), and
        remove its staged request (the signing key is in it)."""
        job = self.queued_job
        if job is None:
            return

        async def go() -> None:
            login = await get_pool().connect(self.ssh_target())
            await cancel(login, job["job_id"])
            await self._unstage(login, job["answer_file"], job["request_file"])

        await run_in_ssh_loop(go())
        self.queued_job = None
