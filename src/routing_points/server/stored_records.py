"""A page's records from the JSON the store keeps, the stale ones rendered here.

A page is the stored records joined by the database (one value, no row objects: the
60,000-point answer costs about what copying its 9.8 MB costs). A record whose row changed
since it was rendered (or whose operation's time zone did) is stale: it comes as its
marked rp_id, with its row beside. It is rendered here, spliced in, and handed back to be
kept, so the next version of the page finds it fresh.

The bytes are exactly those of `orjson.dumps` of the records' list: both are the records'
`orjson.dumps` joined by commas.
"""

from __future__ import annotations

import orjson

from routing_points.server.render import LocalTimes, record_of
from routing_points.store.reader import STALE_MARK, PointRow, RenderedRecord, StoredPage


class StaleMismatch(RuntimeError):
    """The stale marks and rows of one snapshot disagree: a bug, never a client's doing."""


def rendered_record(row: PointRow, local_time: LocalTimes) -> str:
    """One record's JSON, as str: kept so, and encoded again as an exact-size copy, because
    orjson's own result holds a 4 KB buffer (60,000 held would take 250 MB)."""
    return orjson.dumps(record_of(row, local_time)).decode()


def fill_stale(
    page: StoredPage, local_time: LocalTimes
) -> tuple[list[bytes | memoryview], list[RenderedRecord]]:
    """The page's joined records as pieces, every stale one rendered, and those to keep.

    The pieces are views of the stored bytes around the rendered records: the body is
    then copied once, when the envelope joins them (the page is up to 10 MB)."""
    if not page.stale:
        return [page.joined], []
    stored = memoryview(page.joined)
    pieces: list[bytes | memoryview] = []
    rendered: list[RenderedRecord] = []
    position = 0
    for row in page.stale:
        start = page.joined.find(STALE_MARK, position)
        end = page.joined.find(STALE_MARK, start + 1)
        if start < 0 or end < 0 or int(stored[start + 1 : end]) != row[0]:
            raise StaleMismatch(f"no mark for the stale row of rp_id {row[0]}")
        record = rendered_record(row, local_time)
        pieces += (stored[position:start], record.encode())
        rendered.append((row, record))
        position = end + 1
    if page.joined.find(STALE_MARK, position) >= 0:
        raise StaleMismatch("a stale mark without its row")
    pieces.append(stored[position:])
    return pieces, rendered
