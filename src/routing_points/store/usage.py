"""Usage events of routing points, and the report of them per local day.

Events are appended; a routing point's last_use only ever moves forward to the latest
event, so late or replayed events never move it back. The report counts events per day
of the operation's time zone in SQL: the range is cut where the zone's UTC offset changes,
and each piece is grouped by `(at + offset) / 86400`, exact across DST changes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, and_, bindparam, func, insert, or_, select, update

from routing_points.store.errors import Invalid
from routing_points.store.records import InvalidValue, instant, last_use, rp_id, shown
from routing_points.store.schema import routing_points, usage_events
from routing_points.store.tenants import bump_version, operation_row

CHANNELS = ("ivr", "chat", "interaction", "crm")
EVENT_FIELDS = ("rp_id", "channel", "at")
_CHUNK = 2_000
_EPOCH = date(1970, 1, 1)
# Every real-world UTC offset change falls on a quarter hour.
_STEP_S = 900


@dataclass(frozen=True, slots=True)
class EventsResult:
    recorded: int
    unknown_rp_ids: list[int]
    last_use_advanced: int


def _moment(value: Any, zone: ZoneInfo) -> int:
    """`at`: the operation's local "YYYY-MM-DD HH:MM:SS", ISO 8601 with an offset, or epoch s."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON's 410.0 is the integer 410, as for rp_id
    if isinstance(value, int) and not isinstance(value, bool):
        return instant("at", value)
    if isinstance(value, str) and ("T" in value or "+" in value or value.endswith("Z")):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise InvalidValue("at", f"{shown(value)} is not a date and time") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=zone)
        return instant("at", int(moment.timestamp()))
    try:
        moment_s = last_use(value, zone)
    except InvalidValue as exc:
        # The same format as last_use, but the field that is wrong is `at`.
        raise InvalidValue("at", str(exc).removeprefix("last_use: ")) from None
    if moment_s is None:
        raise InvalidValue("at", "is required")
    return moment_s


def parse_events(
    raw_events: Iterable[Any], zone: ZoneInfo, describe: str, first_index: int
) -> list[tuple[int, str, int]]:
    events = []
    for index, event in enumerate(raw_events, start=first_index):
        try:
            if not isinstance(event, dict):
                raise InvalidValue("event", "must be an object with rp_id, channel and at")
            unknown = sorted(set(event) - set(EVENT_FIELDS))
            if unknown:
                raise InvalidValue(unknown[0], "is not an event field")
            channel = event.get("channel")
            if channel not in CHANNELS:
                listed = ", ".join(CHANNELS)
                raise InvalidValue("channel", f"{shown(channel)} is not one of {listed}")
            events.append((rp_id(event.get("rp_id")), channel, _moment(event.get("at"), zone)))
        except InvalidValue as exc:
            raise Invalid(f"{describe} {index}: {exc}") from None
    return events


def record_events(
    engine: Engine,
    nomenclature: str,
    raw_events: Iterable[Any],
    *,
    describe: str = "event",
    first_index: int = 1,
) -> EventsResult:
    """Append the events of known routing points, all in one transaction; report the rest."""
    with engine.begin() as conn:
        operation = operation_row(conn, nomenclature, for_writing=True)
        events = parse_events(raw_events, ZoneInfo(operation.timezone), describe, first_index)
        wanted = sorted({event[0] for event in events})
        known: set[int] = set()
        for start in range(0, len(wanted), _CHUNK):
            known.update(
                conn.execute(
                    select(routing_points.c.rp_id).where(
                        and_(
                            routing_points.c.operation_id == operation.id,
                            routing_points.c.rp_id.in_(wanted[start : start + _CHUNK]),
                        )
                    )
                ).scalars()
            )
        kept = [event for event in events if event[0] in known]
        rows = [
            {"operation_id": operation.id, "rp_id": rp, "channel": channel, "at": at}
            for rp, channel, at in kept
        ]
        for start in range(0, len(rows), _CHUNK):
            conn.execute(insert(usage_events), rows[start : start + _CHUNK])
        latest: dict[int, int] = {}
        for rp, _, at in kept:
            latest[rp] = max(latest.get(rp, 0), at)
        advanced = 0
        if latest:
            forward = (
                update(routing_points)
                .where(routing_points.c.operation_id == operation.id)
                .where(routing_points.c.rp_id == bindparam("event_rp_id"))
                .where(
                    or_(
                        routing_points.c.last_use_at.is_(None),
                        routing_points.c.last_use_at < bindparam("event_at"),
                    )
                )
                .values(last_use_at=bindparam("event_at"))
            )
            params = [{"event_rp_id": rp, "event_at": at} for rp, at in latest.items()]
            advanced = conn.execute(forward, params).rowcount
            if advanced:
                bump_version(conn, operation.id)
    return EventsResult(len(rows), sorted(set(wanted) - known), advanced)


def _offset(zone: ZoneInfo, epoch: int) -> int:
    delta = datetime.fromtimestamp(epoch, UTC).astimezone(zone).utcoffset()
    return 0 if delta is None else int(delta.total_seconds())


def offset_segments(zone: ZoneInfo, start: int, end: int) -> list[tuple[int, int, int]]:
    """[(first second, last second, UTC offset)] covering start..end, one per offset."""
    segments = []
    segment_start, offset = start, _offset(zone, start)
    step = (start // _STEP_S + 1) * _STEP_S
    while step <= end:
        step_offset = _offset(zone, step)
        if step_offset != offset:
            segments.append((segment_start, step - 1, offset))
            segment_start, offset = step, step_offset
        step += _STEP_S
    segments.append((segment_start, end, offset))
    return segments


def usage_report(
    engine: Engine, nomenclature: str, start: int, end: int, routing: int | None
) -> list[dict[str, str]]:
    """Events per local day, routing point and channel, between two instants (inclusive)."""
    counts: defaultdict[tuple[int, int, str], int] = defaultdict(int)
    with engine.connect() as conn:
        operation = operation_row(conn, nomenclature)
        for first, last, offset in offset_segments(ZoneInfo(operation.timezone), start, end):
            local_day = ((usage_events.c.at + offset) // 86_400).label("local_day")
            query = (
                select(usage_events.c.rp_id, usage_events.c.channel, local_day, func.count())
                .where(usage_events.c.operation_id == operation.id)
                .where(usage_events.c.at.between(first, last))
                .group_by(usage_events.c.rp_id, usage_events.c.channel, local_day)
            )
            if routing is not None:
                query = query.where(usage_events.c.rp_id == routing)
            for rp, channel, day, count in conn.execute(query):
                counts[(int(day), int(rp), channel)] += int(count)
    return [
        {
            "day": (_EPOCH + timedelta(days=day)).isoformat(),
            "rp_id": str(rp),
            "channel": channel,
            "events": str(count),
        }
        for (day, rp, channel), count in sorted(counts.items())
    ]
