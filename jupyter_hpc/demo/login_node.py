"""An embedded SSH server that plays a cluster's login node for the current user.

``jupyter hpc demo`` needs a login node on a machine that has no cluster, no sshd of the
user's and no root. This one is an asyncssh server on 127.0.0.1 that does what a login node
does for the kernel layer, the way OpenSSH's sshd does it:

* each exec session runs its command through the user's login shell (``shell -c command``,
  the shell from the password database) in a session of its own, with stdin, stdout and
  stderr piped both ways; end of input on the channel (or the channel closing) closes the
  command's stdin, and the command's exit status or killing signal goes back to the client;
* the session's environment carries ``USER``, ``LOGNAME``, ``HOME``, ``SHELL``, ``PATH`` and
  ``SSH_CONNECTION``/``SSH_CLIENT`` as OpenSSH sets them, so code can tell it came over SSH;
* direct-tcpip channels may reach only the loopback, direct-streamlocal channels any Unix
  socket path the user can reach (``AllowStreamLocalForwarding``; switchable, to exercise
  the provisioner's TCP fallback); remote forwarding, agent and X11 forwarding are refused;
* a session that asks for a PTY gets one, as from sshd: its command (or, with none, the login
  shell, ``shell -l``) runs on the PTY as its controlling terminal, in the home, with ``TERM``
  and ``SSH_TTY`` set; window changes resize it, and the channel's end hangs it up (SIGHUP);
* SFTP is served with the user's own permissions, relative paths starting in the home, as
  OpenSSH's sftp-server does;
* only the current user may log in, with the client key generated here or with a certificate
  for that user from a trusted user CA (sshd's ``TrustedUserCAKeys``, the key service's CA in
  the demo): keys are made per run into a private (0700) state directory, with a
  ``known_hosts`` that pins the host key.

``home`` gives sessions another home than the user's own (``HOME``, the working directory,
SFTP's starting point): the demo's cluster home is a directory of its own, so nothing the
demo's kernels or file browser write lands in the user's real home.

It runs in whatever asyncio loop starts it (the demo runs it in its own supervising
process, so that every command it runs is a descendant the demo can account for), and it is
a test fixture too. Run it alone with ``python -m jupyter_hpc.demo.login_node``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import ipaddress
import json
import logging
import os
import pwd
import shutil
import signal
import struct
import sys
import tempfile
import termios
from pathlib import Path
from typing import Any

from ..ssh.quiet_import import asyncssh

log = logging.getLogger("jupyter_hpc.demo.login_node")

#: Variables a session inherits from the process that runs the login node. A real login
#: node builds them from /etc; here the node serves the very user who started it.
INHERITED_ENV = ("PATH", "LANG", "LANGUAGE", "TZ", "TMPDIR")
#: Variables a client may send (OpenSSH's default ``AcceptEnv LANG LC_*``).
ACCEPTED_CLIENT_ENV = ("LANG", "LC_")
UNUSABLE_SHELLS = ("nologin", "false")


def make_private_dir(path: Path) -> Path:
    """Create ``path`` (0700) or check that an existing one is ours and private."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if path.is_symlink() or info.st_uid != os.getuid():
        raise PermissionError(f"{path} is not a directory of this user's")
    os.chmod(path, 0o700)
    return path


def write_private(path: Path, data: bytes | str, mode: int = 0o600) -> Path:
    """Write a file that is created with ``mode``, never wider for a moment."""
    data = data.encode() if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)
    return path


