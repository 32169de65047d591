"""What the console's pages show, read from the store in one place (sync, run in a thread).

The same store on SQLite and PostgreSQL: calls per token and day come from the usage
counters (written through by the embedded limits, copied from Redis otherwise), refusals
from the refusal counters, events from the usage events.
"""

from __future__ import annotations

import csv
import io
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select

from routing_points.limits.calendar import quota_day_at
from routing_points.server.render import stored_records
from routing_points.store import importer
from routing_points.store import points as point_store
from routing_points.store.errors import Invalid
from routing_points.store.refusals import refusals_on
from routing_points.store.schema import tokens, usage_counters
from routing_points.store.tenants import Operation, operation_row

HISTORY_DAYS = 31
FIELDS = ("rp_id", "rp_name", "ivr_active", "chat_active", "interaction_active", "crm_active")
FLAGS = ("ivr_active", "chat_active", "interaction_active", "crm_active")


@dataclass(frozen=True, slots=True)
class Overview:
    operation: Operation
    today: str
    budget: int
    used: int
    seconds_to_reset: int
    days: list[str]
    per_token: dict[str, list[int]]
    refusals: dict[str, int]


def day_list(last: date, count: int) -> list[str]:
    return [(last - timedelta(days=count - 1 - i)).isoformat() for i in range(count)]


def overview(engine: Engine, nomenclature: str, calls_per_license: int) -> Overview:
    now = time.time()
    with engine.connect() as conn:
        operation = operation_row(conn, nomenclature)
        quota_day = quota_day_at(now, ZoneInfo(operation.timezone))
        days = day_list(date.fromisoformat(quota_day.day), HISTORY_DAYS)
        rows = conn.execute(
            select(
                usage_counters.c.token_id,
                tokens.c.description,
                usage_counters.c.day,
                usage_counters.c.count,
            )
            .select_from(usage_counters.join(tokens, tokens.c.id == usage_counters.c.token_id))
            .where(usage_counters.c.operation_id == operation.id)
            .where(usage_counters.c.day >= days[0])
            .order_by(usage_counters.c.token_id)
        ).all()
    index = {day: i for i, day in enumerate(days)}
    per_token: dict[str, list[int]] = {}
    used = 0
    for token_id, description, day, count in rows:
        name = f"#{token_id} {description}".strip()
        series = per_token.setdefault(name, [0] * len(days))
        if day in index:
            series[index[day]] += int(count)
        if day == quota_day.day:
            used += int(count)
    return Overview(
        operation,
        quota_day.day,
        operation.licenses * calls_per_license,
        used,
        quota_day.seconds_left(now),
        days,
        per_token,
        refusals_on(engine, operation.id, quota_day.day),
    )


def duration(seconds: int) -> str:
    hours, rest = divmod(max(0, seconds), 3600)
    return f"{hours} h {rest // 60:02d} min"


def local_time(epoch: int | None, zone: str) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")


# -- routing points ----------------------------------------------------------------------


def points(
    engine: Engine, nomenclature: str, search: str, flags: dict[str, str]
) -> tuple[Operation, list[dict[str, str]]]:
    operation, rows = point_store.list_points(engine, nomenclature)
    found = stored_records(operation.timezone, rows)
    needle = search.strip().lower()
    chosen = []
    for record in found:
        # A name holding the text, or an rp_id starting with it ("10" finds 101 to 109).
        if (
            needle
            and needle not in record["rp_name"].lower()
            and not record["rp_id"].startswith(needle)
        ):
            continue
        if any(flags.get(flag) in ("yes", "no") and record[flag] != flags[flag] for flag in FLAGS):
            continue
        chosen.append(record)
    return operation, chosen


def point(engine: Engine, nomenclature: str, rp_id: int) -> dict[str, str]:
    """One routing point by its id, exactly (never a search: id 7 is not "Point 107")."""
    operation, row = point_store.get_point(engine, nomenclature, rp_id)
    return stored_records(operation.timezone, [row])[0]


def points_csv(engine: Engine, nomenclature: str) -> str:
    operation, rows = point_store.list_points(engine, nomenclature)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[*FIELDS, "last_use"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(stored_records(operation.timezone, rows))
    return out.getvalue()


def import_upload(
    engine: Engine, nomenclature: str, raw: bytes, name: str, max_records: int
) -> tuple[point_store.UpsertResult | None, list[str]]:
    """Check every record, then write them all, or nothing: (what was imported, problems
    by place), as `points import` checks a CSV or JSON file; records already as stored are
    not written. An upload, like the admin API's, holds at most `max_records` (L4)."""
    try:
        found = importer.read_upload(raw, name)
    except Invalid as exc:
        return None, [str(exc)]
    count = len(found.places) + len(found.problems)
    if count > max_records:
        return None, [
            f"{name}: {count:,} records: an upload takes at most {max_records:,} (split the "
            "file, or import it with routing-points points import)"
        ]
    check = importer.check_import(engine, nomenclature, found)
    if check.problems:
        return None, check.problems
    try:
        result = point_store.upsert_points(engine, nomenclature, found.records, describe="record")
    except Invalid as exc:
        return None, [str(exc)]
    return result, []


# -- usage report ------------------------------------------------------------------------


def report_range(start_text: str, end_text: str, today: date, max_days: int) -> tuple[date, date]:
    try:
        end = date.fromisoformat(end_text) if end_text else today
        start = date.fromisoformat(start_text) if start_text else end - timedelta(days=6)
    except ValueError:
        raise Invalid("dates: use the form YYYY-MM-DD") from None
    if not (start.year >= 1970 and end.year <= 9997):
        raise Invalid("dates: use days between 1970 and 9997")
    if start > end:
        raise Invalid("dates: the first day is after the last")
    if (end - start).days + 1 > max_days:
        raise Invalid(f"dates: a report covers at most {max_days} days")
    return start, end


def usage_table(rows: list[dict[str, str]], days: list[str]) -> dict[str, list[int]]:
    """Events per channel and day, for the chart."""
    per_channel: dict[str, list[int]] = defaultdict(lambda: [0] * len(days))
    index = {day: i for i, day in enumerate(days)}
    for row in rows:
        if row["day"] in index:
            per_channel[row["channel"]][index[row["day"]]] += int(row["events"])
    return dict(sorted(per_channel.items()))


def usage_csv(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(
        out, fieldnames=["day", "rp_id", "channel", "events"], lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
