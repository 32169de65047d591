"""Pages joined from the records' stored JSON are byte for byte the records rendered anew,
whatever wrote the change, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import random
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
import psycopg
import pytest
from sqlalchemy import Engine, text

from routing_points.contract import records_found
from routing_points.server.joined_pages import MAX_MOVES, JoinedPage
from routing_points.server.pages import Page, PageRenderer
from routing_points.server.render import LocalTimes, point_records, success_body
from routing_points.server.stored_records import StaleMismatch, fill_stale, rendered_record
from routing_points.store import access, replace, usage
from routing_points.store import points as point_store
from routing_points.store.factory import Store, open_store
from routing_points.store.reader import Principal, Reader, StoredPage
from tests.support.seed import add_tenant, point, stale_records
from tests.support.servers import LiveServer, make_settings
from tests.support.wire import ENDPOINT

pytestmark = pytest.mark.anyio
STORES = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
ZONE = "America/Bogota"
# Names JSON must escape, and one whose escape holds the stale mark's byte (\u0001).
AWKWARD = ['quotes " and \\ backslash', "ñandú 🦤 中文", "tab\tnew\nline", "mark \x01 inside"]


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = await open_store(make_settings(database_url))
    yield opened
    await opened.close()


def principal(engine: Engine, server: str = "0032") -> Principal:
    """What a token's lookup gives the renderer: the operation's id and its time zone now."""
    with engine.connect() as conn:
        operation_id, timezone = conn.execute(
            text("SELECT id, timezone FROM operations WHERE nomenclature = :n"), {"n": server}
        ).one()
    return Principal(1, operation_id, "", None, "", server, 1, timezone, 1, "salt")


def expected(engine: Engine, server: str = "0032") -> bytes:
    """The page as the server rendered it before records were stored: every row anew."""
    operation, rows = point_store.list_points(engine, server)
    records = point_records(
        [point_store.contract_row(row) for row in rows], LocalTimes(ZoneInfo(operation.timezone))
    )
    return success_body(records_found(len(records)), records)


async def settled(renderer: PageRenderer) -> None:
    """Until what a render does after its answer is done: records kept, layout found."""
    while renderer._background:
        await asyncio.gather(*renderer._background)


async def render(store: Store, engine: Engine, cap: int = 60_000, **query: int) -> Page:
    renderer = PageRenderer(store.reader, cap, 256 * 1024 * 1024)
    page = await renderer.render(principal(engine), query.get("routing"), query.get("after", 0))
    await settled(renderer)
    return page


@STORES
async def test_a_page_is_the_records_rendered_anew_and_keeps_them(
    store: Store, engine: Engine
) -> None:
    ids = list(range(1, 401))
    random.Random(7).shuffle(ids)  # written out of order: the page is in rp_id order
    points = [point(rp_id, AWKWARD[rp_id % len(AWKWARD)]) for rp_id in ids]
    for rp_id, record in zip(ids, points, strict=True):
        if rp_id % 3:
            record["last_use"] = f"2026-03-{1 + rp_id % 28:02d} 0{rp_id % 10}:15:00"
    add_tenant(engine, "0032", points, timezone=ZONE)
    assert stale_records(engine) == 400

    first = await render(store, engine)
    assert first.body == expected(engine)
    assert orjson.loads(first.body)["data"][0]["rp_id"] == "1"
    assert stale_records(engine) == 0  # rendered once, kept
    # Now joined by the database alone: the very same bytes.
    assert (await render(store, engine)).body == first.body


@STORES
async def test_every_kind_of_write_makes_its_records_stale(store: Store, engine: Engine) -> None:
    add_tenant(engine, "0032", [point(rp_id) for rp_id in range(1, 51)], timezone=ZONE)
    await render(store, engine)
    writes = {
        "upsert": lambda: point_store.upsert_points(engine, "0032", [point(3, "Upserted")]),
        "set": lambda: point_store.set_point(engine, "0032", 4, {"crm_active": "yes"}),
        "create": lambda: point_store.create_point(engine, "0032", point(999, "Created")),
        "delete": lambda: point_store.delete_point(engine, "0032", 5),
        "replace": lambda: replace.replace_points(
            engine, "0032", [point(rp_id, f"Replaced {rp_id}") for rp_id in range(1, 40)]
        ),
        "usage event": lambda: usage.record_events(
            engine, "0032", [{"rp_id": "7", "channel": "ivr", "at": "2026-05-01 08:00:00"}]
        ),
        "time zone": lambda: access.set_operation(engine, "0032", timezone="Asia/Kathmandu"),
        "hand-written SQL": lambda: _sql(engine, "UPDATE routing_points SET rp_name = 'SQL'"),
    }
    for what, write in writes.items():
        write()
        assert stale_records(engine) > 0 or what == "delete", what
        assert (await render(store, engine)).body == expected(engine), what
        assert stale_records(engine) == 0, what


@STORES
async def test_an_unchanged_upsert_keeps_its_records(store: Store, engine: Engine) -> None:
    """A mirror re-sends every point on each sync: those that did not change stay kept."""
    points = [point(rp_id) for rp_id in range(1, 21)]
    add_tenant(engine, "0032", points, timezone=ZONE)
    await render(store, engine)
    point_store.upsert_points(engine, "0032", points)
    assert stale_records(engine) == 0


@STORES
async def test_a_record_rendered_before_a_change_is_not_kept(store: Store, engine: Engine) -> None:
    """The render and its keeping are apart: a change in between must win."""
    add_tenant(engine, "0032", [point(1, "Before")], timezone=ZONE)
    who = principal(engine)
    stored = await store.reader.page(who.operation_id, 0, None, 10)
    _joined, rendered = fill_stale(stored, LocalTimes(ZoneInfo(ZONE)))
    point_store.set_point(engine, "0032", 1, {"rp_name": "After"})
    await store.reader.keep_records(who.operation_id, ZONE, rendered)
    assert stale_records(engine) == 1
    # Nor one rendered on the wall clock of a zone the operation left meanwhile.
    stored = await store.reader.page(who.operation_id, 0, None, 10)
    _joined, rendered = fill_stale(stored, LocalTimes(ZoneInfo(ZONE)))
    access.set_operation(engine, "0032", timezone="UTC")
    await store.reader.keep_records(who.operation_id, ZONE, rendered)
    assert stale_records(engine) == 1
    assert b'"After"' in (await render(store, engine)).body


@STORES
async def test_the_cap_after_and_routing_cut_the_stored_page(store: Store, engine: Engine) -> None:
    add_tenant(engine, "0032", [point(rp_id) for rp_id in range(1, 26)], timezone=ZONE)
    await render(store, engine)
    point_store.set_point(engine, "0032", 12, {"rp_name": "Stale in the middle"})
    page = await render(store, engine, cap=10, after=5)
    records = orjson.loads(page.body)["data"]
    assert [record["rp_id"] for record in records] == [str(rp_id) for rp_id in range(6, 16)]
    assert records[6]["rp_name"] == "Stale in the middle"
    assert (page.count, page.next_after) == (10, 15)
    last = await render(store, engine, cap=10, after=20)
    assert (last.count, last.next_after) == (5, None)  # exactly the rest: nothing follows
    exact = await render(store, engine, cap=5, after=20)
    assert (exact.count, exact.next_after) == (5, None)
    one = await render(store, engine, cap=10, routing=12)
    assert [record["rp_name"] for record in orjson.loads(one.body)["data"]] == [
        "Stale in the middle"
    ]
    none = await render(store, engine, cap=10, after=25)
    assert orjson.loads(none.body)["data"] == []
    assert none.count == 0


def _sql(engine: Engine, statement: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(statement))


def test_rendered_records_take_their_size_not_a_buffer() -> None:
    """orjson's result keeps its 4 KB work buffer: 60,000 of them held took 250 MB."""
    rows = [(rp_id, f"Point {rp_id}", 1, 0, 1, 0, None) for rp_id in range(1, 1_001)]
    joined = b",".join(b"\x01%d\x01" % row[0] for row in rows)
    stale = StoredPage(1, "UTC", len(rows), 1_000, False, joined, rows)
    tracemalloc.start()
    try:
        filled, rendered = fill_stale(stale, LocalTimes(ZoneInfo("UTC")))
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert b"".join(filled) == orjson.dumps(point_records(rows, LocalTimes(ZoneInfo("UTC"))))[1:-1]
    assert len(rendered) == 1_000
    assert held < 1_000 * 1_000, f"{held} bytes for 1,000 records of about 160 bytes"


