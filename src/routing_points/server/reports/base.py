"""What a report of `information.php` is: it parses its parameters into a call, then answers.

The pipeline (`server.admission`) keeps the vendor's order around it: the token first
(401/403), then the call's admission at the cost it declares, then its answer. A report
raises an `ApiError` for bad parameters from `prepare`; the endpoint answers it after
admission, charged 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from starlette.responses import Response

from routing_points.limits.policy import Ticket
from routing_points.server.admission import Call
from routing_points.server.incoming import Incoming
from routing_points.server.pages import PageCache, PageRenderer
from routing_points.store.reader import Principal, Reader


class Report(Protocol):
    def prepare(self, principal: Principal, params: Mapping[str, str], incoming: Incoming) -> Call:
        """The call these parameters ask for, or an `ApiError` if they are wrong."""
        ...


@dataclass(frozen=True, slots=True)
class ReportSources:
    """What reports read from, made once when the services start."""

    reader: Reader
    renderer: PageRenderer
    cache: PageCache


def json_response(body: bytes, ticket: Ticket) -> Response:
    """A report's JSON answer, with the call's budget headers."""
    response = Response(body, media_type="application/json")
    response.raw_headers.extend(ticket.headers)
    return response
