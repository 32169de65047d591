"""Local time rendering against zoneinfo, across DST transitions and odd offsets."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from routing_points.server.render import LocalTimes, success_body


@pytest.mark.parametrize(
    "zone_name",
    [
        "America/Bogota",
        "America/New_York",
        "Europe/Madrid",
        "Australia/Lord_Howe",
        "Asia/Kathmandu",
        "America/Santiago",
        "UTC",
    ],
)
def test_local_times_match_zoneinfo(zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    local_times = LocalTimes(zone)
    rng = random.Random(zone_name)
    start = int(datetime(2000, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(2035, 1, 1, tzinfo=UTC).timestamp())
    samples = [rng.randrange(start, end) for _ in range(5000)]
    # Every second around each 2026 transition of the zone, too.
    year_start = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
    previous = None
    for hour in range(0, 366 * 24):
        epoch = year_start + hour * 3600
        offset = datetime.fromtimestamp(epoch, zone).utcoffset()
        if previous is not None and offset != previous:
            samples.extend(range(epoch - 3600, epoch + 1, 7))
        previous = offset
    for epoch in samples:
        expected = datetime.fromtimestamp(epoch, zone).strftime("%Y-%m-%d %H:%M:%S")
        assert local_times(epoch) == expected, epoch


def test_never_used_is_empty() -> None:
    assert LocalTimes(ZoneInfo("UTC"))(None) == ""


def test_success_body_keeps_the_vendors_key_order() -> None:
    assert success_body("0 records were found", []) == (
        b'{"code":200,"error":null,"msg":"0 records were found","data":[]}'
    )
