"""The pipelined Redis connection of the admissions (limits/pipe.py), against a real Redis.

What the limits rely on: every caller gets its own reply however many share a write; a
stalled or lost Redis fails the pending commands (TimeoutError, ConnectionError) and the
next command opens a new connection; error replies are redis-py's exceptions; a release is
seen by another worker before this worker's next admission answers.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from routing_points.limits.backend import AdmitRequest, BackendUnavailable, Outcome
from routing_points.limits.pipe import RedisPipe
from routing_points.limits.redis import RedisLimits
from tests.support.faults import PrivateRedis, TcpProxy
from tests.support.limits import admit_request
from tests.support.services import RedisNamespace

pytestmark = pytest.mark.anyio

# Generous: a broken pipe must fail well within it, never hang the test.
PATIENCE_S = 20


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
async def pipe(redis_namespace: RedisNamespace) -> AsyncIterator[RedisPipe]:
    """A pipe to the shared Redis, closed after the test, on its event loop."""
    opened = RedisPipe(redis_namespace.url, timeout_s=5)
    yield opened
    opened.close()


async def test_every_caller_gets_its_own_reply_when_many_share_one_write(
    pipe: RedisPipe, redis_namespace: RedisNamespace
) -> None:
    key = f"{redis_namespace.prefix}:n"
    replies = await asyncio.gather(*(pipe.call("INCRBY", key, i) for i in range(1, 201)))
    echoed = await asyncio.gather(*(pipe.call("ECHO", f"e{i}") for i in range(200)))
    # INCRBY answers the running total: each caller saw exactly its own command's effect.
    assert replies == [i * (i + 1) // 2 for i in range(1, 201)]
    assert echoed == [f"e{i}".encode() for i in range(200)]


def reads_processed(port: int) -> int:
    client = redis.Redis(port=port)
    try:
        return int(client.info("stats")["total_reads_processed"])
    finally:
        client.close()


async def test_the_commands_of_one_turn_reach_redis_in_one_write(
    private_redis: PrivateRedis,
) -> None:
    pipe = RedisPipe(private_redis.url, timeout_s=5)
    try:
        await pipe.call("PING")  # connected
        before = reads_processed(private_redis.port)
        replies = await asyncio.gather(*(pipe.call("ECHO", f"e{i}") for i in range(100)))
        after = reads_processed(private_redis.port)
    finally:
        pipe.close()
    assert len(replies) == 100
    # One write of 100 commands (a few kB): Redis reads it at once, or in a few reads if it
    # looks before all has arrived; one command per write would be 100 (+1 for INFO).
    assert after - before <= 10, f"{after - before} reads for 100 commands"


async def test_error_replies_are_redis_py_exceptions_and_leave_the_connection_usable(
    pipe: RedisPipe, redis_namespace: RedisNamespace
) -> None:
    key = f"{redis_namespace.prefix}:text"
    await pipe.call("SET", key, "x")
    missing, wrong, fine = await asyncio.gather(
        pipe.call("EVALSHA", "0" * 40, 0),
        pipe.call("HGET", key, "field"),
        pipe.call("GET", key),
        return_exceptions=True,
    )
    assert isinstance(missing, NoScriptError)
    assert isinstance(wrong, ResponseError)
    assert "WRONGTYPE" in str(wrong)
    assert fine == b"x"


async def test_the_url_s_database_and_password_are_used(private_redis: PrivateRedis) -> None:
    admin = redis.Redis(port=private_redis.port)
    admin.config_set("requirepass", "s3cret")
    admin.close()
    pipe = RedisPipe(f"redis://:s3cret@127.0.0.1:{private_redis.port}/3", timeout_s=5)
    try:
        await pipe.call("SET", "where", "db3")
    finally:
        pipe.close()
    check = redis.Redis(port=private_redis.port, password="s3cret", db=3)
    try:
        assert check.get("where") == b"db3"
    finally:
        check.close()
    refused = RedisPipe(f"redis://:wrong@127.0.0.1:{private_redis.port}/0", timeout_s=5)
    with pytest.raises(ResponseError):
        await refused.call("PING")


async def test_a_stalled_redis_times_the_pending_commands_out_then_recovers(
    private_redis: PrivateRedis,
) -> None:
    proxy = TcpProxy("127.0.0.1", private_redis.port).start()
    pipe = RedisPipe(f"redis://127.0.0.1:{proxy.port}/0", timeout_s=0.3)
    try:
        assert await pipe.call("PING") == b"PONG"
        proxy.stall()
        async with asyncio.timeout(PATIENCE_S):
            stalled = await asyncio.gather(
                pipe.call("PING"), pipe.call("PING"), return_exceptions=True
            )
        assert [type(error) for error in stalled] == [TimeoutError, TimeoutError]
        proxy.restore()
        async with asyncio.timeout(PATIENCE_S):
            assert await pipe.call("PING") == b"PONG"
    finally:
        pipe.close()
        proxy.close()


async def test_a_restarted_redis_fails_what_was_pending_and_the_next_command_reconnects(
    private_redis: PrivateRedis,
) -> None:
    pipe = RedisPipe(private_redis.url, timeout_s=5)
    try:
        assert await pipe.call("PING") == b"PONG"
        private_redis.stop()
        async with asyncio.timeout(PATIENCE_S):
            with pytest.raises((RedisConnectionError, OSError)):
                await pipe.call("PING")
        private_redis.start()
        async with asyncio.timeout(PATIENCE_S):
            assert await pipe.call("PING") == b"PONG"
    finally:
        pipe.close()


async def test_a_command_sent_without_a_connection_goes_out_on_a_new_one(
    pipe: RedisPipe, redis_namespace: RedisNamespace
) -> None:
    key = f"{redis_namespace.prefix}:sent"
    pipe.send("SET", key, "v")  # nothing connected yet: a release after a lost connection
    # Queued once the new connection is open, before any command asked for after it.
    assert await pipe.call("GET", key) == b"v"


class NoStore:
    """The store of limits whose counters are seeded in Redis by the test: never asked."""

    async def load_counters(self, operation_id: int, day: str) -> list[tuple[int, int]]:
        raise AssertionError("the counters were seeded; the store is not asked")

    async def charge(self, token_id: int, day: str, operation_id: int, cost: int) -> None:
        raise AssertionError("free calls charge nothing")


def free_call(token_id: int) -> AdmitRequest:
    """A call that costs nothing but still takes one of the token's one slot."""
    return admit_request(token_id, 7, cost=0, operation_limit=100, max_in_flight=1)


