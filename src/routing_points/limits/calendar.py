"""The quota day: the operation's local calendar day, and when it ends.

Computing a local date costs a time-zone conversion; the answer only changes at local
midnight, so each zone's current day is kept with its bounds and reused until then.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class QuotaDay:
    day: str
    starts_at: float
    ends_at: float

    def seconds_left(self, now: float) -> int:
        """Whole seconds until local midnight, never less than 1."""
        return max(1, int(self.ends_at - now + 0.999))


def _midnight(day: date, zone: ZoneInfo) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()


def quota_day_at(now: float, zone: ZoneInfo) -> QuotaDay:
    today = datetime.fromtimestamp(now, zone).date()
    return QuotaDay(
        today.isoformat(),
        _midnight(today, zone),
        _midnight(today + timedelta(days=1), zone),
    )


class QuotaCalendar:
    def __init__(self) -> None:
        self._current: dict[str, QuotaDay] = {}

    def day(self, timezone: str, now: float) -> QuotaDay:
        cached = self._current.get(timezone)
        if cached is not None and cached.starts_at <= now < cached.ends_at:
            return cached
        fresh = self._current[timezone] = quota_day_at(now, ZoneInfo(timezone))
        return fresh
