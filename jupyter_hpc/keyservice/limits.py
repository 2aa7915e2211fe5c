"""How many password checks run at once: per source address, and in all.

An argon2 check costs about 64 MiB and tens of milliseconds of a core, on purpose. Without a
bound, one client sending a hundred logins at once would make the service hold a hundred of
them in memory and starve everyone else's. :class:`CheckSlots` lets ``per_address`` checks of
one address and ``total`` checks of all addresses run at once; further requests of an address
wait in line (a hub sends all its users' logins from one address), and past ``max_waiting``
waiting ones that address is told to come back later instead of queueing without end.

:class:`KeyedLocks` serializes the attempts of one (user, address) pair, so parallel guesses
cannot all pass the lock check before the first failure is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator, Hashable


class TooManyWaiting(Exception):
    """An address already has ``max_waiting`` checks waiting for a slot."""


class CheckSlots:
    """At most ``per_address`` concurrent checks per address and ``total`` in all."""

    def __init__(self, total: int, per_address: int, max_waiting: int) -> None:
        self.total = total
        self.per_address = per_address
        self.max_waiting = max_waiting
        self._all = asyncio.Semaphore(total)
        self._addresses: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}
        self.running = 0
        self.running_by_address: dict[str, int] = {}
        # The most ever run at once, in all and for any one address (the tests read these).
        self.peak = 0
        self.peak_per_address = 0

    @contextlib.asynccontextmanager
    async def slot(self, address: str) -> AsyncIterator[None]:
        """Hold one check slot of ``address``; raises :class:`TooManyWaiting` at once when its line is full."""
        semaphore, users = self._addresses.get(address) or self._addresses.setdefault(
            address, (asyncio.Semaphore(self.per_address), [0])
        )
        if users[0] >= self.per_address + self.max_waiting:
            raise TooManyWaiting(address)
        users[0] += 1
        try:
            async with semaphore, self._all:
                self.running += 1
                mine = self.running_by_address[address] = self.running_by_address.get(address, 0) + 1
                self.peak = max(self.peak, self.running)
                self.peak_per_address = max(self.peak_per_address, mine)
                try:
                    yield
                finally:
                    self.running -= 1
                    self.running_by_address[address] -= 1
                    if not self.running_by_address[address]:
                        del self.running_by_address[address]
        finally:
            users[0] -= 1
            if not users[0]:
                del self._addresses[address]


class KeyedLocks:
    """One asyncio lock per key, kept only while someone holds or awaits it (the table stays small)."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[key]

    def __len__(self) -> int:
        return len(self._locks)
