"""`GET /api/v2/information.php`: the contract's endpoint, one report per `api=` value.

The order of a request is the vendor's: token (401/403), then admission (concurrency,
budget), then the parameters. A call with a valid token and bad parameters was admitted,
so it costs 1, "whatever its result", as the vendor charges; so does an unknown `api`.
A conditional request that will be answered 304 is admitted at cost 0: it takes a slot
but no budget. The pipeline is `Admission.handle`; the reports are in `server.reports`.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import Response
from starlette.types import Receive, Scope

from routing_points.limits.policy import Ticket
from routing_points.server.admission import Admission, Call, WithoutBody
from routing_points.server.errors import ApiError, UnknownApi
from routing_points.server.incoming import Incoming, single_params
from routing_points.server.reports import Report
from routing_points.store.reader import Principal


class Deferred(WithoutBody):
    """A call whose parameters were refused: admitted (and charged) first, then answered."""

    __slots__ = ("error",)
    api = ""  # not a report: the limits count it under no report's name
    cost = 1

    def __init__(self, error: ApiError) -> None:
        self.error = error

    def instant(self, ticket: Ticket) -> bool:
        return True

    async def answer(self, ticket: Ticket) -> Response:
        raise self.error


class InformationEndpoint:
    def __init__(self, admission: Admission, reports: Mapping[str, Report]) -> None:
        self.admission = admission
        self.reports = reports

    async def __call__(self, scope: Scope, receive: Receive) -> Response:
        return await self.admission.handle(scope, receive, self.prepare)

    def prepare(self, principal: Principal, incoming: Incoming, scope: Scope) -> Call:
        # A repeated parameter is refused before admission: it is not a call to anything.
        params = single_params(scope["query_string"])
        report = self.reports.get(params.get("api", ""))
        try:
            if report is None:
                raise UnknownApi()
            return report.prepare(principal, params, incoming)
        except ApiError as exc:
            return Deferred(exc)
