"""A big page re-rendered from cached records is byte for byte the page rendered anew."""

from __future__ import annotations

import tracemalloc
from zoneinfo import ZoneInfo

import orjson

from routing_points.server.record_cache import RecordCache
from routing_points.server.render import (
    LocalTimes,
    encoded_success_body,
    point_records,
    success_body,
)
from routing_points.store.reader import PointRow


def rows(count: int) -> list[PointRow]:
    return [
        (
            rp_id,
            f"Point {rp_id}",
            rp_id % 2,
            0,
            1,
            rp_id % 3 % 2,
            None if rp_id % 7 else 1_780_000_000 + rp_id,
        )
        for rp_id in range(1, count + 1)
    ]


def fresh(rows: list[PointRow], zone: str) -> bytes:
    return orjson.dumps(point_records(rows, LocalTimes(ZoneInfo(zone))))


def test_cached_records_give_the_same_bytes_and_follow_every_change() -> None:
    cache = RecordCache()
    times = LocalTimes(ZoneInfo("America/Bogota"))
    before = rows(500)
    encoded = cache.records(1, "America/Bogota")
    assert cache.data(before, encoded, times) == fresh(before, "America/Bogota")
    unchanged, renamed = encoded[1][1], encoded[11][1]
    after = list(before)
    after[10] = (11, "Renamed", 1, 1, 1, 1, 1_790_000_000)  # every column changed
    after[20] = (*after[20][:6], 1_790_000_123)  # only last_use
    del after[30]  # a deleted point
    after.append((9999, 'Quotes " and \\ and ñ', 0, 0, 0, 0, None))  # a new one
    again = cache.data(after, encoded, times)
    assert again == fresh(after, "America/Bogota")
    assert b'"Renamed"' in again
    assert b'"Point 11"' not in again
    # What did not change was reused, not encoded again; what changed was.
    assert encoded[1][1] is unchanged
    assert encoded[11][1] is not renamed


def test_each_time_zone_has_its_own_records() -> None:
    cache = RecordCache()
    page = rows(100)
    for zone in ("America/Bogota", "Asia/Kathmandu"):
        encoded = cache.records(1, zone)
        assert cache.data(page, encoded, LocalTimes(ZoneInfo(zone))) == fresh(page, zone)
    assert fresh(page, "America/Bogota") != fresh(page, "Asia/Kathmandu")


def test_the_cache_keeps_at_most_its_bound_of_records() -> None:
    cache = RecordCache(max_records=250)
    times = LocalTimes(ZoneInfo("UTC"))
    for operation in range(1, 6):
        cache.data(rows(100), cache.records(operation, "UTC"), times)
    kept = [len(cache.records(operation, "UTC")) for operation in range(1, 6)]
    # The two most recent operations stayed; the older ones were evicted (now empty).
    assert kept[3:] == [100, 100]
    assert sum(kept) <= 250
    # One operation over the bound alone is not kept either, and still renders right.
    small = RecordCache(max_records=50)
    encoded = small.records(1, "UTC")
    assert small.data(rows(100), encoded, times) == fresh(rows(100), "UTC")
    assert len(encoded) == 0


def test_a_cached_record_takes_its_size_not_a_buffer() -> None:
    """orjson's result keeps its 4 KB work buffer: 60,000 of them kept took 250 MB."""
    cache = RecordCache()
    encoded = cache.records(1, "UTC")
    page = rows(1_000)
    times = LocalTimes(ZoneInfo("UTC"))
    tracemalloc.start()
    try:
        cache.data(page, encoded, times)
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 1_000 * 600, f"{held} bytes for 1,000 records of about 160 bytes"


def test_a_page_built_from_encoded_records_is_the_envelope_byte_for_byte() -> None:
    data = point_records(rows(50), LocalTimes(ZoneInfo("UTC")))
    msg = 'msg with "quotes" and ñ'
    assert encoded_success_body(msg, orjson.dumps(data)) == success_body(msg, data)
