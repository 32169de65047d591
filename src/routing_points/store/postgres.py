"""The PostgreSQL store on the hot path: asyncpg and a connection pool, rows as tuples.

Every failure to reach the database (refused, reset, timed out, a pool with no free
connection) becomes `StoreUnavailable`; the pool replaces broken connections on the next
acquire, so service resumes by itself when the database is back. Every call, the wait for
a pooled connection and a new connection included, has one deadline (`database_timeout_s`):
a black-holed network answers 503 within it, not when the network returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
from sqlalchemy.engine import make_url

from routing_points.futures import settle
from routing_points.outage import Outage
from routing_points.store.factory import LIMITS_LOCK_FUNCTIONS, LOCAL_LIMITS_LOCK
from routing_points.store.principals import ChangeListener, PrincipalCache
from routing_points.store.reader import (
    CHANGES_SQL,
    CHARGE_SQL,
    COUNT_SQL,
    PRINCIPAL_COLUMNS,
    PRINCIPAL_VALID_UNTIL,
    PRINCIPAL_WHERE,
    STALE_SQL,
    VERSION_SQL,
    Changes,
    Charge,
    Principal,
    RenderedRecord,
    StoredPage,
    StoreUnavailable,
    by_rp_id,
)

_PRINCIPAL_SQL = f"""
SELECT {PRINCIPAL_COLUMNS}, {PRINCIPAL_VALID_UNTIL.format("$1")}
FROM tokens t JOIN operations o ON o.id = t.operation_id
WHERE {PRINCIPAL_WHERE.format("$1")}
"""
# A page in one row: its records' JSON joined in rp_id order, a stale one as its marked
# rp_id; convert_to hands back bytes (bytea), not text to decode.
_PAGE_SQL = """
SELECT count(*), count(record_json), max(rp_id),
       convert_to(string_agg(coalesce(record_json, chr(1) || rp_id::text || chr(1)), ','
                             ORDER BY rp_id), 'UTF8')
FROM (
    SELECT rp_id, record_json FROM routing_points
    WHERE operation_id = $1 AND rp_id > $2 {routing}
    ORDER BY rp_id LIMIT $3
) AS page
"""
_MORE_SQL = """
SELECT EXISTS (SELECT 1 FROM routing_points WHERE operation_id = $1 AND rp_id > $2 {routing})
"""
_STALE_SQL = STALE_SQL.format(p="$")
_VERSION_SQL = VERSION_SQL.format(p="$")
_CHANGES_SQL = CHANGES_SQL.format(p="$")
_COUNT_SQL = COUNT_SQL.format(p="$")
# The operation's version and time zone, locked against change until the keep commits;
# NOWAIT: while a change to the operation or its points is under way, nothing is kept.
_KEEP_LOCK_SQL = "SELECT version, timezone FROM operations WHERE id = $1 FOR SHARE NOWAIT"
# A rendered record is kept only if its row is unchanged, with that version. Rows a change
# under way holds are skipped, not waited for: a keep never waits, so it never deadlocks.
_KEEP_SQL = """
UPDATE routing_points AS p
SET record_json = kept.record_json, kept_version = $2
FROM unnest($3::bigint[], $4::text[], $5::text[], $6::boolean[], $7::boolean[],
            $8::boolean[], $9::boolean[], $10::bigint[])
     AS kept(rp_id, record_json, rp_name, ivr_active, chat_active, interaction_active,
             crm_active, last_use_at)
WHERE p.operation_id = $1 AND p.rp_id = kept.rp_id AND p.kept_version IS NULL
  AND p.rp_name = kept.rp_name AND p.ivr_active = kept.ivr_active
  AND p.chat_active = kept.chat_active AND p.interaction_active = kept.interaction_active
  AND p.crm_active = kept.crm_active AND p.last_use_at IS NOT DISTINCT FROM kept.last_use_at
  AND (p.operation_id, p.rp_id) IN (
      SELECT operation_id, rp_id FROM routing_points
      WHERE operation_id = $1 AND rp_id = ANY($3::bigint[]) AND kept_version IS NULL
      FOR UPDATE SKIP LOCKED
  )
