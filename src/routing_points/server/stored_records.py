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
from routing_points.store.reader import STALE_MARK, RenderedRecord, StoredPage


class StaleMismatch(RuntimeError):
    """The stale marks and rows of one snapshot disagree: a bug, never a client's doing."""


def fill_stale(page: StoredPage, local_time: LocalTimes) -> tuple[bytes, list[RenderedRecord]]:
    """The page's joined records with every stale one rendered, and those to keep."""
    if not page.stale:
        return page.joined, []
    parts = page.joined.split(STALE_MARK)
    if len(parts) != 2 * len(page.stale) + 1:
        raise StaleMismatch(f"{len(parts) // 2} marks for {len(page.stale)} stale rows")
    rendered: list[RenderedRecord] = []
    for index, row in enumerate(page.stale, start=0):
        slot = 2 * index + 1
        if int(parts[slot]) != row[0]:
            raise StaleMismatch(f"mark {parts[slot]!r} for the row of rp_id {row[0]}")
        # Kept as str, spliced as an exact-size copy: orjson's own result holds a 4 KB
        # buffer, and 60,000 of them (a page all stale) would hold 250 MB.
        record = orjson.dumps(record_of(row, local_time)).decode()
        parts[slot] = record.encode()
        rendered.append((row, record))
    return b"".join(parts), rendered
