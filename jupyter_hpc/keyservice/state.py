"""The key service's state directory: every file in it holds or guards a secret.

The CA key, password hashes, TOTP secrets and the login record are read by no one but the
service's own uid, so the directory is 0700 and each file 0600 from the moment it exists:
files are created with that mode (never chmod-ed after a write) and replaced by an atomic
rename, so a crash mid-write leaves the old file, never half a JSON document or a key.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from ..errors import HPCError


class KeyServiceError(HPCError):
    """Root of the key service's errors (client and server side)."""


class StateDirError(KeyServiceError):
    """The state directory cannot be used safely."""


def ensure_state_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` 0700 if missing; refuse one that others can read or that we do not own."""
    directory = Path(path).expanduser().resolve()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = directory.stat()
    if info.st_uid != os.getuid():
        raise StateDirError(
            f"The key service's state directory {directory} belongs to uid {info.st_uid}, not to this "
            f"user (uid {os.getuid()}). Run the service as the directory's owner, or give another --state-dir."
        )
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(directory, 0o700)
    return directory


def write_private(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` mode 0600 through a temporary file and an atomic rename."""
    data = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_private(path: Path) -> bytes | None:
    """``path``'s bytes, or None when it does not exist; refuse a file others could read."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as handle:
        mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
        if mode & 0o077:
            raise StateDirError(
                f"{path} is readable by others (mode {mode:04o}); it holds secrets. "
                f"Fix it with: chmod 600 {path}"
            )
        return handle.read()


def read_json(path: Path, default):
    data = read_private(path)
    if data is None:
        return default
    try:
        return json.loads(data)
    except ValueError as error:
        raise StateDirError(
            f"{path} is not valid JSON ({error}). Restore it from a backup or remove it "
            f"(removing users.json removes every user; removing logins.json clears lockouts)."
        ) from None


def write_json(path: Path, value) -> None:
    write_private(path, json.dumps(value, indent=1, sort_keys=True) + "\n")


def append_private(path: Path, line: str) -> None:
    """Append one line to a 0600 file (the audit log), creating it 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(line.rstrip("\n") + "\n")
