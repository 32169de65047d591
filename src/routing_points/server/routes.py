"""`GET /api/v2/information.php`: the contract's endpoint, `routing_points` and `token_info`.

The order of a request is the vendor's: token (401/403), then admission (concurrency,
budget), then the parameters. A call with a valid token and bad parameters was admitted,
so it costs 1, "whatever its result", as the vendor charges. A conditional request that
will be answered 304 is admitted at cost 0: it takes a slot but no budget.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial

from starlette.responses import Response
from starlette.types import Receive, Scope

from routing_points.contract import (
    ENDPOINT,
    ROUTING_POINTS,
    TOKEN_INFO,
    TOKEN_INFO_FIELDS,
    records_found,
)
from routing_points.limits.policy import Ticket
from routing_points.server.admission import Admission
from routing_points.server.errors import ApiError, InvalidParameters, UnknownApi
from routing_points.server.guard import ConsumptionGuard
from routing_points.server.incoming import REPEATED, non_negative_id, query_params, scan
from routing_points.server.metrics import Metrics
from routing_points.server.pages import (
    Page,
    PageCache,
    PageKey,
    PageRenderer,
    SharedRenders,
    etag_matches,
    gzip_etag,
    gzipped,
    page_etag,
)
from routing_points.server.render import success_body
from routing_points.store.reader import Principal

# routing_points answers are gzip-compressed for clients that accept it (caches must know).
VARY = (b"vary", b"Accept-Encoding")
ETAG_CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class PointsQuery:
    routing: int | None
    after: int


def _integer(params: Mapping[str, str], name: str) -> int | None:
    value = params.get(name, "").strip()
    if not value:
        return None
    number = non_negative_id(value)
    if number is None:
        raise InvalidParameters(f"{name.upper()} MUST BE A NON-NEGATIVE INTEGER")
    return number


def parse_points_query(params: Mapping[str, str]) -> PointsQuery:
    return PointsQuery(_integer(params, "routing"), _integer(params, "after") or 0)


def _json_response(body: bytes, ticket: Ticket) -> Response:
    response = Response(body, media_type="application/json")
    response.raw_headers.extend(ticket.headers)
    return response


class InformationEndpoint:
    def __init__(
        self,
        admission: Admission,
        renderer: PageRenderer,
        cache: PageCache,
        guard: ConsumptionGuard,
        metrics: Metrics | None = None,
    ) -> None:
        self.admission = admission
        self.renderer = renderer
        self.cache = cache
        self.guard = guard
        self.metrics = metrics
        self._etags: dict[tuple[str, int, int | None, int], str] = {}
        self._renders = SharedRenders()

    async def __call__(self, scope: Scope, receive: Receive) -> Response:
        incoming = scan(scope["headers"])
        client = scope.get("client")
        principal = await self.admission.authenticate(incoming, client[0] if client else None)
        params = query_params(scope["query_string"])
        if REPEATED in params:
            name = params[REPEATED].upper().encode("ascii", "backslashreplace").decode()
            raise InvalidParameters(f"{name[:40]} IS GIVEN MORE THAN ONCE")
        api = params.get("api", "")
        deferred: ApiError | None = None
        query: PointsQuery | None = None
        etag: str | None = None
        compress = False
        cost = 1
        if api == ROUTING_POINTS:
            try:
                query = parse_points_query(params)
            except ApiError as exc:
                deferred = exc
            else:
                identity_etag = self._etag(principal, query)
                compress = incoming.accepts_gzip
                etag = gzip_etag(identity_etag) if compress else identity_etag
                if_none_match = incoming.if_none_match
                # Either representation's tag is a match: the content is the same.
                if if_none_match is not None and (
                    etag_matches(if_none_match, identity_etag)
                    or etag_matches(if_none_match, gzip_etag(identity_etag))
                ):
                    cost = 0
        elif api != TOKEN_INFO:
            deferred = UnknownApi()
        ticket = await self.admission.admit(principal, api if deferred is None else "", cost)
        if cost and self.metrics is not None:
            self.metrics.consumed(principal.nomenclature, ticket.operation_used)
        return await self.admission.serve(
            ticket,
            partial(self._answer, receive, principal, query, etag, compress, ticket, deferred),
        )

    def _etag(self, principal: Principal, query: PointsQuery) -> str:
        key = (principal.etag_salt, principal.version, query.routing, query.after)
        etag = self._etags.get(key)
        if etag is None:
            if len(self._etags) > ETAG_CACHE_SIZE:
                self._etags.clear()
            etag = self._etags[key] = page_etag(
                principal, query.routing, query.after, self.renderer.cap
            )
        return etag

    async def _answer(
        self,
        receive: Receive,
        principal: Principal,
        query: PointsQuery | None,
        etag: str | None,
        compress: bool,
        ticket: Ticket,
        deferred: ApiError | None,
    ) -> Response:
        if deferred is not None:
            raise deferred
        respond: Callable[[], Awaitable[Response]]
        instant = True
        if query is None:
            respond = partial(self._token_info, ticket)
        elif etag is None:
            raise AssertionError("a routing_points query always has an ETag")
        elif ticket.cost == 0:
            respond = partial(self._not_modified, etag, ticket)
        else:
            key = (principal.operation_id, principal.version, query.routing, query.after)
            page = self.cache.get(key)
            if page is None:
                instant = False
                respond = partial(self._render, key, principal, query, etag, compress, ticket)
            else:
                # Compressing a page the first time takes a while: inside the time limit.
                instant = not compress or page.gzipped is not None
                respond = partial(self._page_response, page, etag, compress, ticket)
        if instant and not self.guard.injects_faults:
            return await respond()
        return await self.guard.run(respond, receive)

    async def _render(
        self,
        key: PageKey,
        principal: Principal,
        query: PointsQuery,
        etag: str,
        compress: bool,
        ticket: Ticket,
    ) -> Response:
        async def render() -> Page:
            page = await self.renderer.render(principal, query.routing, query.after)
            self.cache.put(key, page)
            return page

        page = await self._renders.get(key, render)
        return await self._page_response(page, etag, compress, ticket)

    async def _page_response(
        self, page: Page, etag: str, compress: bool, ticket: Ticket
    ) -> Response:
        if compress:
            response = _json_response(await gzipped(page), ticket)
            response.raw_headers.append((b"content-encoding", b"gzip"))
        else:
            response = _json_response(page.body, ticket)
        response.raw_headers += [(b"etag", etag.encode()), VARY]
        if page.next_after is not None:
            self._add_continuation(response, page)
        return response

    @staticmethod
    def _add_continuation(response: Response, page: Page) -> None:
        link = f'<{ENDPOINT}?api={ROUTING_POINTS}&after={page.next_after}>; rel="next"'
        response.raw_headers.extend(
            [
                (b"x-truncated", b"true"),
                (b"x-next-after", str(page.next_after).encode()),
                (b"link", link.encode()),
            ]
        )

    @staticmethod
    async def _not_modified(etag: str, ticket: Ticket) -> Response:
        response = Response(status_code=304)
        response.raw_headers.extend([(b"etag", etag.encode()), VARY, *ticket.headers])
        return response

    async def _token_info(self, ticket: Ticket) -> Response:
        available = max(
            0,
            min(
                ticket.token_limit - ticket.token_used,
                ticket.operation_limit - ticket.operation_used,
            ),
        )
        values = (
            ticket.principal.description,
            str(ticket.token_limit),
            str(ticket.token_used),
            str(ticket.operation_used),
            str(available),
        )
        record = dict(zip(TOKEN_INFO_FIELDS, values, strict=True))
        return _json_response(success_body(records_found(1), [record]), ticket)
