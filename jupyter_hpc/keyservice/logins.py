"""Failed logins and back-off per (user, source address), and used TOTP steps, in ``logins.json``.

A lock keyed by the user alone is a weapon: anyone who knows a name locks its owner out, and
by repeating five wrong tries every ``lockout`` keeps them out for good (sshproxy's model, and
ours before). So failures count against the pair (user, address the request came from): a
third party's failures lock the third party out, never the owner at another address. Each lock
of the same pair lasts twice the one before (``lockout``, 2×, 4×, … up to ``max_lockout``), so
guessing from one address slows down exponentially; a success, or a quiet ``max_lockout``,
forgets the pair. Unknown names are counted exactly like known ones (their locks and answers
must not tell the two apart), so the table is bounded: entries that no longer lock anything
are dropped, and past ``max_entries`` the oldest go first.

The last TOTP step a user logged in with is kept per user: a code is good once, and a step at or
before the last used one is refused, so neither a replay nor a code seen over a shoulder works.
Everything survives a restart.
"""

from __future__ import annotations

import time
from pathlib import Path

from .state import read_json, write_json

LOGINS_FILE = "logins.json"


def source_key(user: str, address: str) -> str:
    """The table key of (user, address): a space never occurs in a user name or an address."""
    return f"{user} {address}"


class LoginGuard:
    """Back-off per (user, address) and the last used OTP step per user, for one state directory."""

    def __init__(
        self,
        state_dir: Path,
        *,
        max_failures: int = 5,
        window: float = 300.0,
        lockout: float = 60.0,
        max_lockout: float = 86400.0,
        max_entries: int = 10000,
    ) -> None:
        self.path = Path(state_dir) / LOGINS_FILE
        self.max_failures = max_failures
        self.window = window
        self.lockout = lockout
        self.max_lockout = max(max_lockout, lockout)
        self.max_entries = max_entries
        saved = read_json(self.path, {})
        # Older files kept failures and locks per user; only the used steps carry over.
        self._steps: dict[str, int] = {
            user: entry["last_step"] for user, entry in saved.get("users", {}).items() if "last_step" in entry
        }
        self._sources: dict[str, dict] = saved.get("sources", {})

    def _save(self) -> None:
        write_json(self.path, {"users": {u: {"last_step": s} for u, s in self._steps.items()}, "sources": self._sources})

    def locked_until(self, user: str, address: str, now: float | None = None) -> float:
        """When the lock of ``user`` at ``address`` ends (unix time), or 0 when not locked."""
        now = time.time() if now is None else now
        until = self._sources.get(source_key(user, address), {}).get("locked_until", 0)
        return until if until > now else 0

    def record_failure(self, user: str, address: str, now: float | None = None) -> float:
        """Count a failure of ``user`` at ``address``; the lock's end when this one locks, else 0."""
        now = time.time() if now is None else now
        entry = self._sources.setdefault(source_key(user, address), {})
        if now - entry.get("last", now) > self.max_lockout:
            entry.pop("strikes", None)  # quiet for a whole max_lockout: start again from lockout
        failures = [t for t in entry.get("failures", []) if now - t < self.window]
        failures.append(now)
        entry["failures"], entry["last"] = failures, now
        until = 0.0
        if len(failures) >= self.max_failures:
            strikes = entry.get("strikes", 0)
            until = now + min(self.lockout * 2**strikes, self.max_lockout)
            entry.update(locked_until=until, strikes=strikes + 1, failures=[])
        self._prune(now)
        self._save()
        return until

    def _prune(self, now: float) -> None:
        """Drop entries that lock nothing and count nothing any more; bound the table's size."""
        for key in [k for k, e in self._sources.items() if now - e.get("last", 0) > max(self.window, self.max_lockout)
                    and e.get("locked_until", 0) <= now]:
            del self._sources[key]
        if len(self._sources) > self.max_entries:
            oldest = sorted(self._sources, key=lambda k: self._sources[k].get("last", 0))
            for key in oldest[: len(self._sources) - self.max_entries]:
                del self._sources[key]

    def step_used(self, user: str, step: int) -> bool:
        """True when ``step`` is not newer than the last step ``user`` logged in with."""
        return step <= self._steps.get(user, -1)

    def record_success(self, user: str, address: str, step: int) -> None:
        """Keep the step as used and forget the pair's failures and back-off."""
        self._steps[user] = max(step, self._steps.get(user, -1))
        self._sources.pop(source_key(user, address), None)
        self._save()
