"""The console's reading pages: the usage report (chart, table, CSV) and the audit log."""

from __future__ import annotations

import functools
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response

from routing_points.console import charts, data
from routing_points.console.operation import csv_response, server_of
from routing_points.console.pages import Console, stops
from routing_points.store import audit as store_audit
from routing_points.store import errors as store_errors
from routing_points.store import tenants
from routing_points.store import usage as store_usage


class ReportPages:
    def __init__(self, console: Console) -> None:
        self.c = console

    # -- usage ---------------------------------------------------------------------------

    async def _report(
        self, request: Request, server: str
    ) -> tuple[str, str, list[str], list[dict[str, str]], str]:
        """(first day, last day, days, rows, error) of the report the query asks for."""
        c = self.c
        operation = await c.run(functools.partial(tenants.get_operation, c.engine, server))
        zone = ZoneInfo(operation.timezone)
        today = datetime.now(zone).date()
        try:
            start, end = data.report_range(
                request.query_params.get("from", ""),
                request.query_params.get("to", ""),
                today,
                c.settings.max_date_range_days,
            )
        except store_errors.Invalid as exc:
            start, end = today - timedelta(days=6), today
            error = str(exc)
        else:
            error = ""
        first = int(datetime.combine(start, time(0), zone).timestamp())
        last = int(datetime.combine(end + timedelta(days=1), time(0), zone).timestamp()) - 1
        rows = await c.run(
            functools.partial(store_usage.usage_report, c.engine, server, first, last, None)
        )
        days = data.day_list(end, (end - start).days + 1)
        return start.isoformat(), end.isoformat(), days, rows, error

    @stops
    async def usage(self, request: Request) -> Response:
        c, server = self.c, server_of(request)
        session = await c.session(request, server)
        start, end, days, rows, error = await self._report(request, server)
        per_channel = data.usage_table(rows, days)
        series = [charts.Series(name, values) for name, values in per_channel.items()]
        return c.page(
            request,
            session,
            server,
            "usage.html",
            title=f"Usage of {server}",
            start=start,
            end=end,
            rows=rows,
            chart=charts.stacked_bars(days, series, "Events per day"),
            error=error,
            max_days=c.settings.max_date_range_days,
            status=400 if error else 200,
        )

    @stops
    async def usage_csv(self, request: Request) -> Response:
        c, server = self.c, server_of(request)
        session = await c.session(request, server)
        start, end, _days, rows, error = await self._report(request, server)
        if error:
            return c.error_page(request, 400, error, session)
        return csv_response(data.usage_csv(rows), f"usage-{server}-{start}-{end}.csv")

    # -- audit ---------------------------------------------------------------------------

    @stops
    async def audit(self, request: Request) -> Response:
        c, server = self.c, server_of(request)
        session = await c.session(request, server)
        operation = await c.run(functools.partial(tenants.get_operation, c.engine, server))
        found = await c.run(functools.partial(store_audit.entries, c.engine, server, limit=500))
        rows = [
            {"entry": entry, "at": data.local_time(entry.at, operation.timezone)} for entry in found
        ]
        return c.page(
            request,
            session,
            server,
            "audit.html",
            title=f"Audit log of {server}",
            rows=rows,
            retention=c.settings.audit_retention_days,
        )
