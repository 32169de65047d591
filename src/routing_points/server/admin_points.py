"""The admin API's routing points and usage: create, change, delete, bulk upsert, report.

How every admin call is admitted and bounded is `server.admin_api`'s; the date range of
a usage report is the contract's (L5).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response

from routing_points.server.admin_api import AdminApi
from routing_points.server.errors import (
    BadRequest,
    InvalidParameters,
    NotFound,
    envelope,
)
from routing_points.server.render import stored_records
from routing_points.store import points as store_points
from routing_points.store import usage as store_usage
from routing_points.store.reader import Principal
from routing_points.store.records import id_in_text, is_rp_id

DATE_FORMAT = "%Y%m%d%H%M%S"
FIRST_YEAR, LAST_YEAR = 1970, 9997


def _path_rp_id(request: Request) -> int:
    rp_id = int(request.path_params["rp_id"])
    if not is_rp_id(rp_id):
        raise NotFound(f"ROUTING POINT {rp_id} DOES NOT EXIST")
    return rp_id


class PointEndpoints:
    def __init__(self, api: AdminApi) -> None:
        self.api = api

    def _rendered(self, nomenclature: str, rp_id: int) -> dict[str, str]:
        operation, row = store_points.get_point(self.api.engine, nomenclature, rp_id)
        return stored_records(operation.timezone, [row])[0]

    async def create_point(self, request: Request) -> Response:
        async def work(principal: Principal, payload: Any) -> Response:
            if not isinstance(payload, dict):
                raise BadRequest("THE BODY MUST BE ONE ROUTING POINT OBJECT")
            server = principal.nomenclature

            def write() -> dict[str, str]:
                rp_id = store_points.create_point(self.api.engine, server, payload)
                return self._rendered(server, rp_id)

            created = await self.api.store(write)
            await self.api.audit(request, principal, "point.create", {"record": created})
            return envelope(201, "1 records were created", [created])

        return await self.api.call(request, work, with_body=True, points=True)

    async def point(self, request: Request) -> Response:
        """One routing point's resource: PATCH changes it, DELETE removes it."""
        if request.method == "DELETE":
            return await self.delete_point(request)
        return await self.update_point(request)

    async def update_point(self, request: Request) -> Response:
        async def work(principal: Principal, payload: Any) -> Response:
            rp_id = _path_rp_id(request)
            if not isinstance(payload, dict):
                raise BadRequest("THE BODY MUST BE AN OBJECT OF THE FIELDS TO CHANGE")
            if "rp_id" in payload:  # it said the body was no object
                raise BadRequest("RP_ID CANNOT BE CHANGED: IT IS THE POINT'S ADDRESS IN THE PATH")
            server = principal.nomenclature

            def write() -> tuple[frozenset[str], dict[str, str]]:
                changed = store_points.set_point(self.api.engine, server, rp_id, payload)
                return changed, self._rendered(server, rp_id)

            changed, updated = await self.api.store(write)
            if changed:  # a PATCH to what is stored writes nothing, so records nothing
                await self.api.audit(
                    request, principal, "point.update", {"rp_id": rp_id, "changes": payload}
                )
            return envelope(200, "1 records were updated", [updated])

        return await self.api.call(request, work, with_body=True, points=True)

    async def delete_point(self, request: Request) -> Response:
        async def work(principal: Principal, _payload: Any) -> Response:
            rp_id = _path_rp_id(request)
            server = principal.nomenclature
            await self.api.store(lambda: store_points.delete_point(self.api.engine, server, rp_id))
            await self.api.audit(request, principal, "point.delete", {"rp_id": rp_id})
            return envelope(200, "1 records were deleted", None)

        return await self.api.call(request, work, with_body=False, points=True)

    async def bulk_upsert(self, request: Request) -> Response:
        async def work(principal: Principal, payload: Any) -> Response:
            replace = request.query_params.get("replace", "false").lower()
            if replace not in ("true", "false", "1", "0"):
                raise InvalidParameters("REPLACE MUST BE TRUE OR FALSE")
            records = self.api.records(payload, "RECORDS")
            result = await self.api.store(
                lambda: store_points.upsert_points(
                    self.api.engine,
                    principal.nomenclature,
                    records,
                    describe="RECORD AT INDEX",
                    first_index=0,
                    replace=replace in ("true", "1"),
                )
            )
            counts = {
                "upserted": result.upserted,
                "deleted": result.deleted,
                "unchanged": result.unchanged,
            }
            await self.api.audit(request, principal, "point.bulk", counts)
            return envelope(200, f"{result.upserted} records were upserted", counts)

        return await self.api.call(request, work, with_body=True, points=True)

    async def usage_events(self, request: Request) -> Response:
        async def work(principal: Principal, payload: Any) -> Response:
            events = self.api.records(payload, "EVENTS")
            result = await self.api.store(
                lambda: store_usage.record_events(
                    self.api.engine,
                    principal.nomenclature,
                    events,
                    describe="EVENT AT INDEX",
                    first_index=0,
                )
            )
            # They move last_use, which every client sees: who did so is on the record.
            await self.api.audit(
                request,
                principal,
                "usage.events",
                {
                    "recorded": result.recorded,
                    "unknown_rp_ids": len(result.unknown_rp_ids),
                    "last_use_advanced": result.last_use_advanced,
                },
            )
            msg = f"{result.recorded} events were recorded"
            if result.unknown_rp_ids:
                msg += f"; {len(result.unknown_rp_ids)} rp_ids are unknown"
            return envelope(
                200,
                msg,
                {
                    "recorded": result.recorded,
                    "unknown_rp_ids": [str(rp) for rp in result.unknown_rp_ids],
                    "last_use_advanced": result.last_use_advanced,
                },
            )

        return await self.api.call(request, work, with_body=True, points=True)

    def _date(self, request: Request, name: str, zone: ZoneInfo) -> int:
        value = request.query_params.get(name, "").strip()
        if not value:
            raise InvalidParameters(f"{name.upper()} IS REQUIRED")
        try:
            if len(value) != 14 or not value.isdigit():
                raise ValueError(value)
            local = datetime.strptime(value, DATE_FORMAT)
            if not FIRST_YEAR <= local.year <= LAST_YEAR:
                raise ValueError(value)  # the schema's years: a zone offset stays in range
        except ValueError:
            raise InvalidParameters(
                f"{name.upper()} IS NOT A DATE IN THE FORM YYYYMMDDHHIISS"
            ) from None
        return int(local.replace(tzinfo=zone).timestamp())

    async def usage_report(self, request: Request) -> Response:
        async def work(principal: Principal, _payload: Any) -> Response:
            zone = ZoneInfo(principal.timezone)
            start = self._date(request, "date_ini", zone)
            end = self._date(request, "date_end", zone)
            if start > end:
                raise InvalidParameters("DATE_INI IS AFTER DATE_END")
            days = self.api.settings.max_date_range_days
            if end - start > days * 86_400:
                raise InvalidParameters(f"THE DATE RANGE EXCEEDS {days} DAYS")
            routing_text = request.query_params.get("routing", "").strip()
            routing = id_in_text(routing_text, minimum=0) if routing_text else None
            if routing_text and routing is None:
                raise InvalidParameters("ROUTING MUST BE A NON-NEGATIVE INTEGER")
            rows = await self.api.store(
                lambda: store_usage.usage_report(
                    self.api.engine, principal.nomenclature, start, end, routing
                )
            )
            cap = self.api.settings.max_records_per_response
            if len(rows) > cap:
                raise BadRequest(
                    f"THE REPORT HAS MORE THAN {cap} RECORDS: NARROW THE DATES OR USE ROUTING"
                )
            return envelope(200, f"{len(rows)} records were found", rows)

        return await self.api.call(request, work, with_body=False, points=True)