def login_shell(entry: pwd.struct_passwd) -> str:
    """The user's shell as sshd would pick it; ``$SHELL`` or /bin/sh when that one cannot run
    commands (service accounts with ``nologin``, containers without the listed shell)."""
    for shell in (entry.pw_shell, os.environ.get("SHELL", ""), "/bin/sh"):
        if shell and os.access(shell, os.X_OK) and not shell.endswith(UNUSABLE_SHELLS):
            return shell
    return "/bin/sh"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LoginNode:
    """The login node: start it, hand its :meth:`provisioner_config` to a kernelspec, close it.

    ``state_dir`` receives the host key, the client key, its public half and ``known_hosts``;
    it is created 0700 and left in place by :meth:`close` (its owner removes it).
    ``session_env`` adds variables to every session, e.g. the demo points
    ``XDG_RUNTIME_DIR`` into its own state directory so that kernels' sockets go there.
    ``close`` ends the commands still running: SIGTERM to each session's process group, then
    SIGKILL after ``grace`` seconds.
    """

    def __init__(
        self,
        state_dir: str | os.PathLike,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_stream_local: bool = True,
        session_env: dict[str, str] | None = None,
        grace: float = 3.0,
        home: str | os.PathLike | None = None,
        trusted_user_ca_keys: list[str] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.host = host
        self.port = port
        self.allow_stream_local = allow_stream_local
        self.session_env = dict(session_env or {})
        self.grace = grace
        self.user = pwd.getpwuid(os.getuid())
        self.home = str(home) if home is not None else self.user.pw_dir
        self.trusted_user_ca_keys = list(trusted_user_ca_keys or [])
        self.shell = login_shell(self.user)
        self.host_key_path = self.state_dir / "ssh_host_ed25519_key"
        self.client_key_path = self.state_dir / "id_ed25519"
        self.known_hosts_path = self.state_dir / "known_hosts"
        self.logins = 0
        self._server: asyncssh.SSHAcceptor | None = None
        self._connections: set[asyncssh.SSHServerConnection] = set()
        self._commands: set[asyncio.subprocess.Process] = set()
        self._sessions: set[asyncio.Task] = set()
        self._authorized_keys: asyncssh.SSHAuthorizedKeys | None = None

    @property
    def username(self) -> str:
        return self.user.pw_name

    async def __aenter__(self) -> "LoginNode":
        return await self.start()

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    async def start(self) -> "LoginNode":
        """Make the keys, listen, and pin the host key in ``known_hosts``."""
        make_private_dir(self.state_dir)
        host_key = asyncssh.generate_private_key("ssh-ed25519")
        write_private(self.host_key_path, host_key.export_private_key())
        client_key = asyncssh.generate_private_key("ssh-ed25519", comment=f"jupyter-hpc demo {self.username}")
        write_private(self.client_key_path, client_key.export_private_key())
        public = client_key.export_public_key().decode().strip()
        write_private(self.client_key_path.with_suffix(".pub"), public + "\n", 0o644)
        lines = [public] + [
            f'cert-authority,principals="{self.username}" {ca.strip()}' for ca in self.trusted_user_ca_keys
        ]
        self._authorized_keys = asyncssh.import_authorized_keys("".join(line + "\n" for line in lines))
        self._server = await asyncssh.create_server(
            lambda: _LoginServer(self),
            self.host,
            self.port,
            server_host_keys=[host_key],
            process_factory=self._session,
            encoding=None,
            sftp_factory=lambda chan: _HomeSFTPServer(chan, self.home),
            allow_scp=False,
            allow_pty=True,
            agent_forwarding=False,
            x11_forwarding=False,
            reuse_address=True,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        public_host_key = host_key.export_public_key().decode().strip()
        write_private(self.known_hosts_path, f"[{self.host}]:{self.port} {public_host_key}\n", 0o644)
        log.info("login node for %s listening on %s port %d", self.username, self.host, self.port)
        return self

    def provisioner_config(self, remote_python: str, **extra: Any) -> dict[str, Any]:
        """The ``hpc-ssh`` provisioner settings that log in here as the current user."""
        config: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "client_keys": [str(self.client_key_path)],
            "known_hosts": str(self.known_hosts_path),
            "remote_python": remote_python,
        }
        config.update(extra)
        return config

    def ssh_command(self) -> list[str]:
        """How to log in here with OpenSSH's client, for people trying it by hand."""
        return [
            "ssh", "-p", str(self.port), "-i", str(self.client_key_path),
            "-o", f"UserKnownHostsFile={self.known_hosts_path}", "-o", "IdentitiesOnly=yes",
            f"{self.username}@{self.host}",
        ]

    async def close(self) -> None:
        """Stop listening, drop every connection, and end every command still running."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for conn in list(self._connections):
            conn.close()
        await asyncio.gather(*(self._end(command) for command in list(self._commands)))
        for task in list(self._sessions):
            task.cancel()
        await asyncio.gather(*self._sessions, return_exceptions=True)

    async def _end(self, command: asyncio.subprocess.Process) -> None:
        for signum, wait in ((signal.SIGTERM, self.grace), (signal.SIGKILL, None)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(command.pid, signum)
            try:
                await asyncio.wait_for(command.wait(), wait)
                return
            except asyncio.TimeoutError:
                continue

    # -- sessions -----------------------------------------------------------------------------

    def environment(self, process: asyncssh.SSHServerProcess) -> dict[str, str]:
        """A session's environment, as OpenSSH builds it for a non-interactive login."""
        env = {name: os.environ[name] for name in INHERITED_ENV if name in os.environ}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        peer_host, peer_port = process.get_extra_info("peername")[:2]
        own_host, own_port = process.get_extra_info("sockname")[:2]
        env.update(
            USER=self.username,
            LOGNAME=self.username,
            HOME=self.home,
            SHELL=self.shell,
            SSH_CONNECTION=f"{peer_host} {peer_port} {own_host} {own_port}",
            SSH_CLIENT=f"{peer_host} {peer_port} {own_port}",
        )
        for name, value in (process.env or {}).items():
            name = name.decode() if isinstance(name, bytes) else name
            value = value.decode() if isinstance(value, bytes) else value
            if name.startswith(ACCEPTED_CLIENT_ENV):
                env[name] = value
        env.update(self.session_env)
        return env

    async def _session(self, process: asyncssh.SSHServerProcess) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        try:
            await self._run(process)
        finally:
            self._sessions.discard(task)

    async def _run(self, process: asyncssh.SSHServerProcess) -> None:
        if process.subsystem:
            process.stderr.write(f"subsystem {process.subsystem!r} is not served here\n".encode())
            process.exit(1)
            return
        # Like sshd: a command goes to 'shell -c', no command starts a login shell.
        argv = [self.shell, "-c", process.command] if process.command is not None else [self.shell, "-l"]
        cwd = self.home if os.path.isdir(self.home) else "/"
        if process.get_terminal_type() is not None:
            await self._run_on_pty(process, argv, cwd)
            return
        try:
            command = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self.environment(process),
                cwd=cwd,
                start_new_session=True,  # its own process group, as sshd's children have
                preexec_fn=_default_signals,
            )
        except OSError as exc:
            process.stderr.write(f"cannot run {self.shell}: {exc}\n".encode())
            process.exit(127)
            return
        self._commands.add(command)
        feeding = asyncio.ensure_future(self._feed(process, command))
        try:
            await asyncio.gather(
                _copy_out(command.stdout, process.stdout),
                _copy_out(command.stderr, process.stderr),
            )
            status = await command.wait()
        finally:
            self._commands.discard(command)
            feeding.cancel()
        with contextlib.suppress(asyncssh.Error, OSError):
            if status >= 0:
                process.exit(status)
            else:
                process.exit_with_signal(signal.Signals(-status).name[3:])

    async def _run_on_pty(self, process: asyncssh.SSHServerProcess, argv: list[str], cwd: str) -> None:
        """The command on a PTY of its own, as sshd runs an interactive session."""
        master, slave = os.openpty()
        _set_window(master, process.get_terminal_size())
        env = self.environment(process)
        env.update(TERM=process.get_terminal_type() or "xterm", SSH_TTY=os.ttyname(slave))
        try:
            command = await asyncio.create_subprocess_exec(
                *argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd,
                start_new_session=True, preexec_fn=_begin_terminal_session,
            )
        except OSError as exc:
            os.close(master)
            process.stderr.write(f"cannot run {self.shell}: {exc}\r\n".encode())
            process.exit(127)
            return
        finally:
            os.close(slave)
        self._commands.add(command)
        loop = asyncio.get_running_loop()
        drained = loop.create_future()

        def readable() -> None:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every holder of the PTY's other end has gone
                data = b""
            if not data:
                loop.remove_reader(master)
                if not drained.done():
                    drained.set_result(None)
                return
            with contextlib.suppress(asyncssh.Error, OSError):
                process.stdout.write(data)

        os.set_blocking(master, False)
        loop.add_reader(master, readable)
        feeding = asyncio.ensure_future(self._feed_pty(process, master, command))
        try:
            status = await command.wait()
            with contextlib.suppress(asyncio.TimeoutError):  # output still in the PTY; a
                await asyncio.wait_for(asyncio.shield(drained), 0.5)  # job left on it keeps it open
        finally:
            loop.remove_reader(master)
            feeding.cancel()
            os.close(master)
            self._commands.discard(command)
        with contextlib.suppress(asyncssh.Error, OSError):
            if status >= 0:
                process.exit(status)
            else:
                process.exit_with_signal(signal.Signals(-status).name[3:])

    async def _feed_pty(self, process: asyncssh.SSHServerProcess, master: int,
                        command: asyncio.subprocess.Process) -> None:
        """Channel to PTY; window changes resize it; the channel's end hangs the session up."""
        try:
            while True:
                try:
                    data = await process.stdin.read(65536)
                except asyncssh.TerminalSizeChanged as exc:
                    _set_window(master, (exc.width, exc.height, exc.pixwidth, exc.pixheight))
                    continue
                except (asyncssh.SignalReceived, asyncssh.BreakReceived):
                    continue
                if not data:
                    break
                while data:
                    try:
                        data = data[os.write(master, data):]
                    except BlockingIOError:
                        await asyncio.sleep(0.01)
        except (asyncssh.Error, OSError):
            pass
        _hang_up_session(command.pid)  # as the kernel and the shell do when sshd closes the PTY

    async def _feed(self, process: asyncssh.SSHServerProcess, command: asyncio.subprocess.Process) -> None:
        """Channel to command's stdin. EOF or the channel's end closes it: the launcher's cue."""
        assert command.stdin is not None
        try:
            while True:
                try:
                    data = await process.stdin.read(65536)
                except asyncssh.SignalReceived as exc:
                    with contextlib.suppress(ProcessLookupError, ValueError, AttributeError):
                        os.killpg(command.pid, getattr(signal, "SIG" + exc.signal))
                    continue
                except (asyncssh.BreakReceived, asyncssh.TerminalSizeChanged):
                    continue
                if not data:
                    break
                command.stdin.write(data)
                await command.stdin.drain()
        except (asyncssh.Error, OSError):
            pass
        finally:
            command.stdin.close()


