"""The reports `information.php?api=` answers, in one table: api name -> handler.

Adding a report: write its module here (a `Report` whose `prepare` returns a `Call`),
add one line below, and its name (and record fields) to `routing_points.contract`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final

from routing_points.contract import ROUTING_POINTS, TOKEN_INFO
from routing_points.server.admission import Call
from routing_points.server.reports.base import Report, ReportSources
from routing_points.server.reports.routing_points import RoutingPointsReport
from routing_points.server.reports.token_info import TokenInfoReport

REPORTS: Final[Mapping[str, Callable[[ReportSources], Report]]] = MappingProxyType(
    {
        ROUTING_POINTS: RoutingPointsReport,
        TOKEN_INFO: TokenInfoReport,
    }
)


def make_reports(sources: ReportSources) -> dict[str, Report]:
    """Every report's handler, made once when the services start."""
    return {name: make(sources) for name, make in REPORTS.items()}


__all__ = ["REPORTS", "Call", "Report", "ReportSources", "make_reports"]