"""
T = TypeVar("T")

logger = logging.getLogger("routing_points.store")

_CHARGE_SQL = CHARGE_SQL.format(", ".join(f"${i}" for i in range(1, len(Charge._fields) + 1)))
# A batch of charges in one statement, one array per field: one (token, day) at most once.
_CHARGES_SQL = CHARGE_SQL.replace(
    "VALUES ({})",
    "SELECT * FROM unnest($1::integer[], $2::text[], $3::integer[], $4::integer[])",
)
_LOAD_SQL = "SELECT token_id, count FROM usage_counters WHERE operation_id = $1 AND day = $2"

# What a lost or refusing database looks like from asyncpg.
UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    # Out of connections, memory or disk (class 53): the database's, not the request's.
    asyncpg.InsufficientResourcesError,
    # Shut down or restarting under the server (class 57).
    asyncpg.OperatorInterventionError,
)


async def _keep_session(_connection: Any) -> None:
    """No reset when a connection returns to the pool: these sessions only ever run SELECTs
    and one upsert, and change no session state, so asyncpg's reset would be a round trip
    for nothing on every request. (The advisory-lock connection is only released at close.)"""


def asyncpg_dsn(database_url: str) -> str:
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class PostgresReader:
    def __init__(self, pool: Any, acquire_timeout_s: float) -> None:
        self.pool = pool
        self._acquire_timeout_s = acquire_timeout_s
        self._lock_connection: Any = None
        self.principals = PrincipalCache(self._principal)
        self._listener: ChangeListener | None = None
        self.outage = Outage("store (PostgreSQL)")
        self._charges: list[tuple[Charge, asyncio.Future[None]]] = []
        self._charging: asyncio.Future[None] | None = None

    @classmethod
    async def connect(
        cls, database_url: str, min_size: int, max_size: int, timeout_s: float
    ) -> PostgresReader:
        pool = await asyncpg.create_pool(
            asyncpg_dsn(database_url),
            min_size=min_size,
            max_size=max_size,
            timeout=timeout_s,
            command_timeout=timeout_s,
            reset=_keep_session,
        )
        reader = cls(pool, timeout_s)
        reader._listener = ChangeListener(asyncpg_dsn(database_url), reader.principals, timeout_s)
        reader._listener.start()
        return reader

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        async def fetch(connection: Any) -> list[Any]:
            return list(await connection.fetch(sql, *args))

        return await self._on_connection(fetch)

    async def _on_connection(self, work: Callable[[Any], Awaitable[T]]) -> T:
        """`work` on a pooled connection, within the deadline, failures as StoreUnavailable."""
        try:
            async with asyncio.timeout(self._acquire_timeout_s):
                async with self.pool.acquire() as connection:
                    result = await work(connection)
        except UNAVAILABLE as exc:
            cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self.outage.failed(cause)
            raise StoreUnavailable(cause) from exc
        self.outage.ended()
        return result

    async def principal(self, secret_hash: str) -> Principal | None:
        """The live token with this digest: from this worker's cache while PostgreSQL's
        change notifications reach it (store/principals.py), else from the database."""
        return await self.principals.get(secret_hash)

    def forget_principals(self) -> None:
        self.principals.invalidate()

    async def _principal(self, secret_hash: str) -> Principal | None:
        rows = await self._fetch(_PRINCIPAL_SQL, secret_hash)
        return Principal(*rows[0]) if rows else None

    async def page(
        self, operation_id: int, after: int, routing: int | None, limit: int
    ) -> StoredPage:
        routing_sql = "" if routing is None else "AND rp_id = $4"
        extra: tuple[int, ...] = () if routing is None else (routing,)

        async def read(connection: Any) -> StoredPage:
            # One snapshot for the joined records, whether more follow, and the stale rows.
            async with connection.transaction(isolation="repeatable_read", readonly=True):
                version, timezone = await connection.fetchrow(_VERSION_SQL, operation_id)
                count, fresh, last, joined = await connection.fetchrow(
                    _PAGE_SQL.format(routing=routing_sql), operation_id, after, limit, *extra
                )
                more = count == limit and bool(
                    await connection.fetchval(
                        _MORE_SQL.format(routing=routing_sql), operation_id, last, *extra
                    )
                )
                stale = (
                    [
                        tuple(row)
                        for row in await connection.fetch(
                            _STALE_SQL.format(routing=routing_sql),
                            operation_id,
                            after,
                            last,
                            *extra,
                        )
                    ]
                    if fresh < count
                    else []
                )
            return StoredPage(version, timezone, count, last, more, joined or b"", stale)

        return await self._on_connection(read)

    async def changes(self, operation_id: int, since_version: int, limit: int) -> Changes:
        async def read(connection: Any) -> Changes:
            async with connection.transaction(isolation="repeatable_read", readonly=True):
                version, timezone = await connection.fetchrow(_VERSION_SQL, operation_id)
                total = await connection.fetchval(_COUNT_SQL, operation_id)
                rows = await connection.fetch(_CHANGES_SQL, operation_id, since_version, limit + 1)
            points = sorted(((tuple(row[:-1]), row[-1]) for row in rows), key=by_rp_id)
            return Changes(version, timezone, total, points)

        return await self._on_connection(read)

    async def keep_records(
        self, operation_id: int, timezone: str, records: list[RenderedRecord]
    ) -> None:
        """One transaction for them all; whatever is not kept stays stale, to render again.

        Why the lock: a keep's version must be one no change of its rows can come after,
        or a server holding a later version of the page would never ask for the record.
        With the operation's row locked for share, no change can bump the version (or the
        time zone) before the keep commits; READ COMMITTED alone let a time-zone change
        land between the check and the write, keeping records on the old wall clock.
        """
        columns: list[list[Any]] = [[] for _ in range(8)]
        for row, record in records:
            for column, value in zip(columns, (row[0], record, *row[1:]), strict=True):
                column.append(value)

        async def keep(connection: Any) -> None:
            async with connection.transaction():
                locked = await connection.fetchrow(_KEEP_LOCK_SQL, operation_id)
                if locked is None or locked["timezone"] != timezone:
                    return  # gone, or rendered on the wall clock of a zone it left
                await connection.execute(_KEEP_SQL, operation_id, locked["version"], *columns)

        try:
            await self._on_connection(keep)
        except (StoreUnavailable, asyncpg.PostgresError) as exc:  # LockNotAvailable: busy
            logger.debug("rendered records not kept: %s", exc)

    async def load_counters(self, operation_id: int, day: str) -> list[tuple[int, int]]:
        return [(row[0], row[1]) for row in await self._fetch(_LOAD_SQL, operation_id, day)]

    async def charge(self, token_id: int, day: str, operation_id: int, cost: int) -> None:
        """Record a charge; return once it is committed.

        Group commit: the charges that arrive while one statement is under way are written
        by the next, in one round trip and one transaction, so under load a worker commits
        a batch per round trip, not a transaction per call. Each call still waits for its
        own commit before it is admitted.
        """
        committed = asyncio.get_running_loop().create_future()
        self._charges.append((Charge(token_id, day, operation_id, cost), committed))
        if self._charging is None:
            self._charging = asyncio.ensure_future(self._write_charges())
        await committed

    async def _write_charges(self) -> None:
        try:
            while self._charges:
                batch, self._charges = self._charges, []
                error = await self._write_batch([charge for charge, _ in batch])
                if error is not None and len(batch) > 1 and not isinstance(error, StoreUnavailable):
                    # One charge the database refuses (its token was just deleted) fails alone.
                    for charge, committed in batch:
                        settle(committed, await self._write_batch([charge]))
                    continue
                for _, committed in batch:
                    settle(committed, error)
        finally:
            self._charging = None

    async def _write_batch(self, charges: list[Charge]) -> Exception | None:
        totals: dict[tuple[int, str], list[int]] = {}
        for token_id, day, operation_id, cost in charges:
            total = totals.setdefault((token_id, day), [operation_id, 0])
            total[1] += cost
        try:
            if len(totals) == 1:
                (((token_id, day), (operation_id, cost)),) = totals.items()
                await self._fetch(_CHARGE_SQL, token_id, day, operation_id, cost)
            else:
                await self._fetch(
                    _CHARGES_SQL,
                    [token_id for token_id, _ in totals],
                    [day for _, day in totals],
                    [operation_id for operation_id, _ in totals.values()],
                    [cost for _, cost in totals.values()],
                )
        except Exception as exc:
            return exc
        return None

    async def hold_limits_lock(self, *, shared: bool) -> bool:
        """Claim the database for this server's way of keeping limits; False if refused.

        A server that keeps its limits in its own memory (no Redis) holds the lock alone;
        servers that share Redis hold it together (shared). So neither can start beside the
        other: two ways of counting one budget would overshoot it. A session advisory lock
        on a connection of its own lasts until the pool closes or the process dies, so a
        crashed server never leaves it behind.
        """
        function, _unlock = LIMITS_LOCK_FUNCTIONS[shared]
        try:
            self._lock_connection = await self.pool.acquire(timeout=self._acquire_timeout_s)
            held = await self._lock_connection.fetchval(f"SELECT {function}({LOCAL_LIMITS_LOCK})")
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return bool(held)

    async def ping(self) -> None:
        await self._fetch("SELECT 1")

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
        if self._lock_connection is not None:
            await self.pool.release(self._lock_connection)
            self._lock_connection = None
        await self.pool.close()
