"""Failed logins, lockouts and used TOTP steps, kept in ``logins.json`` so they survive a restart.

Five failures within 300 s lock a user out for ``lockout`` seconds (sshproxy's own defaults for
the count and window; sshproxy keeps them in memory, so restarting it unlocks everyone). The
last TOTP step a user logged in with is kept too: a code is good once, and a step at or before
the last used one is refused, so neither a replay nor a code seen over a shoulder works again.
"""

from __future__ import annotations

import time
from pathlib import Path

from .state import read_json, write_json

LOGINS_FILE = "logins.json"


class LoginGuard:
    """Per-user failure counts, locks and last used OTP step for one state directory."""

    def __init__(self, state_dir: Path, *, max_failures: int = 5, window: float = 300.0, lockout: float = 900.0) -> None:
        self.path = Path(state_dir) / LOGINS_FILE
        self.max_failures = max_failures
        self.window = window
        self.lockout = lockout
        self._users: dict[str, dict] = read_json(self.path, {"users": {}}).get("users", {})

    def _save(self) -> None:
        write_json(self.path, {"users": self._users})

    def locked_until(self, user: str, now: float | None = None) -> float:
        """When ``user``'s lock ends (unix time), or 0 when not locked."""
        now = time.time() if now is None else now
        until = self._users.get(user, {}).get("locked_until", 0)
        return until if until > now else 0

    def record_failure(self, user: str, now: float | None = None) -> bool:
        """Count a failure; True when this one locks the user out."""
        now = time.time() if now is None else now
        entry = self._users.setdefault(user, {})
        failures = [t for t in entry.get("failures", []) if now - t < self.window]
        failures.append(now)
        entry["failures"] = failures
        locked = len(failures) >= self.max_failures
        if locked:
            entry["locked_until"] = now + self.lockout
            entry["failures"] = []
        self._save()
        return locked

    def step_used(self, user: str, step: int) -> bool:
        """True when ``step`` is not newer than the last step ``user`` logged in with."""
        return step <= self._users.get(user, {}).get("last_step", -1)

    def record_success(self, user: str, step: int) -> None:
        """Keep the step as used and forget the user's earlier failures."""
        entry = self._users.setdefault(user, {})
        entry["last_step"] = max(step, entry.get("last_step", -1))
        entry["failures"] = []
        entry.pop("locked_until", None)
        self._save()
