"""Pages of routing points, rendered once per operation version and served from memory.

A page is what one `routing_points` consumption returns: at most the record cap (L3),
starting after a keyset position. Its ETag is derived from the operation's version (read
with the token on every request), so it is known before anything is rendered, and an
unchanged operation is answered from the cache without touching its rows.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from routing_points.contract import records_found
from routing_points.futures import discard_outcome
from routing_points.server.errors import ResultTooLarge
from routing_points.server.joined_pages import (
    HOLD_FROM_RECORDS,
    MAX_SPLICED,
    JoinedPage,
    JoinedPages,
)
from routing_points.server.render import LocalTimes, records_body
from routing_points.server.stored_records import fill_stale, rendered_record
from routing_points.store.reader import Principal, Reader, RenderedRecord, StoredPage

PageKey = tuple[int, int, int | None, int]  # operation, version, routing, after

# Pages of more bytes, or more stale records to render, than this are built in a worker
# thread, so that a big render never holds the event loop; smaller ones cost less than
# the thread hop.
BUILD_OFF_LOOP_BYTES = 256 * 1024
BUILD_OFF_LOOP_ROWS = 2_000
# How long a stopping server waits for rendered records still being kept.
CLOSE_WAIT_S = 5.0


@dataclass(slots=True)
class Page:
    body: bytes
    count: int
    # The rp_id to continue after, when the cap cut the answer short.
    next_after: int | None
    # The operation's version the body shows: the store's when it was read, which may be
    # newer than the one the request's token was looked up with.
    version: int
    # The body gzip-compressed, made on the first request that accepts it, then kept.
    gzipped: bytes | None = None
    # The compression under way, shared by every request that asks while it runs.
    gzipping: asyncio.Future[bytes] | None = field(default=None, repr=False, compare=False)


# Level 6 (zlib's default): the 60,000-point answer, 9.8 MB, is 0.61 MB in 0.38 s once;
# level 1 is 0.85 MB in 0.18 s, level 9 0.55 MB in 1.3 s (bench/compression.py).
GZIP_LEVEL = 6
# Bodies above this are compressed in a thread: the event loop keeps answering.
GZIP_INLINE_BYTES = 64 * 1024


async def gzipped(page: Page) -> bytes:
    """The page's gzip body, compressed once per page version. mtime=0 makes the bytes
    depend on the body alone, so every worker sends the same ones under the same ETag.

    Right after a change every client asks at once: the first starts the compression, the
    others await the same one (six compressions of the 60,000-point answer cost six times
    one). It runs as a task of its own, so a client that gives up does not cancel it."""
    if page.gzipped is not None:
        return page.gzipped
    if len(page.body) <= GZIP_INLINE_BYTES:
        page.gzipped = gzip.compress(page.body, GZIP_LEVEL, mtime=0)
        return page.gzipped
    if page.gzipping is None:
        page.gzipping = asyncio.ensure_future(
            asyncio.to_thread(gzip.compress, page.body, GZIP_LEVEL, mtime=0)
        )
        page.gzipping.add_done_callback(lambda done: _keep_gzipped(page, done))
    return await asyncio.shield(page.gzipping)


def _keep_gzipped(page: Page, done: asyncio.Future[bytes]) -> None:
    """Keep a finished compression; after a failure the next request tries again."""
    page.gzipping = None
    if not done.cancelled() and done.exception() is None:
        page.gzipped = done.result()


def gzip_etag(etag: str) -> str:
    """The gzip representation's own strong ETag (RFC 9110 8.8.3: a strong validator
    changes with the bytes, and the encoded bytes differ)."""
    return etag[:-1] + '-gz"'


def page_etag(salt: str, version: int, routing: int | None, after: int, cap: int) -> str:
    seed = f"{salt}:{version}:{routing}:{after}:{cap}"
    return '"' + hashlib.blake2b(seed.encode(), digest_size=10).hexdigest() + '"'


def etag_matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 weak comparison, as If-None-Match requires."""
    if if_none_match.strip() == "*":
        return True
    return any(
        candidate.strip().removeprefix("W/") == etag for candidate in if_none_match.split(",")
    )


