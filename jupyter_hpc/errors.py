"""One error root for jupyter_hpc.

Every failure a user can meet derives from :class:`HPCError`. Each carries two texts: the
``message`` a user reads (what went wrong and how to fix it), and ``log_detail`` for the
server log (argv, exit status, stderr). Keeping them apart lets the notebook show a short,
actionable sentence while the log keeps everything an admin needs.
"""

from __future__ import annotations

import shlex
import unicodedata
from collections.abc import Sequence


def printable(text: str) -> str:
    """``text`` with control characters escaped (newlines and tabs kept): remote output such as
    a kernel's colored traceback or a terminal escape must reach a user as text, not as codes."""
    def keep(c: str) -> bool:
        return c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cs")

    if all(map(keep, text)):
        return text
    return "".join(c if keep(c) else c.encode("unicode_escape").decode() for c in text)


class HPCError(Exception):
    """Root of every jupyter_hpc error."""

    def __init__(self, message: str, *, log_detail: str = "") -> None:
        message = printable(message)
        super().__init__(message)
        self.message = message
        self.log_detail = log_detail

    def __str__(self) -> str:
        return self.message


class SSHConnectError(HPCError):
    """The SSH connection to a site could not be made (unreachable, refused key, timeout)."""


class HostKeyError(SSHConnectError):
    """The host offered a key that known_hosts does not trust."""

    def __init__(self, host: str, port: int, fingerprint: str, known_hosts: str | None) -> None:
        where = known_hosts or "~/.ssh/known_hosts"
        super().__init__(
            f"The host key of {host} port {port} is not trusted: it offered {fingerprint}, "
            f"which does not match {where}. If the site changed its host key, verify the new "
            f"fingerprint with the site's admins, then update {where} "
            f"(ssh-keygen -R '[{host}]:{port}' -f {where}; then connect once with ssh)."
        )
        self.host = host
        self.port = port
        self.fingerprint = fingerprint


class RemoteCommandError(HPCError):
    """A command run on the remote side failed; carries argv, exit status and stderr."""

    def __init__(
        self, message: str, *, argv: Sequence[str] = (), exit_status: int | None = None, stderr: str = ""
    ) -> None:
        super().__init__(
            message,
            log_detail=f"argv={shlex.join(argv)} exit_status={exit_status} stderr={stderr!r}",
        )
        self.argv = list(argv)
        self.exit_status = exit_status
        self.stderr = stderr


class SlurmError(RemoteCommandError):
    """The scheduler refused, failed or lost a job; the message carries SLURM's own words.

    Raised by the magics for a failing command and by the SLURM provisioner for a job that is
    refused, times out in the queue or ends before its kernel starts.
    """

    @classmethod
    def from_command(
        cls, argv: Sequence[str], exit_status: int | None, stderr: str, where: str = ""
    ) -> "SlurmError":
        """E.g. ``sbatch failed on cori (exit status 1): sbatch: error: invalid partition``."""
        place = f" on {where}" if where else ""
        return cls(
            f"{argv[0]} failed{place} (exit status {exit_status}): {stderr.strip() or 'no error output'}",
            argv=argv, exit_status=exit_status, stderr=stderr,
        )


class NodeUnreachableError(SSHConnectError):
    """The login node was reached, but not the compute node a kernel's job runs on."""


class KernelLaunchError(HPCError):
    """The remote launcher could not start the kernel."""


class TransportRefusedError(HPCError):
    """No private transport is available and plaintext loopback was not allowed."""


class PTYRefusedError(HPCError):
    """The login node opened a session but refused it a terminal (PTY)."""
