"""Look at the 'remote' host as an admin would: processes, listeners, files (same machine here)."""

from __future__ import annotations

import os
import re
import subprocess


def parent_chain(pid: int) -> list[str]:
    """Command names from ``pid`` up to init."""
    names = []
    while pid > 1:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        names.append(name)
        pid = int(stat[stat.rindex(")") + 2 :].split()[1])
    return names


def parent_pid(pid: int) -> int:
    """``pid``'s parent, or 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError):
        return 0


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie, or a process reaped between open and read (ESRCH), has ended."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def all_cmdlines() -> dict[int, str]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    out[int(entry)] = handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                pass
    return out


def under_sshd(marker: str) -> set[int]:
    """Processes started over SSH (sshd among their ancestors) whose command line has ``marker``."""
    return {pid for pid, cmd in all_cmdlines().items() if marker in cmd and "sshd" in _chain_or_empty(pid)}


def _chain_or_empty(pid: int) -> list[str]:
    try:
        return parent_chain(pid)
    except (OSError, ValueError):  # ended while we looked
        return []


def tcp_listeners(pid: int) -> list[str]:
    """Local addresses on which ``pid`` listens for TCP (from ``ss -ltnp``)."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    return [line.split()[3] for line in out.splitlines() if re.search(rf"pid={pid}\b", line)]


def unix_listeners(pid: int) -> list[str]:
    """Unix socket paths on which ``pid`` listens (from ``ss -lxp``)."""
    out = subprocess.run(["ss", "-lxpH"], capture_output=True, text=True, check=True).stdout
    return [line.split()[4] for line in out.splitlines() if re.search(rf"pid={pid}\b", line)]


def user_processes(user: str) -> list[str]:
    out = subprocess.run(["ps", "-u", user, "-o", "pid=,args="], capture_output=True, text=True).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]
