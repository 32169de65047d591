"""One gate per token for the whole process: the vendor's advice L1, kept for the caller.

Every `Client` and `AsyncClient` of a token passes through the same gate, from any thread
and any event loop, so the process never has more of that token's requests in flight
than allowed. Waiters are served first come, first served; a released slot is handed
straight to the next waiter, so nobody can barge past the queue. A task cancelled while
waiting gives back a slot it was handed in the meantime.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import deque

from routing_points import contract

MAX_IN_FLIGHT = contract.MAX_IN_FLIGHT_PER_TOKEN  # L8, the server's default


class _Waiter:
    __slots__ = ("event", "future", "granted", "loop")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None = None,
        future: asyncio.Future[None] | None = None,
    ) -> None:
        self.loop = loop
        self.future = future
        self.event = threading.Event() if future is None else None
        self.granted = False

    def wake(self) -> bool:
        """Tell the waiter it holds a slot; False if it can no longer be told."""
        if self.event is not None:
            self.event.set()
            return True
        assert self.loop is not None
        assert self.future is not None
        try:
            self.loop.call_soon_threadsafe(_resolve, self.future)
        except RuntimeError:  # its event loop is closed
            return False
        return True


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class TokenGate:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._in_flight = 0
        self._waiters: deque[_Waiter] = deque()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def _try_enter(self) -> bool:
        if self._in_flight < self.limit and not self._waiters:
            self._in_flight += 1
            return True
        return False

    def acquire(self) -> None:
        with self._lock:
            if self._try_enter():
                return
            waiter = _Waiter()
            self._waiters.append(waiter)
        assert waiter.event is not None
        waiter.event.wait()

    async def acquire_async(self) -> None:
        with self._lock:
            if self._try_enter():
                return
            loop = asyncio.get_running_loop()
            waiter = _Waiter(loop, loop.create_future())
            self._waiters.append(waiter)
        assert waiter.future is not None
        try:
            await waiter.future
        except BaseException:
            with self._lock:
                handed_over = waiter.granted
                if not handed_over:
                    self._waiters.remove(waiter)
            if handed_over:
                self.release()
            raise

    def release(self) -> None:
        with self._lock:
            # A tightened gate drains down to its new limit before handing slots on.
            while self._waiters and self._in_flight <= self.limit:
                waiter = self._waiters.popleft()
                waiter.granted = True
                if waiter.wake():
                    return
            self._in_flight -= 1


_gates: dict[str, TokenGate] = {}
_gates_lock = threading.Lock()


def gate_for(token: str, limit: int) -> TokenGate:
    """The process's gate for this token. Clients asking for fewer slots tighten it."""
    key = hashlib.sha256(token.encode()).hexdigest()
    with _gates_lock:
        gate = _gates.get(key)
        if gate is None:
            gate = _gates[key] = TokenGate(limit)
        elif limit < gate.limit:
            gate.limit = limit
        return gate
