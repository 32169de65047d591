"""The embedded store's statements, in SQLite's dialect, built from the contract's
column lists in store/reader.py: no value is ever formatted into SQL."""

from __future__ import annotations

from routing_points.store import reader

PRINCIPAL_SQL = f"""
SELECT {reader.PRINCIPAL_COLUMNS}, {reader.PRINCIPAL_VALID_UNTIL.format("?1")}
FROM tokens t JOIN operations o ON o.id = t.operation_id
WHERE {reader.PRINCIPAL_WHERE.format("?1")}
"""

# Where the cap cuts the page: the first rp_id past it, from the index alone.
NEXT_SQL = """
SELECT rp_id FROM routing_points
WHERE operation_id = ?1 AND rp_id > ?2 {routing}
ORDER BY rp_id LIMIT 1 OFFSET ?3
"""
# A page in one row: its records' JSON joined by SQLite, a stale one as its marked rp_id.
# An aggregate over the primary key's range visits it in rp_id order, so group_concat
# joins in that order (tests/test_stored_records.py writes points out of order to check):
# this flat form costs 40% less than an ORDERed, LIMITed subquery. CAST hands back bytes.
PAGE_SQL = """
SELECT count(*), count(record_json), max(rp_id),
       CAST(group_concat(coalesce(record_json, char(1) || rp_id || char(1)), ',') AS BLOB)
FROM routing_points
WHERE operation_id = ?1 AND rp_id > ?2 {routing} {before}
"""
BEFORE = "AND rp_id < ?3"
STALE_SQL = reader.STALE_SQL.format(p="?")
ROUTING = "AND rp_id = ?4"
NO_ROUTING = "AND ?4 IS NULL"
VERSION_SQL = reader.VERSION_SQL.format(p="?")
CHANGES_SQL = reader.CHANGES_SQL.format(p="?")
COUNT_SQL = reader.COUNT_SQL.format(p="?")
# A rendered record is kept only if its row and its operation's time zone are unchanged.
KEEP_SQL = """
UPDATE routing_points
SET record_json = ?1, kept_version = (SELECT version FROM operations WHERE id = ?2)
WHERE operation_id = ?2 AND rp_id = ?3 AND rp_name = ?4 AND ivr_active = ?5
  AND chat_active = ?6 AND interaction_active = ?7 AND crm_active = ?8
  AND last_use_at IS ?9 AND kept_version IS NULL
  AND (SELECT timezone FROM operations WHERE id = ?2) = ?10
"""


CHARGE_SQL = reader.CHARGE_SQL.format(", ".join("?" * len(reader.Charge._fields)))
LOAD_SQL = "SELECT token_id, count FROM usage_counters WHERE operation_id = ? AND day = ?"
# A write that changes nothing: what a readiness probe commits.
PROBE_SQL = "UPDATE meta SET value = value WHERE key = ?"
