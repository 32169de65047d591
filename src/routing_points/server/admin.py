"""The admin API under /api/v2/admin/: the write side, for tokens with the admin scope.

Every call goes through the same admission as `information.php` (it costs 1 and takes a
concurrency slot), and is bounded by the contract's limits: at most 10,000 records per
upload (L4), refused whole before anything reaches the store; 31 days per report (L5);
the time limit (L7). Store work runs in a thread, in one transaction: all or nothing.

A write that outlives the time limit is answered 504, but its transaction may still
complete: uploads are upserts, so retrying one is safe.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import Engine
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from routing_points.server.admission import Admission
from routing_points.server.errors import (
    ApiError,
    BadRequest,
    Conflict,
    ConsumptionTimeout,
    InsufficientScope,
    InvalidParameters,
    NotFound,
    PayloadTooLarge,
)
from routing_points.server.guard import ClientDisconnected, ConsumptionGuard
from routing_points.server.incoming import non_negative_id, scan
from routing_points.server.render import LocalTimes, point_records
from routing_points.settings import Settings
from routing_points.store import admin as store_admin
from routing_points.store import audit as store_audit
from routing_points.store import points as store_points
from routing_points.store import usage as store_usage
from routing_points.store.reader import Principal
from routing_points.store.records import MAX_RP_ID

T = TypeVar("T")
DATE_FORMAT = "%Y%m%d%H%M%S"
FIRST_YEAR, LAST_YEAR = 1970, 9997
ADMIN_API = "admin"


def _store_error(exc: store_admin.StoreError) -> ApiError:
    message = str(exc).upper()
    if isinstance(exc, store_admin.NotFound):
        return NotFound(message)
    if isinstance(exc, store_admin.Conflict):
        return Conflict(message)
    return BadRequest(message)


def _path_rp_id(request: Request) -> int:
    rp_id = int(request.path_params["rp_id"])
    if not 0 < rp_id <= MAX_RP_ID:
        raise NotFound(f"ROUTING POINT {rp_id} DOES NOT EXIST")
    return rp_id


def _json(status: int, msg: str, data: Any) -> Response:
    body = orjson.dumps({"code": status, "error": None, "msg": msg, "data": data})
    return Response(body, status_code=status, media_type="application/json")


class AdminEndpoints:
    def __init__(
        self, settings: Settings, admission: Admission, guard: ConsumptionGuard, engine: Engine
    ) -> None:
        self.settings = settings
        self.admission = admission
        self.guard = guard
        self.engine = engine

    async def _call(
        self,
        request: Request,
        work: Callable[[Principal, Any], Awaitable[Response]],
        *,
        with_body: bool,
    ) -> Response:
        """Authenticate, require the admin scope, admit, read the body, then do the work."""
        started = time.monotonic()
        peer = request.client.host if request.client else None
        principal = await self.admission.authenticate(scan(request.scope["headers"]), peer)
        if principal.scope != "admin":
            raise InsufficientScope()
        ticket = await self.admission.admit(principal, ADMIN_API, 1)

        async def respond() -> Response:
            payload = await self._body(request, started) if with_body else None
            response = await self.guard.run(partial(work, principal, payload), request.receive)
            response.raw_headers.extend(ticket.headers)
            return response

        return await self.admission.serve(ticket, respond)

    async def _body(self, request: Request, started: float) -> Any:
        limit = self.settings.max_upload_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"THE BODY EXCEEDS THE LIMIT OF {limit} BYTES")

        async def read() -> bytes:
            chunks, size = [], 0
            try:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise PayloadTooLarge(f"THE BODY EXCEEDS THE LIMIT OF {limit} BYTES")
                    chunks.append(chunk)
            except ClientDisconnect:
                # Hung up mid-upload: nothing was written, no one to answer (logged 499).
                # The call was admitted, so it stays charged, like any admitted call.
                raise ClientDisconnected() from None
            return b"".join(chunks)

        remaining = self.settings.consumption_timeout_s - (time.monotonic() - started)
        try:
            raw = await asyncio.wait_for(read(), timeout=max(remaining, 0.001))
        except TimeoutError:
            raise ConsumptionTimeout(self.settings.consumption_timeout_s) from None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise BadRequest("THE BODY IS NOT VALID JSON") from None

    def _records(self, payload: Any, what: str) -> list[Any]:
        """The list of records of an upload, refused whole when over the cap (L4)."""
        if isinstance(payload, dict) and isinstance(payload.get("data"), list):
            payload = payload["data"]
        if not isinstance(payload, list):
            raise BadRequest(f"THE BODY MUST BE A JSON LIST OF {what}")
        cap = self.settings.max_records_per_upload
        if len(payload) > cap:
            raise PayloadTooLarge(
                f"THE UPLOAD HAS {len(payload)} {what}: THE LIMIT IS {cap} PER CONSUMPTION"
            )
        return payload

    async def audit(
        self, request: Request, principal: Principal, action: str, detail: dict[str, Any]
    ) -> None:
        """Append the change to the audit log: which token, from where, what."""
        peer = request.client.host if request.client else None
        address = self.admission.client_address(peer, request.headers.get("x-forwarded-for"))
        await asyncio.to_thread(
            partial(
                store_audit.record,
                self.engine,
                actor=f"api:token {principal.token_id}",
                address=address,
                action=action,
                nomenclature=principal.nomenclature,
                detail=detail,
                retention_days=self.settings.audit_retention_days,
            )
        )

    async def _store(self, work: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(work)
        except store_admin.StoreError as exc:
            raise _store_error(exc) from None

    def _rendered(self, nomenclature: str, rp_id: int) -> dict[str, str]:
        operation, row = store_points.get_point(self.engine, nomenclature, rp_id)
        local_time = LocalTimes(ZoneInfo(operation.timezone))
        return point_records([store_points.contract_row(row)], local_time)[0]

    async def create_point(self, request: Request) -> Response:
        async def work(principal: Principal, payload: Any) -> Response:
            if not isinstance(payload, dict):
                raise BadRequest("THE BODY MUST BE ONE ROUTING POINT OBJECT")
            server = principal.nomenclature

            def write() -> dict[str, str]:
                rp_id = store_points.create_point(self.engine, server, payload)
                return self._rendered(server, rp_id)

            created = await self._store(write)
            await self.audit(request, principal, "point.create", {"record": created})
            return _json(201, "1 records were created", [created])

        return await self._call(request, work, with_body=True)

    async def point(self, request: Request) -> Response:
        """One routing point's resource: PATCH changes it, DELETE removes it."""
        if request.method == "DELETE":
            return await self.delete_point(request)
        return await self.update_point(request)

    async def update_point(self, request: Request) -> Response:
        async def work(principal: Principal, payload: Any) -> Response:
            rp_id = _path_rp_id(request)
            if not isinstance(payload, dict) or "rp_id" in payload:
                raise BadRequest("THE BODY MUST BE AN OBJECT OF THE FIELDS TO CHANGE")
            server = principal.nomenclature

            def write() -> dict[str, str]:
                store_points.set_point(self.engine, server, rp_id, payload)
                return self._rendered(server, rp_id)

            updated = await self._store(write)
            await self.audit(
                request, principal, "point.update", {"rp_id": rp_id, "changes": payload}
            )
            return _json(200, "1 records were updated", [updated])

        return await self._call(request, work, with_body=True)

    async def delete_point(self, request: Request) -> Response:
        async def work(principal: Principal, _payload: Any) -> Response:
            rp_id = _path_rp_id(request)
            server = principal.nomenclature
            await self._store(lambda: store_points.delete_point(self.engine, server, rp_id))
            await self.audit(request, principal, "point.delete", {"rp_id": rp_id})
            return _json(200, "1 records were deleted", None)

        return await self._call(request, work, with_body=False)

    async def bulk_upsert(self, request: Request) -> Response:
        async def work(principal: Principal, payload: Any) -> Response:
            replace = request.query_params.get("replace", "false").lower()
            if replace not in ("true", "false", "1", "0"):
                raise InvalidParameters("REPLACE MUST BE TRUE OR FALSE")
            records = self._records(payload, "RECORDS")
            result = await self._store(
                lambda: store_points.upsert_points(
                    self.engine,
                    principal.nomenclature,
                    records,
                    describe="RECORD AT INDEX",
                    first_index=0,
                    replace=replace in ("true", "1"),
                )
            )
            await self.audit(
                request,
                principal,
                "point.bulk",
                {"upserted": result.upserted, "deleted": result.deleted},
            )
            return _json(
                200,
                f"{result.upserted} records were upserted",
                {"upserted": result.upserted, "deleted": result.deleted},
            )

        return await self._call(request, work, with_body=True)

    async def usage_events(self, request: Request) -> Response:
        async def work(principal: Principal, payload: Any) -> Response:
            events = self._records(payload, "EVENTS")
            result = await self._store(
                lambda: store_usage.record_events(
                    self.engine,
                    principal.nomenclature,
                    events,
                    describe="EVENT AT INDEX",
                    first_index=0,
                )
            )
            msg = f"{result.recorded} events were recorded"
            if result.unknown_rp_ids:
                msg += f"; {len(result.unknown_rp_ids)} rp_ids are unknown"
            return _json(
                200,
                msg,
                {
                    "recorded": result.recorded,
                    "unknown_rp_ids": [str(rp) for rp in result.unknown_rp_ids],
                    "last_use_advanced": result.last_use_advanced,
                },
            )

        return await self._call(request, work, with_body=True)

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
            days = self.settings.max_date_range_days
            if end - start > days * 86_400:
                raise InvalidParameters(f"THE DATE RANGE EXCEEDS {days} DAYS")
            routing_text = request.query_params.get("routing", "").strip()
            routing = non_negative_id(routing_text) if routing_text else None
            if routing_text and routing is None:
                raise InvalidParameters("ROUTING MUST BE A NON-NEGATIVE INTEGER")
            rows = await self._store(
                lambda: store_usage.usage_report(
                    self.engine, principal.nomenclature, start, end, routing
                )
            )
            cap = self.settings.max_records_per_response
            if len(rows) > cap:
                raise BadRequest(
                    f"THE REPORT HAS MORE THAN {cap} RECORDS: NARROW THE DATES OR USE ROUTING"
                )
            return _json(200, f"{len(rows)} records were found", rows)

        return await self._call(request, work, with_body=False)
