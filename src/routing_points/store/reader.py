"""What the request path needs from a store, whichever database is behind it.

Rows travel as plain tuples of raw columns; the server renders them as the contract's
strings, which in Python costs less than asking the database to.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

# Raw columns: converting in Python is cheaper than CAST and CASE in SQL.
# (The stores' page queries read `record_json` instead: these render the stale ones.)
PAGE_COLUMNS = (
    "rp_id, rp_name, ivr_active, chat_active, interaction_active, crm_active, last_use_at"
)

# (rp_id, rp_name, ivr, chat, interaction, crm, last_use_at): flags 0/1 (or bool),
# last_use_at epoch seconds or None.
PointRow = tuple[int, str, int, int, int, int, int | None]


# Statements both stores run in a page's snapshot; `{p}` takes the driver's placeholder
# mark ("?" for sqlite3, "$" for asyncpg), and a page query's `{routing}` stays to fill.
VERSION_SQL = "SELECT version, timezone FROM operations WHERE id = {p}1"
COUNT_SQL = "SELECT count(*) FROM routing_points WHERE operation_id = {p}1"
# The rows of a page's stale records (the partial page is rp_id in (after, last]).
STALE_SQL = (
    f"SELECT {PAGE_COLUMNS} FROM routing_points\n"
    "WHERE operation_id = {p}1 AND kept_version IS NULL AND rp_id > {p}2 AND rp_id <= {p}3 "
    "{{routing}}\nORDER BY rp_id"
)
# The points stale or kept since a version: two index ranges, unsorted (sorted in Python:
# a handful of rows). With an OR, or an ORDER BY rp_id, the planner walks every point of
# the operation instead.
CHANGES_SQL = (
    f"SELECT {PAGE_COLUMNS}, record_json FROM routing_points\n"
    "WHERE operation_id = {p}1 AND kept_version IS NULL\n"
    "UNION ALL\n"
    f"SELECT {PAGE_COLUMNS}, record_json FROM routing_points\n"
    "WHERE operation_id = {p}1 AND kept_version >= {p}2\n"
    "LIMIT {p}3"
)


# A stale record in a page's joined JSON: STALE_MARK, its rp_id's digits, STALE_MARK.
# The byte can never occur in JSON text (a control character is always escaped there).
STALE_MARK = b"\x01"


class StoredPage(NamedTuple):
    """A page's records as the database keeps them: their JSON joined by commas in rp_id
    order, read in one snapshot, so the server copies bytes instead of building objects."""

    # The operation's version in that snapshot, and the time zone its records show.
    version: int
    timezone: str
    found: int
    # The rp_id of the last record, and whether more records follow it (the cap cut it).
    last_rp_id: int | None
    more: bool
    # b'{"rp_id":"1",...},{...}'; a stale record stands in as its STALE_MARK'd rp_id.
    joined: bytes
    # The rows of the stale records, in rp_id order: the server renders them.
    stale: list[PointRow]


class Changes(NamedTuple):
    """What changed in an operation's points since a version, read in one snapshot."""

    version: int
    timezone: str
    total: int  # the operation's points now
    # The points stale or kept since that version (at most the limit asked, plus one), in
    # rp_id order, with their kept JSON (None: stale).
    points: list[tuple[PointRow, str | None]]


def by_rp_id(point: tuple[PointRow, str | None]) -> int:
    return point[0][0]


# A record rendered from its row, to keep: (row, JSON). Kept only while the row and the
# operation's time zone still are what it was rendered from.
RenderedRecord = tuple[PointRow, str]


class StoreUnavailable(Exception):
    """The database cannot be reached or did not answer; the request gets a 503."""


class Principal(NamedTuple):
    """A live token, with what admission and rendering need of its operation."""

    token_id: int
    operation_id: int
    description: str
    daily_limit: int | None
    scope: str
    nomenclature: str
    licenses: int
    timezone: str
    version: int
    etag_salt: str
    # Epoch seconds past which the token is refused, and the operation's allowed networks.
    expires_at: int | None = None
    ip_allowlist: str = ""
    # Set when the secret is the previous one of a rotation: refused from this instant.
    valid_until: int | None = None


# Where each field of a Principal comes from (tokens t JOIN operations o), by name: the
# SELECT list is built from Principal's fields, so its order cannot drift from theirs.
# `valid_until` depends on which secret matched: PRINCIPAL_VALID_UNTIL, selected last.
_PRINCIPAL_SOURCES = {
    "token_id": "t.id",
    "operation_id": "t.operation_id",
    "description": "t.description",
    "daily_limit": "t.daily_limit",
    "scope": "t.scope",
    "nomenclature": "o.nomenclature",
    "licenses": "o.licenses",
    "timezone": "o.timezone",
    "version": "o.version",
    "etag_salt": "o.etag_salt",
    "expires_at": "t.expires_at",
    "ip_allowlist": "o.ip_allowlist",
}
assert Principal._fields == (*_PRINCIPAL_SOURCES, "valid_until")
PRINCIPAL_COLUMNS = ", ".join(_PRINCIPAL_SOURCES.values())
# Matches the current secret, or the previous one of a rotation (with its deadline).
PRINCIPAL_WHERE = "(t.secret_hash = {0} OR t.previous_secret_hash = {0}) AND t.revoked_at IS NULL"
PRINCIPAL_VALID_UNTIL = "CASE WHEN t.secret_hash = {0} THEN NULL ELSE t.previous_valid_until END"


class Charge(NamedTuple):
    """One call's charge to a token's counter for its operation's local day."""

    token_id: int
    day: str
    operation_id: int
    cost: int


# The column of each field of a Charge ("count" would shadow tuple.count).
_CHARGE_COLUMNS = {
    "token_id": "token_id",
    "day": "day",
    "operation_id": "operation_id",
    "cost": "count",
}
# The upsert of one charge, its columns in Charge's order; `{}` takes the placeholders.
CHARGE_SQL = (
    f"INSERT INTO usage_counters ({', '.join(_CHARGE_COLUMNS[name] for name in Charge._fields)}) "
    "VALUES ({}) ON CONFLICT (token_id, day) "
    "DO UPDATE SET count = usage_counters.count + excluded.count"
)


class Reader(Protocol):
    async def principal(self, secret_hash: str) -> Principal | None:
        """The live (not revoked) token with this secret digest, if any."""
        ...

    def forget_principals(self) -> None:
        """This process has just committed a change: look tokens up again from the next
        request, not from when the store notices (PostgreSQL's notification, SQLite's
        data_version check), so a client reads its own write at once."""
        ...

    async def page(
        self, operation_id: int, after: int, routing: int | None, limit: int
    ) -> StoredPage:
        """Up to `limit` routing points with rp_id > after, in rp_id order."""
        ...

    async def changes(self, operation_id: int, since_version: int, limit: int) -> Changes:
        """The points whose record is stale, or was kept at `since_version` or later."""
        ...

    async def keep_records(
        self, operation_id: int, timezone: str, records: list[RenderedRecord]
    ) -> None:
        """Store rendered records whose rows and time zone are unchanged; never raises (a
        record not kept is rendered again next time)."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...
