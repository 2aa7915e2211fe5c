"""The record of a server's running remote kernels, kept on disk so that a restart can find them.

One JSON file in the Jupyter runtime directory::

    {"version": 1, "kernels": {"<kernel id>": {"kernel_name": "...", "path": "...", "provisioner_info": {...}}}}

``provisioner_info`` is what the provisioner's ``get_provisioner_info()`` returns: ids (host,
pid, kernel directory, job id, local endpoints) and the kernel's connection info, whose signing
key is a secret. So the file is created with mode 0600 (never a moment with wider permissions)
and replaced atomically: a server killed mid-write leaves the previous record whole.

Only one server may own a record at a time: it holds an exclusive ``flock`` on a lock file
beside it for as long as it runs. The kernel releases the lock when the process dies, SIGKILL
included, so the next server takes over; a second server started meanwhile gets no record
(neither reattaching nor stealing the running server's kernels).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from typing import Any

log = logging.getLogger("jupyter_hpc.server")

VERSION = 1


def _plain(value: Any) -> Any:
    """JSON for what a provisioner returns: bytes (the signing key) become text."""
    if isinstance(value, bytes):
        return value.decode()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class KernelRecords:
    """Kernel id → ``{"kernel_name", "provisioner_info"}``, mirrored to ``path`` on each change."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._entries: dict[str, dict[str, Any]] = {}
        self._lock_fd: int | None = None

    @property
    def owned(self) -> bool:
        return self._lock_fd is not None

    def acquire(self) -> bool:
        """Take the record for this process; False if another live server holds it."""
        if self._lock_fd is not None:
            return True
        directory = os.path.dirname(self.path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the only descriptor drops the flock
            self._lock_fd = None

    def load(self) -> dict[str, dict[str, Any]]:
        """Read the record a previous server left; an unreadable one is set aside, not fatal."""
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
            kernels = data["kernels"]
            if data.get("version") != VERSION or not isinstance(kernels, dict):
                raise ValueError(f"unknown record version {data.get('version')!r}")
        except FileNotFoundError:
            kernels = {}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            aside = f"{self.path}.unreadable"
            log.warning("The kernel record %s is unreadable (%s); moved to %s", self.path, exc, aside)
            with contextlib.suppress(OSError):
                os.replace(self.path, aside)
            kernels = {}
        self._entries = {
            str(kernel_id): entry for kernel_id, entry in kernels.items()
            if isinstance(entry, dict) and isinstance(entry.get("provisioner_info"), dict)
        }
        return dict(self._entries)

    def __contains__(self, kernel_id: str) -> bool:
        return kernel_id in self._entries

    def put(self, kernel_id: str, kernel_name: str, provisioner_info: dict[str, Any], path: str = "") -> None:
        """Record (or update) a kernel: its kernelspec, the provisioner's ids (a SLURM job's
        from the moment sbatch answers, ``queued_job`` then), and the notebook's path."""
        entry: dict[str, Any] = {"kernel_name": kernel_name, "provisioner_info": provisioner_info}
        if path:
            entry["path"] = path
        self._entries[kernel_id] = entry
        self._write()

    def drop(self, kernel_id: str) -> None:
        if self._entries.pop(kernel_id, None) is not None:
            self._write()

    def _write(self) -> None:
        """Atomically replace the file: a 0600 temporary beside it, fsynced, then renamed."""
        if not self.owned:
            return
        text = json.dumps({"version": VERSION, "kernels": self._entries}, default=_plain, indent=1)
        partial = f"{self.path}.{os.getpid()}.partial"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise
