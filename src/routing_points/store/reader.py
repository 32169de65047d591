"""What the request path needs from a store, whichever database is behind it.

Rows travel as plain tuples of raw columns; the server renders them as the contract's
strings, which in Python costs less than asking the database to.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

# Raw columns: converting in Python is cheaper than CAST and CASE in SQL.
PAGE_COLUMNS = (
    "rp_id, rp_name, ivr_active, chat_active, interaction_active, crm_active, last_use_at"
)

# (rp_id, rp_name, ivr, chat, interaction, crm, last_use_at): flags 0/1 (or bool),
# last_use_at epoch seconds or None.
PointRow = tuple[int, str, int, int, int, int, int | None]


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

    async def page(
        self, operation_id: int, after: int, routing: int | None, limit: int
    ) -> list[PointRow]:
        """Up to `limit` routing points with rp_id > after, in rp_id order."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...
