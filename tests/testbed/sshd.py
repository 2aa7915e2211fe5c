"""A real OpenSSH sshd on a free loopback port, with a host key and client key made per run."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_hpc.ssh.quiet_import import asyncssh

SSHD = "/usr/sbin/sshd"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5) as sock:
                if sock.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"sshd did not answer on {host}:{port}")


def write_private(path: Path, data: bytes | str, mode: int = 0o600) -> Path:
    data = data.encode() if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)
    return path


@dataclass
class SSHDaemon:
    """One sshd process; ``known_hosts`` pins its host key, ``client_key`` logs in users."""

    root: Path
    users: list[str]
    host: str = "127.0.0.1"
    options: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.host_key_path = write_private(self.root / "ssh_host_ed25519_key", host_key.export_private_key())
        self.host_public_key = host_key.export_public_key().decode().strip()
        client_key = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key = write_private(self.root / "id_ed25519", client_key.export_private_key())
        self.client_public_key = client_key.export_public_key().decode().strip()
        write_private(self.root / "id_ed25519.pub", self.client_public_key + "\n", 0o644)
        self.authorized_keys_dir = self.root / "authorized_keys"
        self.authorized_keys_dir.mkdir(exist_ok=True)
        for user in self.users:
            write_private(self.authorized_keys_dir / user, self.client_public_key + "\n", 0o644)
        self.log = self.root / "sshd.log"
        self.known_hosts = self.root / "known_hosts"

    def config_text(self) -> str:
        settings = {
            "ListenAddress": self.host,
            "Port": str(self.port),
            "HostKey": str(self.host_key_path),
            "PidFile": str(self.root / "sshd.pid"),
            "AuthorizedKeysFile": str(self.authorized_keys_dir / "%u"),
            "StrictModes": "no",  # the per-run key files live under /tmp, which is 1777
            "UsePAM": "no",
            "PasswordAuthentication": "no",
            "KbdInteractiveAuthentication": "no",
            "PubkeyAuthentication": "yes",
            "AllowTcpForwarding": "yes",
            "AllowStreamLocalForwarding": "yes",
            "Subsystem": "sftp internal-sftp",
            "MaxSessions": "200",
            "MaxStartups": "100:30:200",
            "LogLevel": "VERBOSE",
            "AllowUsers": " ".join(self.users),
        }
        settings.update(self.options)
        return "".join(f"{key} {value}\n" for key, value in settings.items())

    def start(self) -> "SSHDaemon":
        os.makedirs("/run/sshd", exist_ok=True)
        self.port = self.port or free_port(self.host)
        config = self.root / "sshd_config"
        config.write_text(self.config_text())
        self.known_hosts.write_text(f"[{self.host}]:{self.port} {self.host_public_key}\n")
        subprocess.run([SSHD, "-t", "-f", str(config)], check=True)
        # -D: stay in the foreground, so this Popen is sshd itself and stop() ends it.
        self.process = subprocess.Popen([SSHD, "-D", "-f", str(config.resolve()), "-E", str(self.log.resolve())])
        wait_for_port(self.host, self.port)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def accepted_logins(self) -> int:
        """How many logins sshd has accepted so far (from its VERBOSE log)."""
        text = self.log.read_text() if self.log.exists() else ""
        return len(re.findall(r"Accepted publickey for ", text))

    def provisioner_config(self, user: str, **extra) -> dict:
        config = {
            "host": self.host,
            "port": self.port,
            "username": user,
            "client_keys": [str(self.client_key)],
            "known_hosts": str(self.known_hosts),
        }
        config.update(extra)
        return config


@contextlib.contextmanager
def running_sshd(users: list[str], name: str, **options: str) -> Iterator[SSHDaemon]:
    """An sshd for ``users`` in a fresh root of its own (not under pytest's 0700 tmp dir: sshd
    reads authorized keys as the user), stopped and removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix=f"jupyter-hpc-sshd-{name}-"))
    daemon = SSHDaemon(root, users=users, options=dict(options)).start()
    try:
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(root, ignore_errors=True)
