"""The terminal manager: jupyter_server's terminals (create, get, list, terminate, cull), each a
shell on a site's login node or in a SLURM job, over the user's pooled SSH connection.

Modelled on jupyter_server_terminals' ``TerminalManager`` (same models, same names, same
culling setting in spirit), with one difference that matters on a hub: nothing runs on the
server's host. A terminal that cannot start (the site forbids it, the PTY is refused, the site
is unreachable, the login expired, too many are open) is still created and prints one line
saying what failed and what to do, so the browser shows that rather than a blank tab or a 500.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from tornado import web
from tornado.ioloop import PeriodicCallback
from traitlets import Float, Integer, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from ..errors import HPCError
from ..sites import Site
from ..ssh import SSHTarget, credentials, get_pool, run_in_ssh_loop, ssh_loop
from ..ssh.quiet_import import asyncssh
from .remote import ENDED, RemoteTerminal

NAME = re.compile(r"^\w+$")  # what jupyter_server's routes accept
JOB_ID = re.compile(r"^\d+(?:_\d+)?$")


def shell_in(directory: str) -> list[str]:
    """The user's login shell started in ``directory`` (a path on the cluster, passed as an
    argument, never as code); in the home if it cannot go there."""
    return ["sh", "-c", 'cd -- "$1" 2>/dev/null; exec "$SHELL" -l', "jupyter-hpc-terminal", directory]


def job_shell(job: str) -> list[str]:
    """A login shell on the first node of ``job``'s allocation, inside the job (its cgroup, its
    GPUs), beside whatever already runs there (``--overlap``)."""
    return ["srun", f"--jobid={job}", "--overlap", "--nodes=1", "--ntasks=1", "--pty", "bash", "-l"]


def node_shell(job: str) -> list[str]:
    """The user's login shell on a job's node reached over SSH (its kernel's ``node_access =
    "jump"``: the connection through the login node its kernel already runs over), with
    ``SLURM_JOB_ID`` set as in an srun shell, so ``srun``, ``squeue`` and ``scontrol`` typed
    there act on that job. Where the site adopts SSH logins into jobs (pam_slurm_adopt), the
    shell is in the job's cgroup too. The job id is an argument, never code."""
    return ["sh", "-c", 'SLURM_JOB_ID="$1" SLURM_JOBID="$1"; export SLURM_JOB_ID SLURM_JOBID; exec "$SHELL" -l',
            "jupyter-hpc-terminal", job]


