"""Limits shared by every worker on every host, in Redis, with PostgreSQL as the record.

Admission is one Lua script, so Redis runs its checks and its writes as one indivisible
step: drop expired slot leases, check concurrency, the optional interval and the budget,
then charge and take a slot (scripts.py). Release is one `ZREM`. The admissions and
releases of one turn of the event loop go out together in the next, in one write on one
connection (pipe.py): about one write per turn, not per command. (A cluster or TLS URL
keeps redis-py's client: a script per admission, the turn's releases in one pipeline.)

Redis is fast, not durable: every charge it admits is then written through to the store
(PostgreSQL), and the request waits for that commit. The day's counter hash exists only
once it was seeded from the store; a Redis that restarted, failed over or lost its keys
has no hash, so the script answers "refill" and this module seeds it (only if still
absent) from the store before admitting again. If the store has charges for the day, the
slots of the calls running then were lost too: the operation's admissions wait for one
lease, by when every live holder has put its leases back (503, not the client's doing).
The budget's bound: the charges admitted by Redis whose store commit had not yet landed
when Redis lost them, i.e. at most the calls in flight at the crash; with Redis alive the
budget is exact.

Our own outage is never charged: a script whose answer is lost (timeout, broken
connection) is cancelled by a marker key and an undo that gives back its charge and its
slot whenever Redis answers again, and an admission whose store commit fails is undone
the same way. The script is idempotent per lease id, so a stale pooled connection (Redis
restarted) is retried once at once instead of answered 503.

Slots are short leases (`slot_lease_s`, a few seconds) that this process renews while
the call runs, every third of the lease; a renewal also puts back a lease Redis lost (a
restart, a stall longer than the lease), in order with the releases so that it never puts
back one already released. A worker that dies stops renewing, so its slots
come back within one lease, not after the 60 s time limit; a full token whose oldest
holder missed its renewals is refused with a distinct reason that does not blame the
client. A per-process liveness key would need a second lookup per slot on every
admission; renewed leases keep the check inside the one sorted set the script reads.

Keys, under the configured prefix, share the operation's hash tag so that the keys of
one admission live in one Redis Cluster hash slot:

    {prefix}:{o<op>}:slots:<token>        ZSET lease id -> expiry (ms, Redis time)
    {prefix}:{o<op>}:used:<day>           HASH "op" -> operation total, "t:<token>" -> token's,
                                          "settle" -> admissions wait until (ms, Redis time)
    {prefix}:{o<op>}:last:<token>:<api>   last charged consumption (ms), for the interval
    {prefix}:{o<op>}:gone:<lease>         an admission cancelled before Redis ran it
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.maint_notifications import MaintNotificationsConfig

from routing_points.limits.backend import (
    AdmitRequest,
    AdmitResult,
    BackendUnavailable,
    Outcome,
)
from routing_points.limits.pipe import NotSent, RedisPipe, supports
from routing_points.limits.scripts import ADMIT, RENEW, SEED, UNDO, AdmitArgs, UndoArgs
from routing_points.outage import Outage

logger = logging.getLogger("routing_points.limits")


_OUTCOMES = {
    0: Outcome.ADMITTED,
    1: Outcome.CONCURRENCY,
    2: Outcome.INTERVAL,
    3: Outcome.BUDGET,
    6: Outcome.RECLAIMING,
    7: Outcome.RECOVERING,
}
_REFILL, _CANCELLED = 4, 5
# An undo's pauses between tries while Redis does not answer, doubling (seconds).
UNDO_FIRST_PAUSE_S = 0.2
UNDO_LAST_PAUSE_S = 5.0
# How long an undo keeps trying while Redis does not answer (seconds).
UNDO_PATIENCE_S = 120.0


class CounterStore(Protocol):
    async def load_counters(self, operation_id: int, day: str) -> list[tuple[int, int]]: ...

    async def charge(self, token_id: int, day: str, operation_id: int, cost: int) -> None: ...


def _client(url: str, timeout_s: float, cluster: bool) -> Any:
    """A client that retries a broken connection once, at once, and never a timeout: the
    admit script is idempotent per lease, a timed-out one is cancelled instead. (The
    cluster client keeps its own retries, which follow moved slots; our deadline bounds
    them.)"""
    if cluster:
        return RedisCluster.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            # "auto" sends CLIENT MAINT_NOTIFICATIONS on every new connection; a server
            # that does not know it (Redis 7) closes connections opened at once under load.
            maint_notifications_config=MaintNotificationsConfig(enabled=False),
        )
    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=0,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    )


class RedisLimits:
    def __init__(
        self,
        client: Any,
        prefix: str,
        store: CounterStore,
        timeout_s: float,
        lease_s: float,
        pipe: RedisPipe | None = None,
    ) -> None:
        self._redis = client
        # Admissions and releases, pipelined per loop turn (see pipe.py); without it (a
        # cluster, TLS) they go through redis-py's client like every other command.
        self._pipe = pipe
        self._prefix = prefix
        self._store = store
        self._timeout_s = timeout_s
        # One deadline per call over the socket timeouts: a reply that trickles in, or a
        # cluster client's own retries, still end within it.
        self._deadline_s = timeout_s * 2
        self._loaded: asyncio.Future[None] | None = None
        self._lease_ms = int(lease_s * 1000)
        # Lease ids: unique to this process by a random prefix, then a count (no system call
        # for randomness on every admission).
        self._lease_prefix = secrets.token_hex(8)
        self._leases = itertools.count()
        self._admit = client.register_script(ADMIT)
        self._seed = client.register_script(SEED)
        self._undo = client.register_script(UNDO)
        self._sending: set[asyncio.Future[None]] = set()
        # Leases this process holds, by slots key: renewed until released.
        self._held: dict[str, set[str]] = {}
        self._renewer: asyncio.Task[None] | None = None
        # Releases and renewals not yet sent (without the pipe), and the task that sends
        # them (one batch at a time, in order).
        self._releases: list[tuple[Any, ...]] = []
        self._releasing: asyncio.Future[None] | None = None
        self.outage = Outage("limits (Redis)")

    def _unavailable(self, exc: BaseException) -> BackendUnavailable:
        cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        self.outage.failed(cause)
        return BackendUnavailable(cause)

    @classmethod
    def from_url(
        cls,
        url: str,
        prefix: str,
        timeout_s: float,
        store: CounterStore,
        lease_s: float,
        cluster: bool = False,
    ) -> RedisLimits:
        pipe = None if cluster or not supports(url) else RedisPipe(url, timeout_s)
        client = _client(url, timeout_s, cluster)
        return cls(client, prefix, store, timeout_s, lease_s, pipe)

    def _tag(self, operation_id: int) -> str:
        return f"{self._prefix}:{{o{operation_id}}}"

    def _keys(self, request: AdmitRequest, lease_id: str) -> list[str]:
        tag = self._tag(request.operation_id)
        return [
            f"{tag}:slots:{request.token_id}",
            f"{tag}:used:{request.day}",
            f"{tag}:last:{request.interval_key or 'none'}",
            f"{tag}:gone:{lease_id}",
        ]

    async def admit(self, request: AdmitRequest) -> AdmitResult:
        lease_id = f"{self._lease_prefix}{next(self._leases):x}"
        keys = self._keys(request, lease_id)
        now_ms = int(request.now * 1000)
        token_field = f"t:{request.token_id}"
        args = AdmitArgs(
            now_ms=now_ms,
            lease_ms=self._lease_ms,
            max_in_flight=request.max_in_flight,
            lease_id=lease_id,
            cost=request.cost,
            operation_limit=request.operation_limit,
            token_limit=-1 if request.token_limit is None else request.token_limit,
            token_field=token_field,
            interval_ms=int(request.min_interval_s * 1000) if request.interval_key else 0,
        )
        # Built only if needed: most admissions are never undone.
        undo = partial(
            UndoArgs,
            lease_id=lease_id,
            cost=request.cost,
            token_field=token_field,
            gone_ms=self._lease_ms * 4,
            now_ms=str(now_ms),
        )
        loaded = self._loaded
        if loaded is None or (loaded.done() and loaded.exception() is not None):
            self._loaded = loaded = asyncio.ensure_future(self._load_scripts())
        if not loaded.done():  # once loaded, an admission awaits nothing here
            try:
                await asyncio.shield(loaded)
            except (RedisError, OSError, TimeoutError) as exc:
                raise self._unavailable(exc) from exc
        for _ in range(3):
            try:
                outcome, token_used, operation_used, wait_ms = await self._run_admit(keys, args)
            except NotSent as exc:  # it never reached Redis: nothing to give back
                raise self._unavailable(exc) from exc
            except (RedisError, OSError, TimeoutError) as exc:
                self._undo_soon(keys, undo)
                raise self._unavailable(exc) from exc
            except BaseException:
                self._undo_soon(keys, undo)
                raise
            self.outage.ended()
            if int(outcome) != _REFILL:
                break
            await self._refill(request, keys[1])
        else:
            raise BackendUnavailable("the day's counters could not be seeded")
        if int(outcome) == _CANCELLED:
            raise BackendUnavailable("the admission was cancelled")
        result = _OUTCOMES[int(outcome)]
        if result is not Outcome.ADMITTED:
            return AdmitResult(
                result, int(token_used), int(operation_used), retry_after_s=int(wait_ms) / 1000
            )
        if request.cost:
            try:
                await self._store.charge(
                    request.token_id, request.day, request.operation_id, request.cost
                )
            except BaseException:
                self._undo_soon(keys, undo)
                raise
        self._hold(keys[0], lease_id)
        return AdmitResult(
            result,
            int(token_used),
            int(operation_used),
            lease=f"{keys[0]}|{lease_id}",
        )

    async def _run_admit(self, keys: list[str], args: AdmitArgs) -> Any:
        """The admit script's reply. Through the pipe: a lost connection is retried once,
        at once, on a new one (the script is idempotent per lease), and a script Redis lost
        (it restarted) is loaded again, as redis-py's client and script object do."""
        pipe = self._pipe
        if pipe is None:
            async with asyncio.timeout(self._deadline_s):
                return await self._admit(keys=keys, args=args)
        reconnected = reloaded = False
        while True:
            try:
                return await pipe.call("EVALSHA", self._admit.sha, len(keys), *keys, *args)
            except NotSent as exc:
                if reconnected:  # the first try left, and its answer was lost: undo it
                    raise RedisConnectionError(str(exc)) from exc
                raise
            except RedisConnectionError:
                if reconnected:
                    raise
                reconnected = True
            except NoScriptError:
                if reloaded:
                    raise
                reloaded = True
                await pipe.call("SCRIPT", "LOAD", ADMIT)

    async def _load_scripts(self) -> None:
        """Load the scripts once, on every node, before the first admission: many calls
        at once would otherwise each find them missing and load them again (and a
        cluster client's connections do not survive that crowd well)."""
        async with asyncio.timeout(self._timeout_s * 4):
            for script in (ADMIT, SEED, UNDO):
                await self._redis.script_load(script)

    async def _refill(self, request: AdmitRequest, used: str) -> None:
        """Seed the day's counters from the store: the durable record of every charge."""
        counts = await self._store.load_counters(request.operation_id, request.day)
        charged = sum(count for _, count in counts)
        fields: list[Any] = ["op", charged]
        for token_id, count in counts:
            fields += [f"t:{token_id}", count]
        # Charges today but no counters: Redis lost them (a restart without its data, a
        # failover, FLUSHALL), and the slots of the calls running then with them. (None:
        # the day's first call, or a day with nothing charged yet.)
        settle_ms = self._lease_ms if charged else 0
        try:
            async with asyncio.timeout(self._deadline_s):
                seeded = await self._seed(keys=[used], args=[request.day_ttl_s, settle_ms, *fields])
        except (RedisError, OSError, TimeoutError) as exc:
            raise self._unavailable(exc) from exc
        if seeded and charged:
            logger.warning(
                "limits: the counters of operation %s for %s were missing in Redis; "
                "refilled from the store (%s calls); its calls wait %.1f s for the running "
                "ones to put back their slots",
                request.operation_id,
                request.day,
                charged,
                settle_ms / 1000,
            )

    def _undo_soon(self, keys: list[str], undo: Callable[[], UndoArgs]) -> None:
        task = asyncio.ensure_future(self._undo_until_done(keys, undo()))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _undo_until_done(self, keys: list[str], undo: UndoArgs) -> None:
        """Give back a charge and a slot we could not use; keep trying while Redis is away."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + UNDO_PATIENCE_S
        pause = UNDO_FIRST_PAUSE_S
        while True:
            try:
                async with asyncio.timeout(self._deadline_s):
                    await self._undo(keys=keys, args=undo)
                return
            except (RedisError, OSError, TimeoutError):
                if loop.time() > deadline:
                    return
                # Backing off: thousands of undos pending through an outage, each trying five
                # times a second, burned half a core per worker and slowed every answer.
                await asyncio.sleep(pause)
                pause = min(pause * 2, UNDO_LAST_PAUSE_S)

    def _hold(self, slots: str, lease_id: str) -> None:
        self._held.setdefault(slots, set()).add(lease_id)
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.ensure_future(self._renew_forever())

    async def _renew_forever(self) -> None:
        while self._held:
            await asyncio.sleep(self._lease_ms / 3000)
            # Queued in this turn, in order with the releases: see RENEW. EVAL with the
            # script's text, not EVALSHA: a Redis that restarted without its data lost the
            # scripts too, and a NOSCRIPT nobody reads would lose the renewal just then.
            for slots, leases in self._held.items():
                self._queue(("EVAL", RENEW, 1, slots, self._lease_ms, *leases))

    async def release(self, token_id: int, lease: str) -> None:
        """Give the slot back before the client can ask again, without waiting for Redis.

        The `ZREM`s of every call that ends in one turn of the event loop go out together
        in the next, as one pipeline: under load, a fraction of a round trip per call. A
        release that cannot reach Redis is covered by the lease, which expires by itself
        once this process no longer renews it.
        """
        slots, _, lease_id = lease.rpartition("|")
        leases = self._held.get(slots)
        if leases is not None:
            leases.discard(lease_id)
            if not leases:
                del self._held[slots]
        self._queue(("ZREM", slots, lease_id))

    def _queue(self, command: tuple[Any, ...]) -> None:
        """Send a release or a renewal, whose reply does not matter, after those queued
        before it: on the pipe's one connection, or through one sender that pipelines them
        in order (a key's commands reach its node in order)."""
        if self._pipe is not None:
            self._pipe.send(*command)
            return
        self._releases.append(command)
        if self._releasing is None:
            self._releasing = asyncio.ensure_future(self._send_releases())

    async def _send_releases(self) -> None:
        try:
            while self._releases:
                commands, self._releases = self._releases, []
                with contextlib.suppress(RedisError, OSError, TimeoutError):
                    async with asyncio.timeout(self._deadline_s):
                        pipeline = self._redis.pipeline(transaction=False)
                        for command in commands:
                            pipeline.execute_command(*command)
                        await pipeline.execute()
        finally:
            self._releasing = None

    async def ping(self) -> None:
        """Readiness: through the connection the admissions use, where there is one."""
        try:
            async with asyncio.timeout(self._deadline_s):
                if self._pipe is not None:
                    await self._pipe.call("PING")
                else:
                    await self._redis.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            raise self._unavailable(exc) from exc
        self.outage.ended()

    async def close(self) -> None:
        if self._releasing is not None:
            await asyncio.gather(self._releasing, return_exceptions=True)
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
        if self._sending:
            # Undos still waiting for an absent Redis give up: the leases expire anyway.
            _, pending = await asyncio.wait(self._sending, timeout=self._timeout_s * 2)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._pipe is not None:
            self._pipe.close()
        await self._redis.aclose()
