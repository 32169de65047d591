"""Running an admitted consumption within the time limit (L7), and no longer than its client.

Work that awaits anything runs as a task raced against the time limit and the client's
disconnect: whichever comes first cancels it, so its concurrency slot is freed at once.
The time limit is one budget per call, counted from the start of authentication
(`CONSUMPTION_STARTED`, set by admission): the token lookup, the admission, the reading of
an upload's body (`bounded`) and the work (`run`) all come out of the same 60 s.
Sandbox fault injection (a delay, a share of 503s) happens here too, inside the slot and
inside the time limit, exactly where a slow or failing real service would hurt a client.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TypeVar

from starlette.types import Receive

from routing_points.futures import discard_outcome
from routing_points.server.errors import ConsumptionTimeout, ServiceUnavailable
from routing_points.settings import Settings

T = TypeVar("T")
# Logged as the status of a request whose client left before its answer.
CLIENT_CLOSED = 499
# When this request's consumption started (time.monotonic()), for the time limit.
CONSUMPTION_STARTED: ContextVar[float | None] = ContextVar("consumption_started", default=None)


class ClientDisconnected(Exception):
    """The client went away before its answer was ready; there is no one to answer."""


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class ConsumptionGuard:
    def __init__(self, settings: Settings, chance: Callable[[], float] = random.random) -> None:
        self.timeout_s = settings.consumption_timeout_s
        self.latency_s = settings.sandbox_latency_ms / 1000
        self.failure_rate = settings.sandbox_failure_rate
        self._chance = chance

    @property
    def injects_faults(self) -> bool:
        return self.latency_s > 0 or self.failure_rate > 0

    def remaining(self) -> float:
        """What is left of this call's time limit, which started with its authentication."""
        started = CONSUMPTION_STARTED.get()
        if started is None:
            return self.timeout_s
        return max(0.0, self.timeout_s - (time.monotonic() - started))

    async def bounded(self, step: Awaitable[T]) -> T:
        """A step that must not race the disconnect watcher (reading the request's body,
        which reads the same channel), within what is left of the time limit."""
        try:
            return await asyncio.wait_for(step, timeout=max(self.remaining(), 0.001))
        except TimeoutError:
            raise ConsumptionTimeout(self.timeout_s) from None

    async def run(self, work: Callable[[], Awaitable[T]], receive: Receive) -> T:
        """The work, cancelled when the time limit ends or the client hangs up."""
        task = asyncio.ensure_future(self._with_faults(work))
        watcher = asyncio.ensure_future(_disconnected(receive))
        timeout = self.remaining()
        try:
            done, _ = await asyncio.wait(
                (task, watcher), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            watcher.cancel()
            watcher.add_done_callback(discard_outcome)
        if task in done:
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if watcher in done:
            raise ClientDisconnected()
        raise ConsumptionTimeout(self.timeout_s)

    async def _with_faults(self, work: Callable[[], Awaitable[T]]) -> T:
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        if self.failure_rate > 0 and self._chance() < self.failure_rate:
            raise ServiceUnavailable(
                "THE SERVICE IS TEMPORARILY UNAVAILABLE",
                headers=[(b"x-sandbox-fault", b"failure")],
            )
        return await work()
