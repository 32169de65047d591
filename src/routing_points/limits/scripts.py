"""The Lua scripts of the Redis limits, and their arguments (see redis.py for the keys).

Apart from the client that runs them: each script is one indivisible step in Redis, and its
arguments are named tuples from which the script's `local`s are generated, so the Python
side and the Lua side cannot disagree on an argument's place.
"""

from __future__ import annotations

from typing import Any, NamedTuple, get_type_hints


class AdmitArgs(NamedTuple):
    """The admit script's arguments. Built by keyword; the script's `local`s that read them
    are generated from these fields, so a field added or moved cannot shift the others."""

    now_ms: int
    lease_ms: int
    max_in_flight: int
    lease_id: str
    cost: int
    operation_limit: int
    token_limit: int  # -1: the token has no daily limit of its own
    token_field: str
    interval_ms: int


class UndoArgs(NamedTuple):
    """The undo script's arguments (see AdmitArgs)."""

    lease_id: str
    cost: int
    token_field: str
    gone_ms: int
    now_ms: str  # compared with the stored value, a string, as it is


_KEYS = "local slots, used, last, gone = KEYS[1], KEYS[2], KEYS[3], KEYS[4]\n"

# Redis's own clock in milliseconds: every lease and wait is scored by it, never by a
# worker's clock (workers on several hosts need not agree).
_REDIS_MS = """
local function redis_ms_now()
  local clock = redis.call('TIME')
  return tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
end
"""


def _locals(args: type[tuple[Any, ...]]) -> str:
    """`local <field> = ARGV[i]` for every field, numbers through tonumber."""
    hints = get_type_hints(args)
    return "".join(
        f"local {name} = tonumber(ARGV[{i}])\n"
        if hints[name] is int
        else f"local {name} = ARGV[{i}]\n"
        for i, name in enumerate(args._fields, 1)  # type: ignore[attr-defined]
    )


ADMIT = (
    _KEYS
    + _locals(AdmitArgs)
    + _REDIS_MS
    + """

if redis.call('EXISTS', gone) == 1 then
  return {5, 0, 0, 0}
end
-- A seeded hash always has "op": no "op", no hash (one call, not EXISTS and two HGETs).
local counts = redis.call('HMGET', used, 'op', token_field, 'settle')
if not counts[1] then
  return {4, 0, 0, 0}
end
local operation_used = tonumber(counts[1])
local token_used = tonumber(counts[2] or '0')
if redis.call('ZSCORE', slots, lease_id) then
  return {0, token_used, operation_used, 0}
end
local redis_ms = redis_ms_now()
-- Redis lost its data while calls ran: none admitted until their holders put back their
-- leases (see SEED).
if counts[3] and redis_ms < tonumber(counts[3]) then
  return {7, token_used, operation_used, tonumber(counts[3]) - redis_ms}
end
redis.call('ZREMRANGEBYSCORE', slots, '-inf', redis_ms)
if redis.call('ZCARD', slots) >= max_in_flight then
  -- A live holder renews every third of the lease; one left with less than a third
  -- has missed its renewals: its process is gone and the slot is coming back.
  if redis.call('ZCOUNT', slots, '-inf', redis_ms + math.floor(lease_ms / 3)) > 0 then
    return {6, token_used, operation_used, 0}
  end
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
  if interval_ms > 0 then
    redis.call('SET', last, now_ms, 'PX', interval_ms)
  end
end
redis.call('ZADD', slots, redis_ms + lease_ms, lease_id)
redis.call('PEXPIRE', slots, lease_ms)
return {0, token_used, operation_used, 0}
"""
)

# Seed the day's counters from the store, unless another worker already did. ARGV: the
# hash's expiry (s), how long admissions wait (ms, 0: not at all), then field, value, ...
# Counters the store has charges for were lost with the slots of the calls then running:
# admissions wait (field "settle", Redis ms) for as long as a lease, by when every live
# holder has put its leases back (RENEW), as it must renew within a lease to keep any.
SEED = (
    _REDIS_MS
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
local settle_ms = tonumber(ARGV[2])
if settle_ms > 0 then
  redis.call('HSET', KEYS[1], 'settle', redis_ms_now() + settle_ms)
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
"""
)

# Cancel an admission whose answer we never got, or whose store commit failed.
UNDO = (
    _KEYS
    + _locals(UndoArgs)
    + """
redis.call('SET', gone, 1, 'PX', gone_ms)
if redis.call('ZREM', slots, lease_id) == 1 and cost > 0 then
  if redis.call('EXISTS', used) == 1 then
    redis.call('HINCRBY', used, 'op', -cost)
    redis.call('HINCRBY', used, token_field, -cost)
  end
  if redis.call('GET', last) == now_ms then
    redis.call('DEL', last)
  end
end
return 0
"""
)

# Extend the leases this process still holds on one token's slots, and put back any that
# Redis lost (a restart without persistence, a failover, FLUSHALL) or let lapse in a stall:
# their calls still run. Sent in order with this process's releases, on one connection, so
# a lease released before the renewal was built is never in it, and one released after is
# removed after it.
RENEW = (
    _REDIS_MS
    + """
local expiry = redis_ms_now() + ARGV[1]
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], expiry, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 0
"""
)