class PageCache:
    """Least-recently-used rendered pages, bounded by their total size in bytes: bodies and
    the gzip copies made of them later (`grew`).

    A page of a newer version of its operation replaces the older one of the same query: an
    operation's version only moves forward, so the old one would never be asked for again
    (the 60,000-point answer is 10 MB a version)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._pages: OrderedDict[PageKey, Page] = OrderedDict()
        self._sizes: dict[PageKey, int] = {}
        self._bytes = 0
        # (operation, routing, after) -> the key of its newest cached version.
        self._newest: dict[tuple[int, int | None, int], PageKey] = {}

    def get(self, key: PageKey) -> Page | None:
        page = self._pages.get(key)
        if page is not None:
            self._pages.move_to_end(key)
        return page

    def put(self, key: PageKey, page: Page) -> None:
        size = _bytes_of(page)
        if size > self.max_bytes:
            return
        operation, version, routing, after = key
        query = (operation, routing, after)
        newest = self._newest.get(query)
        if newest is not None and newest[1] > version:
            return  # a render of an older version finished last: keep the newer one
        if newest is not None and newest != key:
            self._drop(newest)
        self._drop(key)
        self._pages[key] = page
        self._sizes[key] = size
        self._newest[query] = key
        self._bytes += size
        self._evict(keep=None)

    def grew(self, key: PageKey, page: Page) -> None:
        """The page cached under `key` gained its gzip copy: count it within the bound,
        making room from the least recently used others (never from this page, which a
        client is being sent: dropping it would mean rendering and compressing again)."""
        if self._pages.get(key) is not page:
            return  # replaced or dropped meanwhile: not counted
        size = _bytes_of(page)
        self._bytes += size - self._sizes[key]
        self._sizes[key] = size
        self._pages.move_to_end(key)
        self._evict(keep=key)

    def _evict(self, keep: PageKey | None) -> None:
        while self._bytes > self.max_bytes:
            oldest = next(iter(self._pages))
            if oldest == keep:
                return  # alone over the bound: kept until a newer version replaces it
            self._drop(oldest)

    def _drop(self, key: PageKey) -> None:
        page = self._pages.pop(key, None)
        if page is None:
            return
        self._bytes -= self._sizes.pop(key)
        query = (key[0], key[2], key[3])
        if self._newest.get(query) == key:
            del self._newest[query]

    def __len__(self) -> int:
        return len(self._pages)


def cached_under(key: PageKey, page: Page) -> PageKey:
    """The key a page rendered for `key` is cached under: its own version's, which may be
    newer than the key's (the store moved on after the token's lookup)."""
    operation, _version, routing, after = key
    return (operation, page.version, routing, after)


def _bytes_of(page: Page) -> int:
    return len(page.body) + (0 if page.gzipped is None else len(page.gzipped))


class SharedRenders:
    """Concurrent requests for one page key share one render.

    Right after a change, every client asks for the new version at about the same time; the
    first starts the render, the others wait for the same result. The render runs as a task
    of its own, so a waiter that gives up (its time limit, a disconnect) does not cancel it
    for the others.
    """

    def __init__(self) -> None:
        self._running: dict[PageKey, asyncio.Task[Page]] = {}

    async def get(self, key: PageKey, render: Callable[[], Awaitable[Page]]) -> Page:
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(render())
            self._running[key] = task
            task.add_done_callback(lambda _done: self._running.pop(key, None))
            task.add_done_callback(discard_outcome)
        return await asyncio.shield(task)

    def __len__(self) -> int:
        return len(self._running)


class PageRenderer:
    def __init__(self, reader: Reader, cap: int, max_bytes: int) -> None:
        self.reader = reader
        self.cap = cap
        self.max_bytes = max_bytes
        self._local_times: dict[str, LocalTimes] = {}
        self.joined = JoinedPages()
        # Work after the answer (records to keep, layouts to find); held until done.
        self._background: set[asyncio.Future[None]] = set()

    def local_times(self, timezone: str) -> LocalTimes:
        formatter = self._local_times.get(timezone)
        if formatter is None:
            formatter = self._local_times[timezone] = LocalTimes(ZoneInfo(timezone))
        return formatter

    async def render(self, principal: Principal, routing: int | None, after: int) -> Page:
        whole = routing is None and after == 0
        if whole:
            page = await self._spliced(principal)
            if page is not None:
                return page
        stored = await self.reader.page(principal.operation_id, after, routing, self.cap)
        next_after = stored.last_rp_id if stored.more else None
        msg = records_found(stored.found)
        if next_after is not None:
            msg += f" (truncated at {self.cap}: more records follow after rp_id {next_after})"
        # The snapshot's time zone, not the token's lookup's: a change of zone may have
        # landed between them, and the body must be the one of the version it is tagged with.
        local_times = self.local_times(stored.timezone)
        if len(stored.joined) > BUILD_OFF_LOOP_BYTES or len(stored.stale) > BUILD_OFF_LOOP_ROWS:
            body, rendered = await asyncio.to_thread(self._build, msg, stored, local_times)
        else:
            body, rendered = self._build(msg, stored, local_times)
        if rendered:
            self._keep(principal.operation_id, stored.timezone, rendered)
        if len(body) > self.max_bytes:
            raise ResultTooLarge(self.max_bytes)
        if whole and next_after is None and stored.found > HOLD_FROM_RECORDS:
            self._remember(principal.operation_id, stored.timezone, stored.version, body)
        return Page(body, stored.found, next_after, stored.version)

    async def _spliced(self, principal: Principal) -> Page | None:
        """The whole page from the one held and what changed since, if it can be."""
        held = self.joined.get(principal.operation_id)
        if held is None or held.timezone != principal.timezone:
            return None
        changes = await self.reader.changes(principal.operation_id, held.version, MAX_SPLICED)
        if changes.timezone != held.timezone:
            return None  # the zone changed since the token's lookup: every record did
        positions = held.positions(changes)
        if positions is None:
            return None
        local_times = self.local_times(changes.timezone)
        records: list[bytes] = []
        rendered: list[RenderedRecord] = []
        for row, kept in changes.points:
            if kept is None:
                kept = rendered_record(row, local_times)
                rendered.append((row, kept))
            records.append(kept.encode())
        if positions:
            page = await asyncio.to_thread(held.spliced, changes.version, positions, records)
        else:
            page = held.spliced(changes.version, positions, records)
        self.joined.put(principal.operation_id, page)
        if rendered:
            self._keep(principal.operation_id, changes.timezone, rendered)
        if len(page.body) > self.max_bytes:
            raise ResultTooLarge(self.max_bytes)
        return Page(page.body, len(page.ids), None, changes.version)

    @staticmethod
    def _build(
        msg: str, stored: StoredPage, local_times: LocalTimes
    ) -> tuple[bytes, list[RenderedRecord]]:
        joined, rendered = fill_stale(stored, local_times)
        return records_body(msg, joined), rendered

    def _keep(self, operation_id: int, timezone: str, rendered: list[RenderedRecord]) -> None:
        """Hand the records rendered here to the store, without waiting for it."""
        self._after_answer(self.reader.keep_records(operation_id, timezone, rendered))

    def _remember(self, operation_id: int, timezone: str, version: int, body: bytes) -> None:
        """Find where the records of a whole page lie, after the answer, to splice it next."""

        async def remember() -> None:
            page = await asyncio.to_thread(JoinedPage.of, version, timezone, body)
            self.joined.put(operation_id, page)

        self._after_answer(remember())

    async def close(self) -> None:
        """Let the records being kept land (a whole page's take well under a second), then
        give up on what is left: it is rendered and kept again by the next server."""
        if self._background:
            await asyncio.wait(self._background, timeout=CLOSE_WAIT_S)
        for task in self._background:
            task.cancel()

    def _after_answer(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(discard_outcome)
