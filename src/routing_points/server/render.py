"""Turning store rows into the contract's JSON bytes.

The envelope is one `orjson.dumps` (`errors.envelope_body`, the only place it is built),
and local times are formatted without a datetime per row: a zone's UTC offset is cached
per quarter hour (every real-world transition falls on one), each day's date is formatted
once, and each second of a day's "HH:MM:SS" is looked up.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from routing_points.server.errors import encoded_envelope_body, envelope_body
from routing_points.store.points import contract_row
from routing_points.store.reader import PointRow

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_BUCKET_S = 900


@functools.cache
def _clock_faces() -> list[str]:
    """ "HH:MM:SS" for every second of a day: built once, on the first render."""
    return [f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)]


class LocalTimes:
    """Epoch seconds -> "YYYY-MM-DD HH:MM:SS" on the wall clock of one zone."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self._offsets: dict[int, int] = {}
        self._dates: dict[int, str] = {}
        self._faces = _clock_faces()

    def _offset(self, epoch: int) -> int:
        bucket = epoch // _BUCKET_S
        first = self._exact_offset(bucket * _BUCKET_S)
        last = self._exact_offset(bucket * _BUCKET_S + _BUCKET_S - 1)
        if first == last:
            self._offsets[bucket] = first
            return first
        return self._exact_offset(epoch)  # a transition inside this quarter hour

    def _exact_offset(self, epoch: int) -> int:
        delta = datetime.fromtimestamp(epoch, UTC).astimezone(self.zone).utcoffset()
        return 0 if delta is None else int(delta.total_seconds())

    def __call__(self, epoch: int | None) -> str:
        if epoch is None:
            return ""
        offset = self._offsets.get(epoch // _BUCKET_S)
        if offset is None:
            offset = self._offset(epoch)
        day, second = divmod(epoch + offset, 86_400)
        prefix = self._dates.get(day)
        if prefix is None:
            prefix = self._dates[day] = date.fromordinal(day + _EPOCH_ORDINAL).isoformat() + " "
        return prefix + self._faces[second]


_YES_NO = ("no", "yes")


def record_of(row: PointRow, local_time: LocalTimes) -> dict[str, str]:
    """One routing point as the contract's record: every value a string, in its order."""
    yes_no = _YES_NO
    return {
        "rp_id": str(row[0]),
        "rp_name": row[1],
        "ivr_active": yes_no[row[2]],
        "chat_active": yes_no[row[3]],
        "interaction_active": yes_no[row[4]],
        "crm_active": yes_no[row[5]],
        "last_use": local_time(row[6]),
    }


def point_records(rows: list[PointRow], local_time: LocalTimes) -> list[dict[str, str]]:
    return [record_of(row, local_time) for row in rows]


def stored_records(timezone: str, rows: Iterable[Any]) -> list[dict[str, str]]:
    """Rows read from the routing points table as the contract's records, on the wall clock
    of their operation's zone (the console, the CLI and the admin API show them so)."""
    return point_records([contract_row(row) for row in rows], LocalTimes(ZoneInfo(timezone)))


def success_body(msg: str, data: Any) -> bytes:
    """The contract's success envelope, in the vendor's key order."""
    return envelope_body(200, None, msg, data)


def records_body(msg: str, joined_records: Sequence[bytes | memoryview]) -> bytes:
    """The success envelope around records encoded already and joined by commas (given in
    pieces: the body is copied once)."""
    return encoded_envelope_body(200, None, msg, b"[", *joined_records, b"]")