def _set_window(fd: int, size: tuple[int, int, int, int]) -> None:
    """Set a PTY's window from an SSH (width, height, pixwidth, pixheight)."""
    width, height, pixwidth, pixheight = size
    if width and height:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, pixwidth, pixheight))


def _hang_up_session(session_id: int) -> None:
    """SIGHUP to every process group of the login session: the shell's, and each job's. A shell
    forwards its hang-up to its jobs, but one that saw its terminal close first exits without
    doing so (bash without ``huponexit``), and a background job is not in the foreground group
    the kernel signals; the session is what a logout ends."""
    groups = {session_id}
    with contextlib.suppress(OSError):  # no /proc (not Linux): the shell's group alone
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == session_id:  # state, ppid, pgrp, session
                groups.add(int(fields[2]))
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGHUP)


def _default_signals() -> None:
    """In the child: every signal back to its default action, as sshd starts a session. An
    ignored signal stays ignored across exec, so a demo started with ``nohup`` (SIGHUP ignored)
    or as a non-interactive shell's background job (SIGINT, SIGQUIT) would hand that on to the
    user's shells and kernels: jobs that outlive the hang-up, kernels deaf to interrupts."""
    for signum in signal.valid_signals():
        if signum not in (signal.SIGKILL, signal.SIGSTOP):
            try:
                signal.signal(signum, signal.SIG_DFL)
            except (OSError, ValueError):  # not settable here (e.g. a real-time one in use)
                pass


