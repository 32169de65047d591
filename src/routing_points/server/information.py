"""`GET /api/v2/information.php`: the contract's endpoint, one report per `api=` value.

The order of a request is the vendor's: token (401/403), then admission (concurrency,
budget), then the parameters. A call with a valid token and bad parameters was admitted,
so it costs 1, "whatever its result", as the vendor charges; so does an unknown `api`.
A conditional request that will be answered 304 is admitted at cost 0: it takes a slot
but no budget. The reports themselves are in `server.reports`.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

from starlette.responses import Response
from starlette.types import Receive, Scope

from routing_points.limits.policy import Ticket
from routing_points.server.admission import Admission
from routing_points.server.errors import ApiError, InvalidParameters, UnknownApi
from routing_points.server.guard import ConsumptionGuard
from routing_points.server.incoming import REPEATED, query_params, scan
from routing_points.server.metrics import Metrics
from routing_points.server.reports import Call, Report


class Deferred:
    """A call whose parameters were refused: admitted (and charged) first, then answered."""

    __slots__ = ("error",)
    cost = 1

    def __init__(self, error: ApiError) -> None:
        self.error = error

    def instant(self, ticket: Ticket) -> bool:
        return True

    async def answer(self, ticket: Ticket) -> Response:
        raise self.error


class InformationEndpoint:
    def __init__(
        self,
        admission: Admission,
        reports: Mapping[str, Report],
        guard: ConsumptionGuard,
        metrics: Metrics | None = None,
    ) -> None:
        self.admission = admission
        self.reports = reports
        self.guard = guard
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive) -> Response:
        incoming = scan(scope["headers"])
        client = scope.get("client")
        principal = await self.admission.authenticate(incoming, client[0] if client else None)
        params = query_params(scope["query_string"])
        if REPEATED in params:
            name = params[REPEATED].upper().encode("ascii", "backslashreplace").decode()
            raise InvalidParameters(f"{name[:40]} IS GIVEN MORE THAN ONCE")
        api = params.get("api", "")
        report = self.reports.get(api)
        call: Call
        try:
            if report is None:
                raise UnknownApi()
            call = report.prepare(principal, params, incoming)
        except ApiError as exc:
            call, api = Deferred(exc), ""
        ticket = await self.admission.admit(principal, api, call.cost)
        if call.cost and self.metrics is not None:
            self.metrics.consumed(principal.nomenclature, ticket.operation_used)
        return await self.admission.serve(ticket, partial(self._answer, call, ticket, receive))

    async def _answer(self, call: Call, ticket: Ticket, receive: Receive) -> Response:
        if call.instant(ticket) and not self.guard.injects_faults:
            return await call.answer(ticket)
        return await self.guard.run(partial(call.answer, ticket), receive)
