"""One sync: the upstream's whole answer, applied to the local copy in one transaction.

The upstream's ETag is sent back with If-None-Match, so an unchanged upstream answers 304
and nothing is written. The tag is kept in the store's meta table with the local version
it describes, in the same transaction as the data: if anything else changed the local
copy since (a `points import`), the tag no longer matches and the next sync fetches all.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import httpx
from sqlalchemy import Engine

from routing_points.client import AsyncClient
from routing_points.client.models import RoutingPoint
from routing_points.store import errors as store_errors
from routing_points.store import tenants
from routing_points.store.points import count_points
from routing_points.store.replace import ReplaceResult, read_meta, replace_points, write_meta


class CountingTransport(httpx.AsyncBaseTransport):
    """Counts every request sent upstream (retries and continuation pages included)."""

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.inner = inner if inner is not None else httpx.AsyncHTTPTransport()
        self.sent = 0
        self.statuses: dict[str, int] = {}
        # The last RateLimit-Policy the upstream sent (its budget), if any.
        self.last_policy: str | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        try:
            response = await self.inner.handle_async_request(request)
        except httpx.TransportError:
            self._count("error")
            raise
        self._count(str(response.status_code))
        policy = response.headers.get("ratelimit-policy")
        if policy:
            self.last_policy = policy
        return response

    def _count(self, result: str) -> None:
        self.statuses[result] = self.statuses.get(result, 0) + 1

    def take_statuses(self) -> dict[str, int]:
        """The results counted since the last call."""
        taken, self.statuses = self.statuses, {}
        return taken

    async def aclose(self) -> None:
        await self.inner.aclose()


class UpstreamChanged(Exception):
    """The upstream changed while its pages were fetched: they may mix two versions."""


async def _unchanged_since(
    client: AsyncClient, etag: str, first_records: list[dict[str, object]]
) -> None:
    """A multi-page answer is one snapshot only if the first page is still current.

    A 304 proves it; an upstream that ignores If-None-Match is believed when it answers
    the same tag or the same first page again.
    """
    async for page in client.iter_routing_points(if_none_match=etag):
        if page.not_modified or page.etag == etag or page.records == first_records:
            return
        raise UpstreamChanged("the upstream changed while its pages were fetched")


@dataclass(frozen=True, slots=True)
class SyncOutcome:
    # None after a 304: nothing was written.
    result: ReplaceResult | None
    pages: int

    @property
    def not_modified(self) -> bool:
        return self.result is None


class MirrorStore:
    """The local copy's bookkeeping in the meta table, under `mirror:<server>:`."""

    def __init__(self, engine: Engine, server: str, upstream_identity: str) -> None:
        self.engine = engine
        self.server = server
        self.identity = upstream_identity
        self.prefix = f"mirror:{server}:"

    def _key(self, name: str) -> str:
        return self.prefix + name

    def ensure_operation(self, name: str, licenses: int, timezone: str) -> None:
        try:
            tenants.get_operation(self.engine, self.server)
        except store_errors.NotFound:
            # Created meanwhile by someone else: fine.
            with contextlib.suppress(store_errors.Conflict):
                tenants.add_operation(self.engine, self.server, name, licenses, timezone)

    def upstream_etag(self) -> str | None:
        """The tag to send upstream, if it still describes the local copy."""
        meta = read_meta(self.engine, self.prefix)
        version = tenants.get_operation(self.engine, self.server).version
        if meta.get(self._key("upstream")) != self.identity:
            return None
        if meta.get(self._key("version")) != str(version):
            return None
        return meta.get(self._key("etag")) or None

    def synced_at(self) -> float | None:
        value = read_meta(self.engine, self.prefix).get(self._key("synced_at"))
        return float(value) if value else None

    def records(self) -> int:
        return count_points(self.engine, self.server)

    def confirm(self, now: float) -> None:
        write_meta(self.engine, {self._key("synced_at"): repr(now)})

    def replace(self, records: list[dict[str, str]], etag: str | None, now: float) -> ReplaceResult:
        def meta(version: int) -> dict[str, str]:
            return {
                self._key("upstream"): self.identity,
                self._key("etag"): etag or "",
                self._key("version"): str(version),
                self._key("synced_at"): repr(now),
            }

        return replace_points(self.engine, self.server, records, meta_values=meta)


async def sync_once(client: AsyncClient, store: MirrorStore) -> SyncOutcome:
    """Fetch every page (one request at a time) and apply the whole answer, or nothing.

    After several pages, the first is asked again with its ETag: a 304 (free on our
    server) proves the pages are one snapshot; anything else discards them.
    """
    etag = await asyncio.to_thread(store.upstream_etag)
    records: list[dict[str, object]] = []
    not_modified, new_etag, pages = False, None, 0
    first_records: list[dict[str, object]] = []
    async for page in client.iter_routing_points(if_none_match=etag):
        if pages == 0:
            not_modified, new_etag, first_records = page.not_modified, page.etag, page.records
        pages += 1
        records.extend(page.records)
    if pages > 1 and new_etag:
        pages += 1
        await _unchanged_since(client, new_etag, first_records)
    now = time.time()
    if not_modified:
        await asyncio.to_thread(store.confirm, now)
        return SyncOutcome(None, pages)
    # Through the SDK's lenient parsing: the vendor's quirks become the contract's strings.
    normalised = [point.to_record() for point in RoutingPoint.from_records(records)]
    result = await asyncio.to_thread(store.replace, normalised, new_etag, now)
    return SyncOutcome(result, pages)