def test_marks_and_stale_rows_that_disagree_are_a_bug_not_a_wrong_page() -> None:
    row = (5, "Point 5", 1, 0, 1, 0, None)
    times = LocalTimes(ZoneInfo("UTC"))
    for joined, stale in [
        (b'{"a":1},\x016\x01', [row]),  # the mark of another point
        (b'{"a":1},\x015\x01,\x017\x01', [row]),  # a mark without its row
        (b'{"a":1}', [row]),  # a row without its mark
    ]:
        with pytest.raises(StaleMismatch):
            fill_stale(StoredPage(1, "UTC", 2, 7, False, joined, stale), times)


class CountingReader:
    """The store's reader, counting whole-page reads (the splice avoids them)."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.whole_reads = 0

    async def page(self, *args: Any) -> StoredPage:
        self.whole_reads += 1
        return await self.reader.page(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.reader, name)


BIG = 2_500  # over the size from which a whole page's layout is kept


async def primed(store: Store, engine: Engine) -> tuple[PageRenderer, CountingReader]:
    """A renderer holding the page's layout, its records kept (a first render keeps them
    all, so the next one after a change reads the page whole once more)."""
    add_tenant(engine, "0032", [point(rp_id) for rp_id in range(1, BIG + 1)], timezone=ZONE)
    reader = CountingReader(store.reader)
    renderer = PageRenderer(reader, 60_000, 256 * 1024 * 1024)  # type: ignore[arg-type]
    for name in ("first", "second"):
        point_store.set_point(engine, "0032", 1, {"rp_name": name})
        await renderer.render(principal(engine), None, 0)
        await settled(renderer)
    assert stale_records(engine) == 0
    return renderer, reader


@STORES
async def test_a_changed_page_is_spliced_and_the_same_bytes(store: Store, engine: Engine) -> None:
    renderer, reader = await primed(store, engine)
    in_place = {
        "upsert": lambda: point_store.upsert_points(engine, "0032", [point(3, 'Up "serted"')]),
        "set": lambda: point_store.set_point(engine, "0032", BIG, {"crm_active": "yes"}),
        "usage event": lambda: usage.record_events(
            engine, "0032", [{"rp_id": "7", "channel": "ivr", "at": "2026-05-01 08:00:00"}]
        ),
        "two at once": lambda: point_store.upsert_points(
            engine, "0032", [point(1, "ñ 🦤"), point(2, "x" * 255)]
        ),
        "nothing": lambda: None,
    }
    # A point that comes or goes, or a new time zone, is read whole, and right.
    elsewhere = {
        "create": lambda: point_store.create_point(engine, "0032", point(BIG + 1, "New")),
        "delete": lambda: point_store.delete_point(engine, "0032", 5),
        "replace": lambda: replace.replace_points(
            engine, "0032", [point(rp_id) for rp_id in range(2, BIG + 2)]
        ),
        "time zone": lambda: access.set_operation(engine, "0032", timezone="Asia/Kathmandu"),
    }
    for writes, whole_reads in ((in_place, 0), (elsewhere, 1)):
        for what, write in writes.items():
            write()
            before = reader.whole_reads
            page = await renderer.render(principal(engine), None, 0)
            await settled(renderer)
            assert page.body == expected(engine), what
            assert reader.whole_reads == before + whole_reads, what


@STORES
async def test_a_change_another_worker_kept_is_spliced_in_too(store: Store, engine: Engine) -> None:
    """Worker A holds a page; worker B renders after a change and keeps its record, so it
    is no longer stale: A must still find it (kept since A's version)."""
    worker_a, _ = await primed(store, engine)
    worker_b = PageRenderer(store.reader, 60_000, 256 * 1024 * 1024)
    point_store.set_point(engine, "0032", 10, {"rp_name": "Seen by B"})
    await worker_b.render(principal(engine), None, 0)
    await settled(worker_b)
    assert stale_records(engine) == 0
    page = await worker_a.render(principal(engine), None, 0)
    await settled(worker_a)
    assert page.body == expected(engine)
    assert b'"Seen by B"' in page.body
    # Even a change that bumps no version (hand-written SQL), kept by B at the very
    # version A now holds.
    _sql(engine, "UPDATE routing_points SET rp_name = 'By hand' WHERE rp_id = 11")
    await worker_b.render(principal(engine), 11, 0)
    await settled(worker_b)
    assert stale_records(engine) == 0
    point_store.set_point(engine, "0032", 12, {"rp_name": "Stale for A"})
    page = await worker_a.render(principal(engine), None, 0)
    assert page.body == expected(engine)
    assert b'"By hand"' in page.body


def test_a_spliced_layout_is_the_layout_found_anew() -> None:
    """Many splices in a row (sizes up and down, past the moves settled in one pass) leave
    every record where a fresh look at the body finds it; a name holding the very text a
    record starts with does not mislead it (its quotes are escaped)."""
    times = LocalTimes(ZoneInfo("UTC"))
    rows = [(rp_id, f"Point {rp_id}", 1, 0, 1, 0, None) for rp_id in range(1, 301)]
    body = success_body(records_found(300), point_records(rows, times))
    page = JoinedPage.of(1, "UTC", body)
    chosen = random.Random(11)
    for version in range(2, 120):
        positions = sorted(chosen.sample(range(300), chosen.randint(1, 4)))
        for index in positions:
            name = chosen.choice(['{"rp_id":"7"', "x" * chosen.randint(1, 255), "ñ"])
            rows[index] = (rows[index][0], name, *rows[index][2:])
        records = [rendered_record(rows[index], times).encode() for index in positions]
        page = page.spliced(version, positions, records)
        assert page.body == success_body(records_found(300), point_records(rows, times))
        fresh = JoinedPage.of(version, "UTC", page.body)
        assert [page.start(index) for index in range(300)] == list(fresh.starts)
        assert page.ids == fresh.ids
        assert len(page.moves) <= MAX_MOVES


def test_a_stopping_server_keeps_the_records_it_rendered(database_url: str, engine: Engine) -> None:
    """Keeping runs after the answer: stopping right after it waits for it to land."""
    tenant = add_tenant(engine, "0032", [point(rp_id) for rp_id in range(1, 20_001)])
    server = LiveServer(make_settings(database_url)).start()
    try:
        answer = httpx.get(
            f"{server.url}{ENDPOINT}?api=routing_points",
            headers={"wolkvox-token": tenant.token},
            timeout=60,
        )
    finally:
        server.stop()
    assert answer.status_code == 200
    assert stale_records(engine) == 0


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_nothing_is_kept_on_the_clock_of_a_zone_being_left(
    store: Store, engine: Engine, database_url: str
) -> None:
    """A keep racing a time-zone change (uncommitted) must not store old-zone times."""
    add_tenant(engine, "0032", [point(1, last_use="2026-03-01 10:00:00")], timezone=ZONE)
    who = principal(engine)
    stored = await store.reader.page(who.operation_id, 0, None, 10)
    _pieces, rendered = fill_stale(stored, LocalTimes(ZoneInfo(ZONE)))
    with psycopg.connect(database_url) as changing:
        changing.execute(
            "UPDATE operations SET timezone = 'Asia/Tokyo', version = version + 1 "
            "WHERE nomenclature = '0032'"
        )
        await store.reader.keep_records(who.operation_id, ZONE, rendered)
        changing.commit()
    assert stale_records(engine) == 1
    assert (await render(store, engine)).body == expected(engine)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_bulk_write_refreshes_postgresqls_statistics_of_the_points(engine: Engine) -> None:
    def analyzed() -> int:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT analyze_count FROM pg_stat_user_tables "
                        "WHERE relname = 'routing_points'"
                    )
                ).scalar_one()
            )

    add_tenant(engine, "0032", [point(i) for i in range(1, 11)])
    assert analyzed() == 0  # a few rows: left to autovacuum
    point_store.upsert_points(engine, "0032", [point(i) for i in range(1, 2_001)])
    after_upsert = analyzed()
    replace.replace_points(engine, "0032", [point(i, "Renamed") for i in range(1, 1_501)])
    assert (after_upsert, analyzed()) == (1, 2)
