"""`api=token_info`: the token's budget, as section 5 of the contract shows it."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import Response

from routing_points.contract import TOKEN_INFO, TOKEN_INFO_FIELDS, records_found
from routing_points.limits.policy import Ticket
from routing_points.server.admission import Call, WithoutBody
from routing_points.server.incoming import Incoming
from routing_points.server.render import success_body
from routing_points.server.reports.base import ReportSources, json_response
from routing_points.store.reader import Principal


class TokenInfoCall(WithoutBody):
    """Everything it answers is in the ticket: one call object serves every request."""

    __slots__ = ()
    api = TOKEN_INFO
    cost = 1

    def instant(self, ticket: Ticket) -> bool:
        return True

    async def answer(self, ticket: Ticket) -> Response:
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
        return json_response(success_body(records_found(1), [record]), ticket)


TOKEN_INFO_CALL = TokenInfoCall()


class TokenInfoReport:
    def __init__(self, _sources: ReportSources) -> None:
        pass

    def prepare(self, principal: Principal, params: Mapping[str, str], incoming: Incoming) -> Call:
        return TOKEN_INFO_CALL  # no parameters of its own
