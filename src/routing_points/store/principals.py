"""Tokens looked up once per worker, forgotten the moment PostgreSQL says they changed.

Without a cache every request of the scale-out path pays a PostgreSQL round trip for its
token. Each worker therefore keeps the principals it has looked up, and a connection of its
own LISTENs on a channel that triggers on `tokens` and `operations` NOTIFY at every commit
that changes them (a revocation, a new limit, a point change that bumps the operation's
version): every worker on every host forgets its whole cache within milliseconds.

Three rules keep that safe:
- while the listening connection is down (or not yet up), nothing is cached: every request
  asks PostgreSQL, exactly as without a cache;
- a lookup that started before an invalidation is not stored after it (a generation count),
  so a revocation racing with a lookup cannot be undone by it;
- an entry is trusted for at most `max_age_s` (1 s), a bound on any notification lost in
  transit, and on time-based rules such as a token's expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from routing_points.store.reader import Principal

logger = logging.getLogger("routing_points.store")

CHANNEL = "routing_points_principals"
MAX_ENTRIES = 100_000
RECONNECT_S = (0.1, 0.5, 1.0, 2.0, 5.0)


class PrincipalCache:
    def __init__(
        self,
        lookup: Callable[[str], Awaitable[Principal | None]],
        max_age_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self._max_age_s = max_age_s
        self._clock = clock
        self._entries: dict[str, tuple[Principal, float]] = {}
        self._generation = 0
        self.listening = False

    def invalidate(self) -> None:
        self._generation += 1
        self._entries.clear()

    def set_listening(self, listening: bool) -> None:
        self.listening = listening
        self.invalidate()

    async def get(self, secret_hash: str) -> Principal | None:
        now = self._clock()
        if self.listening:
            entry = self._entries.get(secret_hash)
            if entry is not None and now - entry[1] < self._max_age_s:
                return entry[0]
        generation = self._generation
        principal = await self._lookup(secret_hash)
        # Unknown tokens are not kept: anyone can make up more of them.
        if principal is not None and self.listening and generation == self._generation:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[secret_hash] = (principal, now)
        return principal

    def __len__(self) -> int:
        return len(self._entries)


class ChangeListener:
    """The LISTEN connection of one worker; reconnects by itself, with back-off."""

    def __init__(self, dsn: str, cache: PrincipalCache, timeout_s: float) -> None:
        self._dsn = dsn
        self._cache = cache
        self._timeout_s = timeout_s
        self._connection: Any = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._keep_listening())

    async def _keep_listening(self) -> None:
        failures = 0
        while True:
            try:
                await self._listen()
                failures = 0
                await self._lost.wait()
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                if failures == 0:
                    logger.warning("principal cache off: cannot listen for changes (%s)", exc)
                failures += 1
            self._cache.set_listening(False)
            await self._drop()
            await asyncio.sleep(RECONNECT_S[min(failures, len(RECONNECT_S) - 1)])

    async def _listen(self) -> None:
        self._lost.clear()
        connection = await asyncpg.connect(self._dsn, timeout=self._timeout_s)
        self._connection = connection
        connection.add_termination_listener(lambda _connection: self._lost.set())
        await connection.add_listener(CHANNEL, self._notified)
        self._cache.set_listening(True)

    def _notified(self, *_args: Any) -> None:
        self._cache.invalidate()

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.terminate()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._cache.set_listening(False)
        await self._drop()