def worker(url: str, prefix: str) -> RedisLimits:
    return RedisLimits.from_url(url, prefix, timeout_s=5, store=NoStore(), lease_s=30)


def seed_counters(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    client.hset(f"{prefix}:{{o7}}:used:2000-01-01", "op", 0)
    client.close()


async def test_a_release_is_seen_by_another_worker_before_the_next_admission_answers(
    redis_namespace: RedisNamespace,
) -> None:
    url, prefix = redis_namespace.url, redis_namespace.prefix
    seed_counters(url, prefix)
    first, second = worker(url, prefix), worker(url, prefix)
    try:
        held = await first.admit(free_call(1))
        assert held.outcome is Outcome.ADMITTED
        assert held.lease is not None
        assert (await second.admit(free_call(1))).outcome is Outcome.CONCURRENCY
        await first.release(1, held.lease)
        # The release goes out with (before) the first worker's next command: once that
        # command is answered, the slot is free for every worker.
        assert (await first.admit(free_call(2))).outcome is Outcome.ADMITTED
        assert (await second.admit(free_call(1))).outcome is Outcome.ADMITTED
    finally:
        await first.close()
        await second.close()


async def test_a_release_with_no_admission_after_it_still_goes_out_at_once(
    redis_namespace: RedisNamespace,
) -> None:
    url, prefix = redis_namespace.url, redis_namespace.prefix
    seed_counters(url, prefix)
    first, second = worker(url, prefix), worker(url, prefix)
    try:
        held = await first.admit(free_call(1))
        assert held.lease is not None
        await first.release(1, held.lease)
        # Sent on the next turn of the loop: far within the 30 s lease, which would free
        # it otherwise. (Polled, with a bound no loaded machine comes near.)
        outcomes = []
        async with asyncio.timeout(PATIENCE_S):
            while not outcomes or outcomes[-1] is not Outcome.ADMITTED:
                outcomes.append((await second.admit(free_call(1))).outcome)
                await asyncio.sleep(0.01)
        assert set(outcomes[:-1]) <= {Outcome.CONCURRENCY}
    finally:
        await first.close()
        await second.close()


class FirstCallOfTheDay(NoStore):
    """The store on a day with nothing charged yet."""

    async def load_counters(self, operation_id: int, day: str) -> list[tuple[int, int]]:
        return []


async def test_the_day_s_counters_keep_the_expiry_they_were_seeded_with(
    redis_namespace: RedisNamespace,
) -> None:
    url, prefix = redis_namespace.url, redis_namespace.prefix
    limits = RedisLimits.from_url(url, prefix, 5, FirstCallOfTheDay(), lease_s=30)
    check = redis.Redis.from_url(url)
    try:
        for token in range(3):  # the first seeds the counters, the others find them
            result = await limits.admit(free_call(token))
            assert result.outcome is Outcome.ADMITTED
        ttl = check.ttl(f"{prefix}:{{o7}}:used:2000-01-01")
    finally:
        check.close()
        await limits.close()
    # Seeded with the day's 600 s: they expire with the day, whatever admits them later.
    assert 0 < ttl <= 600


async def test_a_script_redis_lost_is_loaded_again(private_redis: PrivateRedis) -> None:
    prefix = f"rp-{secrets.token_hex(3)}"
    seed_counters(private_redis.url, prefix)
    limits = worker(private_redis.url, prefix)
    admin: Any = redis.Redis(port=private_redis.port)
    try:
        assert (await limits.admit(free_call(1))).outcome is Outcome.ADMITTED
        admin.script_flush()
        assert (await limits.admit(free_call(2))).outcome is Outcome.ADMITTED
    finally:
        admin.close()
        await limits.close()


async def test_admissions_that_never_reached_redis_leave_nothing_to_undo(
    private_redis: PrivateRedis,
) -> None:
    """Refused at connect, a command never left: an undo of it would only retry against a
    dead Redis (thousands of them burned half a core per worker through an outage)."""
    prefix = f"rp{secrets.token_hex(3)}"
    seed_counters(private_redis.url, prefix)
    limits = worker(private_redis.url, prefix)
    try:
        held = await limits.admit(free_call(1))
        assert held.lease is not None
        await limits.release(1, held.lease)
        private_redis.kill()
        for token_id in range(2, 22):
            with pytest.raises(BackendUnavailable):
                await limits.admit(free_call(token_id))
        # Only the first may have left (on the connection Redis had just dropped): at most
        # its undo waits. Before, all 20 did.
        assert len(limits._sending) <= 1
        private_redis.start()  # that undo lands, and the close does not wait for it
    finally:
        await limits.close()


@pytest.mark.parametrize("through", ["pipe", "redis-py"])
async def test_a_running_call_s_slot_is_put_back_after_redis_lost_it(
    private_redis: PrivateRedis, through: str
) -> None:
    """Redis restarted without its data while a call ran: the call's next renewal puts its
    lease back, so a token's limit holds again within a third of the lease, not only once
    the call ends (up to 60 s); and its release, sent after, is not undone by a renewal."""
    url, prefix, lease_s = private_redis.url, f"rp{secrets.token_hex(3)}", 0.6
    seed_counters(url, prefix)

    def limits() -> RedisLimits:
        if through == "pipe":
            return RedisLimits.from_url(url, prefix, 5, NoStore(), lease_s=lease_s)
        return RedisLimits(aioredis.Redis.from_url(url), prefix, NoStore(), 5, lease_s)

    holder, other = limits(), limits()
    admin: Any = redis.Redis(port=private_redis.port)
    slots = f"{prefix}:{{o7}}:slots:1"
    try:
        held = await holder.admit(free_call(1))
        assert held.lease is not None
        private_redis.kill()
        private_redis.start()
        seed_counters(url, prefix)  # as the next admission's refill from the store would
        assert admin.zcard(slots) == 0
        await asyncio.sleep(lease_s)  # a renewal is due every lease_s / 3
        assert admin.zcard(slots) == 1
        assert (await other.admit(free_call(1))).outcome is Outcome.CONCURRENCY
        await holder.release(1, held.lease)
        await asyncio.sleep(lease_s)  # long enough for a renewal to put it back, wrongly
        assert admin.zcard(slots) == 0
        assert (await other.admit(free_call(1))).outcome is Outcome.ADMITTED
    finally:
        admin.close()
        await holder.close()
        await other.close()


async def test_a_password_redis_does_not_ask_for_is_no_failure(
    private_redis: PrivateRedis,
) -> None:
    """redis-py connects anyway, so readiness (its PING) said ready while every admission
    (here) failed on Redis's answer to AUTH: both connect now."""
    url = f"redis://:unneeded@127.0.0.1:{private_redis.port}/0"
    pipe = RedisPipe(url, timeout_s=5)
    try:
        async with asyncio.timeout(PATIENCE_S):
            assert await pipe.call("PING") == b"PONG"
    finally:
        pipe.close()
