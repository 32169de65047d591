"""Limits shared by every worker on every host, in Redis.

Admission is one Lua script, so Redis runs its checks and its writes as one indivisible
step: drop expired slot leases, check concurrency, the optional interval and the budget,
then charge and take a slot. Release is one `ZREM`. A slot is a lease in a sorted set,
scored by its expiry on Redis's own clock: a worker killed while holding one locks the
token out only until the lease runs out (the time limit plus a margin). Daily counters
live in one hash per operation and local day, and expire after that day.

Keys, under the configured prefix:

    {prefix}:slots:{token_id}            ZSET lease id -> expiry (ms, Redis time)
    {prefix}:used:{operation_id}:{day}   HASH "op" -> operation total, "t:{token}" -> token's
    {prefix}:last:{token_id}:{api}       last charged consumption (ms), for the interval
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from routing_points.limits.backend import (
    AdmitRequest,
    AdmitResult,
    BackendUnavailable,
    Outcome,
)

_ADMIT = """
local slots, used, last = KEYS[1], KEYS[2], KEYS[3]
local now_ms = tonumber(ARGV[1])
local lease_ms = tonumber(ARGV[2])
local max_in_flight = tonumber(ARGV[3])
local lease_id = ARGV[4]
local cost = tonumber(ARGV[5])
local operation_limit = tonumber(ARGV[6])
local token_limit = tonumber(ARGV[7])
local token_field = ARGV[8]
local day_ttl_s = tonumber(ARGV[9])
local interval_ms = tonumber(ARGV[10])

local clock = redis.call('TIME')
local redis_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', slots, '-inf', redis_ms)
local operation_used = tonumber(redis.call('HGET', used, 'op') or '0')
local token_used = tonumber(redis.call('HGET', used, token_field) or '0')
if redis.call('ZCARD', slots) >= max_in_flight then
  return {1, token_used, operation_used, 0}
end
if cost > 0 then
  if interval_ms > 0 then
    local previous = redis.call('GET', last)
    if previous and now_ms - tonumber(previous) < interval_ms then
      return {2, token_used, operation_used, interval_ms - (now_ms - tonumber(previous))}
    end
  end
  if operation_used + cost > operation_limit
      or (token_limit >= 0 and token_used + cost > token_limit) then
    return {3, token_used, operation_used, 0}
  end
  operation_used = redis.call('HINCRBY', used, 'op', cost)
  token_used = redis.call('HINCRBY', used, token_field, cost)
  redis.call('EXPIRE', used, day_ttl_s)
  if interval_ms > 0 then
    redis.call('SET', last, now_ms, 'PX', interval_ms)
  end
end
redis.call('ZADD', slots, redis_ms + lease_ms, lease_id)
redis.call('PEXPIRE', slots, lease_ms)
return {0, token_used, operation_used, 0}
"""

_OUTCOMES = (Outcome.ADMITTED, Outcome.CONCURRENCY, Outcome.INTERVAL, Outcome.BUDGET)


class RedisLimits:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._redis = client
        self._prefix = prefix
        self._admit = client.register_script(_ADMIT)
        self._releases: list[tuple[str, str]] = []
        self._sending: set[asyncio.Future[None]] = set()

    @classmethod
    def from_url(cls, url: str, prefix: str, timeout_s: float) -> RedisLimits:
        client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            health_check_interval=0,
        )
        return cls(client, prefix)

    def _slots(self, token_id: int) -> str:
        return f"{self._prefix}:slots:{token_id}"

    def _used(self, operation_id: int, day: str) -> str:
        return f"{self._prefix}:used:{operation_id}:{day}"

    async def admit(self, request: AdmitRequest) -> AdmitResult:
        lease = secrets.token_hex(8)
        interval_key = request.interval_key or "none"
        keys = [
            self._slots(request.token_id),
            self._used(request.operation_id, request.day),
            f"{self._prefix}:last:{interval_key}",
        ]
        args: list[Any] = [
            int(request.now * 1000),
            int(request.lease_s * 1000),
            request.max_in_flight,
            lease,
            request.cost,
            request.operation_limit,
            -1 if request.token_limit is None else request.token_limit,
            f"t:{request.token_id}",
            request.day_ttl_s,
            int(request.min_interval_s * 1000) if request.interval_key else 0,
        ]
        try:
            outcome, token_used, operation_used, wait_ms = await self._admit(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise BackendUnavailable(f"{type(exc).__name__}: {exc}") from exc
        result = _OUTCOMES[int(outcome)]
        return AdmitResult(
            result,
            int(token_used),
            int(operation_used),
            lease=lease if result is Outcome.ADMITTED else None,
            retry_after_s=int(wait_ms) / 1000,
        )

    async def release(self, token_id: int, lease: str) -> None:
        """Give the slot back: one ZREM, sent with the other releases of this loop turn.

        The request does not wait for it: a release that cannot reach Redis is covered by
        the lease, which expires by itself.
        """
        if not self._releases:
            asyncio.get_running_loop().call_soon(self._send_releases)
        self._releases.append((self._slots(token_id), lease))

    def _send_releases(self) -> None:
        releases, self._releases = self._releases, []
        task = asyncio.ensure_future(self._zrem_all(releases))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _zrem_all(self, releases: list[tuple[str, str]]) -> None:
        with contextlib.suppress(RedisError, OSError):
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, lease in releases:
                    pipe.zrem(key, lease)
                await pipe.execute()

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            raise BackendUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        if self._releases:
            self._send_releases()
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
        await self._redis.aclose()
