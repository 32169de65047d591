"""One Redis connection that sends every command of one event-loop turn in one write.

Why: on the scale-out path most of a worker's CPU per request went to the Redis client.
redis-py packs, pools, retries and observes each command on its own, and each command is
one write to the socket, whose loopback TCP work (the receiver's side included) the writer
pays. Here the admissions and releases issued in one turn of the loop go out together in
the next, as one pipelined write (Redis answers in order), packed by hiredis and read by its
parser: a fraction of a write per call, and one reply parse per call.

The faults keep redis-py's meaning, so the limits above need no new case:
- a command unanswered `timeout_s` after it was queued fails with `TimeoutError`, and the
  connection is dropped with every command still on it (their answers would be in doubt);
- a lost connection fails its pending commands with redis-py's `ConnectionError`, and the
  next command opens a new one;
- Redis's error replies are redis-py's exceptions (`NoScriptError` for a script Redis lost).
The deadline is one timer per connection, armed on its oldest pending command: replies come
in order, so no younger one can be overdue while it is not.
"""

from __future__ import annotations

import asyncio
from collections import deque
from functools import partial
from typing import Any, cast

import hiredis
from redis.asyncio.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

# A command whose reply nobody waits for (a release): the lease covers a lost one.
_NOBODY = None
Waiter = asyncio.Future[Any] | None


class NotSent(RedisConnectionError):
    """No connection could be opened: the command never left, so it has nothing to undo."""


def supports(url: str) -> bool:
    """Whether a URL is one this connection can open: plain TCP or a Unix socket (TLS and
    Redis Cluster keep redis-py's client)."""
    return url.startswith(("redis://", "unix://"))


def _error(reply: ResponseError) -> ResponseError:
    message = str(reply)
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    return reply


def _no_password_set(reply: BaseException) -> bool:
    """Redis's answer to a password it does not ask for: redis-py connects anyway (the
    server is open), and so does this connection, or readiness (redis-py's PING) and the
    admissions (here) would disagree."""
    message = str(reply)
    return "called without any password configured" in message or ("no password is set" in message)


def _send_on(packed: bytes, connecting: asyncio.Future[_Connection]) -> None:
    if not connecting.cancelled() and connecting.exception() is None:
        connecting.result().send(packed, _NOBODY)


class _Connection(asyncio.Protocol):
    def __init__(self, timeout_s: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._timeout_s = timeout_s
        self._reader = hiredis.Reader(replyError=ResponseError)
        self._transport: asyncio.Transport | None = None
        self._outgoing: list[bytes] = []
        # (waiter, when queued), oldest first: replies come in this order.
        self._pending: deque[tuple[Waiter, float]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (asyncio and uvloop both set TCP_NODELAY; uvloop's is no asyncio.Transport.)
        self._transport = cast(asyncio.Transport, transport)

    def send(self, packed: bytes, waiter: Waiter) -> None:
        """Queue a packed command; it goes out with the others of this turn."""
        if not self._outgoing:
            self._loop.call_soon(self._flush)
        self._outgoing.append(packed)
        self._pending.append((waiter, self._loop.time()))
        if self._timer is None:
            self._timer = self._loop.call_at(self._loop.time() + self._timeout_s, self._check)

    def call(self, packed: bytes) -> asyncio.Future[Any]:
        """Queue a packed command; the future its reply."""
        waiter = self._loop.create_future()
        self.send(packed, waiter)
        return waiter

    def _flush(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        if self._transport is not None and not self.lost:
            self._transport.write(b"".join(outgoing))

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        try:
            while (reply := self._reader.gets()) is not False:
                waiter = self._pending.popleft()[0]
                if waiter is None or waiter.done():
                    continue
                if isinstance(reply, ResponseError):
                    waiter.set_exception(_error(reply))
                else:
                    waiter.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:
            self._drop(RedisConnectionError(f"Redis sent what no command asked for: {exc}"))

    def _check(self) -> None:
        """The oldest unanswered command's deadline: fail all if it passed, else wait on."""
        self._timer = None
        if not self._pending:
            return
        due = self._pending[0][1] + self._timeout_s
        if due <= self._loop.time():
            self._drop(TimeoutError("Timeout reading from Redis"))
        else:
            self._timer = self._loop.call_at(due, self._check)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError("Connection closed by server."))

    def _drop(self, error: Exception) -> None:
        self._fail(error)
        if self._transport is not None:
            self._transport.abort()

    def _fail(self, error: Exception) -> None:
        self.lost = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, deque()
        for waiter, _ in pending:
            if waiter is not None and not waiter.done():
                waiter.set_exception(error)

    def close(self) -> None:
        self._flush()
        self.lost = True
        if self._transport is not None:
            self._transport.close()


class RedisPipe:
    """Commands to one Redis server, pipelined per loop turn over one connection."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self._options = parse_url(url)
        self._timeout_s = timeout_s
        self._connection: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None

    async def call(self, *args: Any) -> Any:
        """Run one command and return its reply (an exception for an error reply)."""
        connection = self._connection
        if connection is None or connection.lost:
            try:
                connection = await self._connect()
            except (OSError, TimeoutError, RedisConnectionError) as exc:
                raise NotSent(f"Error connecting to Redis: {exc or type(exc).__name__}") from exc
        return await connection.call(hiredis.pack_command(args))

    def send(self, *args: Any) -> None:
        """Send a command whose reply does not matter (a release), with those of this turn;
        without a live connection, first on the new one (before any command asked for
        after it). One that cannot reach Redis is dropped: a release's lease expires."""
        packed = hiredis.pack_command(args)
        connection = self._connection
        if connection is not None and not connection.lost:
            connection.send(packed, _NOBODY)
        else:
            self._connecting_now().add_done_callback(partial(_send_on, packed))

    async def _connect(self) -> _Connection:
        return await asyncio.shield(self._connecting_now())

    def _connecting_now(self) -> asyncio.Future[_Connection]:
        """One new connection at a time, however many commands wait for it."""
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._open())
        return self._connecting

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        options = self._options
        timeout_s = self._timeout_s
        async with asyncio.timeout(timeout_s):
            if "path" in options:
                _, connection = await loop.create_unix_connection(
                    lambda: _Connection(timeout_s), options["path"]
                )
            else:
                _, connection = await loop.create_connection(
                    lambda: _Connection(timeout_s),
                    options.get("host", "localhost"),
                    options.get("port", 6379),
                )
        greeting: list[tuple[Any, ...]] = []
        if options.get("password"):
            user = (options["username"],) if options.get("username") else ()
            greeting.append(("AUTH", *user, options["password"]))
        if options.get("db"):
            greeting.append(("SELECT", options["db"]))
        waiters = []
        for command in greeting:
            waiter: asyncio.Future[Any] = loop.create_future()
            connection.send(hiredis.pack_command(command), waiter)
            waiters.append(waiter)
        try:
            replies = await asyncio.gather(*waiters, return_exceptions=True)
        except BaseException:
            connection.close()
            raise
        for reply in replies:
            if isinstance(reply, BaseException) and not _no_password_set(reply):
                connection.close()
                raise reply
        self._connection = connection
        return connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
