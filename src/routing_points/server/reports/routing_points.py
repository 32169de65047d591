"""`api=routing_points`: a page of the operation's routing points (section 3).

Pages are cached per operation version, so their ETag is known before admission: a
conditional request that matches is admitted at cost 0 and answered 304. Answers are
gzip-compressed for clients that accept it (and say so in Vary).
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import Response

from routing_points.contract import ENDPOINT, ROUTING_POINTS
from routing_points.limits.policy import Ticket
from routing_points.server.admission import WithoutBody
from routing_points.server.errors import InvalidParameters
from routing_points.server.incoming import Incoming
from routing_points.server.pages import (
    Page,
    PageKey,
    SharedRenders,
    cached_under,
    etag_matches,
    gzip_etag,
    gzipped,
    page_etag,
)
from routing_points.server.reports.base import ReportSources, json_response
from routing_points.store.reader import Principal
from routing_points.store.records import id_in_text

# routing_points answers are gzip-compressed for clients that accept it (caches must know).
VARY = (b"vary", b"Accept-Encoding")
ETAG_CACHE_SIZE = 10_000


def _integer(params: Mapping[str, str], name: str) -> int | None:
    value = params.get(name, "").strip()
    if not value:
        return None
    number = id_in_text(value, minimum=0)
    if number is None:
        raise InvalidParameters(f"{name.upper()} MUST BE A NON-NEGATIVE INTEGER")
    return number


class RoutingPointsReport:
    def __init__(self, sources: ReportSources) -> None:
        self.renderer = sources.renderer
        self.cache = sources.cache
        self._etags: dict[tuple[str, int, int | None, int], str] = {}
        self._renders = SharedRenders()

    def prepare(
        self, principal: Principal, params: Mapping[str, str], incoming: Incoming
    ) -> PointsCall:
        routing, after = _integer(params, "routing"), _integer(params, "after") or 0
        identity_etag = self.etag(principal, principal.version, routing, after)
        compress = incoming.accepts_gzip
        etag = gzip_etag(identity_etag) if compress else identity_etag
        if_none_match = incoming.if_none_match
        # Either representation's tag is a match: the content is the same.
        matches = if_none_match is not None and (
            etag_matches(if_none_match, identity_etag)
            or etag_matches(if_none_match, gzip_etag(identity_etag))
        )
        return PointsCall(self, principal, routing, after, etag, compress, 0 if matches else 1)

    def etag(self, principal: Principal, version: int, routing: int | None, after: int) -> str:
        """The identity ETag of the page of `version` of the principal's operation."""
        salt = principal.etag_salt
        key = (salt, version, routing, after)
        etag = self._etags.get(key)
        if etag is None:
            if len(self._etags) > ETAG_CACHE_SIZE:
                self._etags.clear()
            etag = self._etags[key] = page_etag(salt, version, routing, after, self.renderer.cap)
        return etag

    async def render(
        self, key: PageKey, principal: Principal, routing: int | None, after: int
    ) -> Page:
        """The page, rendered once however many requests ask for it meanwhile.

        The store may have moved past the key's version since the token was looked up:
        the page is then the newer one, kept under its own version, never under the key's
        (a strong ETag names one body)."""
        cached = self.cache.get(key)
        if cached is not None:  # a render finished since this call missed the cache
            return cached

        async def render() -> Page:
            page = await self.renderer.render(principal, routing, after)
            self.cache.put(cached_under(key, page), page)
            return page

        return await self._renders.get(key, render)


class PointsCall(WithoutBody):
    __slots__ = (
        "after",
        "compress",
        "cost",
        "etag",
        "key",
        "page",
        "principal",
        "report",
        "routing",
    )
    api = ROUTING_POINTS

    def __init__(
        self,
        report: RoutingPointsReport,
        principal: Principal,
        routing: int | None,
        after: int,
        etag: str,
        compress: bool,
        cost: int,
    ) -> None:
        self.report = report
        self.principal = principal
        self.routing = routing
        self.after = after
        self.etag = etag
        self.compress = compress
        self.cost = cost
        self.key: PageKey = (principal.operation_id, principal.version, routing, after)
        self.page: Page | None = None

    def instant(self, ticket: Ticket) -> bool:
        if ticket.cost == 0:
            return True
        page = self.page = self.report.cache.get(self.key)
        # Compressing a page the first time takes a while: inside the time limit.
        return page is not None and (not self.compress or page.gzipped is not None)

    async def answer(self, ticket: Ticket) -> Response:
        if ticket.cost == 0:
            return self._not_modified(ticket)
        page = self.page
        if page is None:
            page = await self.report.render(self.key, self.principal, self.routing, self.after)
        etag = self.etag
        if page.version != self.principal.version:  # the store moved on: tag what is sent
            etag = self.report.etag(self.principal, page.version, self.routing, self.after)
            etag = gzip_etag(etag) if self.compress else etag
        if self.compress:
            body = page.gzipped
            if body is None:  # compressed now: the cache counts the copy
                body = await gzipped(page)
                self.report.cache.grew(cached_under(self.key, page), page)
            response = json_response(body, ticket)
            response.raw_headers.append((b"content-encoding", b"gzip"))
        else:
            response = json_response(page.body, ticket)
        response.raw_headers += [(b"etag", etag.encode()), VARY]
        if page.next_after is not None:
            _add_continuation(response, page.next_after)
        return response

    def _not_modified(self, ticket: Ticket) -> Response:
        response = Response(status_code=304)
        response.raw_headers.extend([(b"etag", self.etag.encode()), VARY, *ticket.headers])
        return response


def _add_continuation(response: Response, next_after: int) -> None:
    link = f'<{ENDPOINT}?api={ROUTING_POINTS}&after={next_after}>; rel="next"'
    response.raw_headers.extend(
        [
            (b"x-truncated", b"true"),
            (b"x-next-after", str(next_after).encode()),
            (b"link", link.encode()),
        ]
    )