def _begin_terminal_session() -> None:
    """In the child, after setsid: default signals, and its stdin (the PTY) becomes the
    session's controlling terminal, so job control works and the shell gets SIGHUP when the
    session ends."""
    _default_signals()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


async def _copy_out(source: asyncio.StreamReader | None, sink: asyncssh.SSHWriter) -> None:
    """Command's output to the channel until EOF; output after the client left is dropped."""
    assert source is not None
    open_ = True
    while data := await source.read(65536):
        if not open_:
            continue
        try:
            sink.write(data)
            await sink.drain()
        except (asyncssh.Error, OSError):
            open_ = False


class _HomeSFTPServer(asyncssh.SFTPServer):
    """SFTP with relative paths taken from the home, as OpenSSH's sftp-server starts there
    (asyncssh's own takes them from the serving process's working directory)."""

    def __init__(self, chan: asyncssh.SSHServerChannel, home: str) -> None:
        super().__init__(chan)
        self._home = os.fsencode(home)

    def map_path(self, path: bytes) -> bytes:
        return path if path.startswith(b"/") else os.path.join(self._home, path)


class _LoginServer(asyncssh.SSHServer):
    """Per-connection policy: who may log in and where channels may lead."""

    def __init__(self, node: LoginNode) -> None:
        self.node = node
        self.conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        self.node._connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None:
            self.node._connections.discard(self.conn)

    def begin_auth(self, username: str) -> bool:
        # Only the node's own user, and only with the generated key; any other name gets
        # no keys and so no way in.
        assert self.conn is not None
        self.conn.set_authorized_keys(self.node._authorized_keys if username == self.node.username else None)
        return True

    def auth_completed(self) -> None:
        self.node.logins += 1

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> bool:
        if is_loopback(dest_host):
            return True
        raise asyncssh.ChannelOpenError(
            asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
            "this login node forwards only to its loopback",
        )

    def unix_connection_requested(self, dest_path: str) -> bool:
        if self.node.allow_stream_local:
            return True
        raise asyncssh.ChannelOpenError(
            asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
            "stream-local forwarding is disabled on this login node",
        )

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return False


async def _serve(args: argparse.Namespace) -> None:
    owned = args.state_dir is None
    state_dir = Path(args.state_dir or tempfile.mkdtemp(prefix="jupyter-hpc-login-node-"))
    node = LoginNode(state_dir, port=args.port, allow_stream_local=not args.no_stream_local)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with node:
            print("Login node for", node.username, "on", f"{node.host} port {node.port}. Log in with:")
            print("   ", " ".join(node.ssh_command()))
            print("hpc-ssh provisioner config:")
            print("   ", json.dumps(node.provisioner_config(sys.executable)))
            print("Ctrl-C stops it.", flush=True)
            await stop.wait()
    finally:
        if owned:
            shutil.rmtree(state_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m jupyter_hpc.demo.login_node",
        description="Run the demo's SSH login node for the current user on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    parser.add_argument("--state-dir", help="where keys go (default: a private temporary directory, removed at exit)")
    parser.add_argument("--no-stream-local", action="store_true", help="refuse forwarding to Unix sockets")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