class HPCTerminalManager(LoggingConfigurable):
    """Terminals on the configured sites, for this server's user."""

    max_terminals = Integer(
        10, config=True,
        help="""Terminals open at once per site (each holds one SSH session on the site's
        connection; past the login node's MaxSessions, 10 by default, a second connection
        carries them). One more prints a line saying so instead of opening. 0: no limit.""",
    )
    terminal_idle_timeout = Float(
        0.0, config=True,
        help="""Seconds a terminal may go without input or output before its shell is ended
        (with a line saying so), as jupyter_server's TerminalManager.cull_inactive_timeout
        does for local ones. 0 (the default): never.""",
    )
    job_poll_interval = Float(
        5.0, config=True,
        help="""Seconds between checks (one squeue on the login node) that the job of a terminal
        opened in a SLURM job still runs; when it has ended (scancel, walltime, the kernel's
        shutdown) the shell is closed with a line saying so, even one on the node by SSH that
        the job's end would not hang up.""",
    )
    cull_interval = Float(
        60.0, config=True,
        help="Seconds between checks for idle terminals (and for ended ones to forget).",
    )
    ended_lifetime = Float(
        3600.0, config=True,
        help="""Seconds a terminal that ended with a reason (its job ended, the login expired,
        it could not start) stays listed, so its open tab keeps showing why; closing the tab
        removes it sooner.""",
    )
    replay_chars = Integer(
        200_000, config=True,
        help="Characters of recent output kept per terminal and replayed to a reloaded page or a second tab.",
    )
    default_site = Unicode(
        config=True,
        help="""The site of JupyterLab's own Terminal (its launcher tile, File > New >
        Terminal); default: the first site that offers terminals. Other sites' terminals
        come from their own launcher tiles (POST /jupyter-hpc/api/terminals {"site": ...}).""",
    )

    @validate("max_terminals")
    def _valid_max(self, proposal: dict) -> int:
        if proposal["value"] < 0:
            raise ValueError("max_terminals must be 0 (no limit) or more")
        return proposal["value"]

    @validate("job_poll_interval")
    def _valid_poll(self, proposal: dict) -> float:
        if not proposal["value"] > 0:
            raise ValueError("job_poll_interval must be more than 0 seconds")
        return proposal["value"]

    @validate("terminal_idle_timeout", "cull_interval", "ended_lifetime")
    def _valid_seconds(self, proposal: dict) -> float:
        if proposal["value"] < 0:
            raise ValueError(f"{proposal['trait'].name} must be 0 or more seconds")
        return proposal["value"]

    def __init__(self, sites: list[Site], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sites = {site.name: site for site in sites}
        self.terminals: dict[str, RemoteTerminal] = {}
        self._culler: PeriodicCallback | None = None
        self._server_loop: asyncio.AbstractEventLoop | None = None  # where the models live

    @default("default_site")
    def _default_default_site(self) -> str:
        offered = [site.name for site in self.sites.values() if site.terminals]
        return offered[0] if offered else ""

    @property
    def available(self) -> bool:
        """Whether any site offers terminals (JupyterLab then shows its Terminal tile)."""
        return any(site.terminals for site in self.sites.values())

    # -- jupyter_server's TerminalManager surface ------------------------------------------

    async def create(self, *, site: str | None = None, job: str | None = None, name: str | None = None,
                     target: SSHTarget | None = None, directory: str | None = None,
                     node: SSHTarget | None = None) -> dict[str, Any]:
        """A new terminal on ``site``'s login node (in ``directory`` there, a remote path), or in
        ``job`` there: on its first node by ``srun --pty``, or over SSH to ``node`` (the node's
        target through the login node, where the job's kernel is reached so); its model at
        once, while the shell opens in the background (input typed meanwhile is kept for it)."""
        if name is not None and (not isinstance(name, str) or not NAME.match(name)):
            raise web.HTTPError(400, f"Terminal names are letters, digits and '_' only, not {name!r}")
        if name is not None and name in self.terminals:
            raise web.HTTPError(409, f"A terminal named {name!r} exists already")
        self._server_loop = asyncio.get_running_loop()
        if job is not None and not JOB_ID.match(str(job)):
            raise web.HTTPError(400, f"{job!r} is not a SLURM job id")
        site_name = self.site_of(site)
        entry = self.sites.get(site_name)
        title = entry.display_name if entry is not None else site_name
        if job is not None:
            title = f"{title}, job {job}"
        terminal = RemoteTerminal(name or self._next_name(), site_name, title, job=job, replay_chars=self.replay_chars)
        self.terminals[terminal.name] = terminal
        terminal.on_ended.append(self._ended)
        refusal = self._refusal(entry, site_name, target)
        if refusal is None:
            try:
                target = target or entry.ssh_target()
            except HPCError as exc:
                refusal = str(exc)
        if refusal is None and target.identities:
            refusal = self._login_refusal()
        if refusal is not None:
            self.log.info("terminal %s on %s not started: %s", terminal.name, site_name, refusal)
            await run_in_ssh_loop(self._fail(terminal, refusal))
        else:
            if job is None:
                argv = shell_in(directory) if directory else None
            else:
                argv = node_shell(job) if node is not None else job_shell(job)
            where = f"node {node.host} of job {job} (SSH)" if node is not None else f"job {job} (srun)" if job else "login shell"
            self.log.info("terminal %s: %s via %s", terminal.name, where, target.host)
            asyncio.run_coroutine_threadsafe(self._run(terminal, target, argv, node), ssh_loop())
        self._start_culler()
        return terminal.model()

    def get(self, name: str) -> dict[str, Any]:
        return self.terminal(name).model()

    def list(self) -> list[dict[str, Any]]:
        return [terminal.model() for terminal in self.terminals.values()]

    def terminal(self, name: str) -> RemoteTerminal:
        try:
            return self.terminals[name]
        except KeyError:
            raise web.HTTPError(404, f"Terminal not found: {name}") from None

    async def terminate(self, name: str, force: bool = False) -> None:
        """End the shell (its channel closes; sshd hangs its PTY up) and forget the terminal."""
        terminal = self.terminal(name)
        del self.terminals[name]
        await run_in_ssh_loop(self._close(terminal, None))

    async def terminate_all(self) -> None:
        for name in list(self.terminals):
            await self.terminate(name, force=True)

    def site_of(self, site: str | None) -> str:
        """The site a request names, or the default one."""
        return site or self.default_site or next(iter(self.sites), "")

    def running_on(self, site: str) -> int:
        return sum(1 for terminal in self.terminals.values() if terminal.site == site and terminal.running)

    # -- inner workings -----------------------------------------------------------------------

    def _next_name(self) -> str:
        number = 1
        while str(number) in self.terminals:
            number += 1
        return str(number)

    def _refusal(self, site: Site | None, name: str, target: SSHTarget | None) -> str | None:
        if site is None and target is None:
            known = ", ".join(self.sites) or "none"
            return f"No site named {name!r} (configured: {known})."
        if site is not None and not site.terminals:
            return (f"{site.display_name} offers no terminals here (its site config says terminals: false). "
                    "Log in with ssh instead, or ask the admin to allow them.")
        if self.max_terminals and self.running_on(name) > self.max_terminals:  # this one is counted
            title = site.display_name if site is not None else name
            return (f"{title} has {self.max_terminals} terminals open already (max_terminals): close one "
                    "(its tab, or the Running panel's shut-down button) and open a new terminal.")
        return None

    def _login_refusal(self) -> str | None:
        """With the hub's certificate (held in memory), a login that has ended says so."""
        credential = credentials.current()
        if credential is None:
            return "You are logged out of the cluster: log in to the hub again, then open a new terminal."
        if credential.expires_in() <= 0:
            ended = time.strftime("%H:%M UTC", time.gmtime(credential.valid_before))
            return (f"Your login to the cluster ended at {ended} (the SSH certificate expired): log in to the "
                    "hub again, then open a new terminal.")
        return None

    async def _fail(self, terminal: RemoteTerminal, reason: str) -> None:
        terminal._finish(f"No shell on {terminal.title}: {reason}")

    async def _close(self, terminal: RemoteTerminal, reason: str | None) -> None:
        terminal.close(reason)  # in the SSH loop, where the session lives

    async def _run(self, terminal: RemoteTerminal, target: SSHTarget, argv: list[str] | None,
                   node: SSHTarget | None = None) -> None:
        """The shell, on ``node`` when given (a job's node by SSH), else where ``target`` (the
        login node) puts it; ``target`` also answers whether a job still runs."""
        async def open_session(session: Any, **pty: Any):
            connection = await get_pool().connect(node or target)
            return await connection.terminal(session, argv, **pty)

        async def why_ended(status: int | None) -> str | None:
            if terminal.job is None or terminal.connection is None:
                return None
            return await self._job_end_line(terminal, target, status)

        watchers = [asyncio.ensure_future(self._watch_login(terminal))] if target.identities else []
        if terminal.job is not None:
            watchers.append(asyncio.ensure_future(self._watch_job(terminal, target)))
        try:
            await terminal.run(open_session, why_ended)
        except Exception:
            self.log.exception("terminal %s failed", terminal.name)
            terminal._finish(f"The terminal on {terminal.title} failed; see the server's log.")
        finally:
            for watcher in watchers:
                watcher.cancel()

    async def _job_state(self, target: SSHTarget, job: str) -> str:
        """The job's state as squeue says it on the login node (``GONE``: no longer listed)."""
        from ..slurm.site import SlurmQueue
        from ..slurm.states import GONE

        login = await get_pool().connect(target)
        state = (await asyncio.wait_for(SlurmQueue.of(login).query([job]), 30)).get(job)
        return state.state if state is not None else GONE

    @staticmethod
    def _job_ended_line(job: str, state: str) -> str:
        from ..slurm.states import GONE

        what = "no longer in the queue" if state == GONE else state
        return f"Job {job} ended ({what}): the shell on its node is closed."

    async def _job_end_line(self, terminal: RemoteTerminal, target: SSHTarget, status: int | None) -> str | None:
        """After the shell in a job ends: a plain exit if the job still runs, else a line that
        the job ended (scancel, walltime, the kernel's shutdown)."""
        from ..slurm import RUNNING

        try:
            state = await self._job_state(target, terminal.job)
        except (HPCError, OSError, asyncio.TimeoutError, asyncssh.Error) as exc:
            return f"The shell in job {terminal.job} ended (exit status {status}); its state is unknown: {exc}"
        return None if state == RUNNING else self._job_ended_line(terminal.job, state)

    async def _watch_job(self, terminal: RemoteTerminal, target: SSHTarget) -> None:
        """Close the shell of a job that has ended, with the line saying so. An srun shell ends
        with its job anyway; one on the node by SSH ends so only where the site adopts SSH
        logins into jobs, and the node's sshd may well outlive the job: this closes it."""
        from ..slurm import RUNNING, WAITING

        while terminal.running:
            await asyncio.sleep(self.job_poll_interval)
            try:
                state = await self._job_state(target, terminal.job)
            except (HPCError, OSError, asyncio.TimeoutError, asyncssh.Error) as exc:
                self.log.debug("terminal %s: job %s's state unknown for now: %s", terminal.name, terminal.job, exc)
                continue
            if state != RUNNING and state not in WAITING and terminal.running:
                self.log.info("terminal %s: job %s is %s; closing its shell", terminal.name, terminal.job, state)
                terminal.close(self._job_ended_line(terminal.job, state))
                return

    async def _watch_login(self, terminal: RemoteTerminal) -> None:
        """End a shell opened with the hub's certificate when that login ends (expiry or logout);
        a new login before then (a newer certificate) keeps it open."""
        while terminal.running:
            credential = credentials.current()
            if credential is None:
                terminal.close("You logged out of the hub: this shell was closed. Log in again for a new terminal.")
                return
            left = credential.expires_in()
            if left <= 0:
                ended = time.strftime("%H:%M UTC", time.gmtime(credential.valid_before))
                terminal.close(f"Your login to the cluster ended at {ended} (the SSH certificate expired): this "
                               "shell was closed. Log in to the hub again and open a new terminal.")
                return
            await asyncio.sleep(min(left, 5.0))

    def _ended(self, terminal: RemoteTerminal) -> None:
        """In the SSH loop: a shell that simply exited is forgotten (its tab closes, as a local
        terminal's does); one with a reason stays listed to show it."""
        if terminal.reason is None and self._server_loop is not None:
            self._server_loop.call_soon_threadsafe(self._forget, terminal)

    def _forget(self, terminal: RemoteTerminal) -> None:
        if self.terminals.get(terminal.name) is terminal:
            del self.terminals[terminal.name]

    def _start_culler(self) -> None:
        if self._culler is None:
            self._culler = PeriodicCallback(self._cull, 1000 * self.cull_interval)
            self._culler.start()

    async def _cull(self) -> None:
        now = time.time()
        for name, terminal in list(self.terminals.items()):
            if terminal.state == ENDED:
                if terminal.ended_at is not None and now - terminal.ended_at > self.ended_lifetime:
                    self._forget(terminal)
            elif self.terminal_idle_timeout and now - terminal.last_activity > self.terminal_idle_timeout:
                idle = int(now - terminal.last_activity)
                self.log.warning("Culling terminal %s after %d s of inactivity", name, idle)
                await run_in_ssh_loop(self._close(terminal, (
                    f"Closed after {idle} s with no input or output (terminal_idle_timeout). "
                    "Open a new terminal to go on.")))
