"""The admin API under /api/v2/admin/: what its endpoints share.

Every call goes through the same pipeline as `information.php` (`Admission.handle`): a
token with the admin scope, admitted at cost 1 in a concurrency slot, its body read and its
work done within the one time limit (L7), bounded by the contract's limits: at most 10,000
records per upload (L4), refused whole before anything reaches the store. Store work runs
in a thread, in one transaction: all or nothing. Every change is audited.

A write that outlives the time limit is answered 504, but its transaction may still
complete: uploads are upserts, so retrying one is safe.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import orjson
from sqlalchemy import Engine
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Scope

from routing_points.limits.policy import Ticket
from routing_points.server.admission import Admission, Call, NotStarted
from routing_points.server.errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    InsufficientScope,
    NotFound,
    PayloadTooLarge,
)
from routing_points.server.guard import ClientDisconnected
from routing_points.server.incoming import Incoming, single_params
from routing_points.server.metrics import Metrics, measured
from routing_points.settings import Settings
from routing_points.store import audit as store_audit
from routing_points.store import errors as store_errors
from routing_points.store.reader import Principal

T = TypeVar("T")
ADMIN_API = "admin"
# Admin calls that change nothing: the others make this worker look tokens up afresh.
READS = frozenset({"GET", "HEAD"})
# An admin endpoint's work: the caller and its parsed JSON body (None without one).
Work = Callable[[Principal, Any], Awaitable[Response]]


def _store_error(exc: store_errors.StoreError) -> ApiError:
    message = str(exc).upper()
    if isinstance(exc, store_errors.NotFound):
        return NotFound(message)
    if isinstance(exc, store_errors.Conflict):
        return Conflict(message)
    return BadRequest(message)


class AdminCall:
    """One admin call in the pipeline: it needs the admin scope and costs 1."""

    __slots__ = ("admin", "payload", "points", "principal", "reads_body", "request", "work")
    api = ADMIN_API
    cost = 1

    def __init__(
        self, admin: AdminApi, request: Request, work: Work, reads_body: bool, points: bool
    ) -> None:
        self.admin = admin
        self.points = points
        self.request = request
        self.work = work
        self.reads_body = reads_body
        self.principal: Principal | None = None
        self.payload: Any = None

    def prepare(self, principal: Principal, _incoming: Incoming, scope: Scope) -> Call:
        if principal.scope != "admin":
            raise InsufficientScope()  # before admission: a read token is not charged
        refused = self.admin.point_writes_refused
        if refused is not None and self.points and self.request.method not in READS:
            raise Forbidden(refused)  # after the token: nobody else learns why
        single_params(scope["query_string"])  # a repeated one too
        self.principal = principal
        return self

    async def read_body(self) -> None:
        self.payload = await self.admin.read_json(self.request)

    def instant(self, ticket: Ticket) -> bool:
        return False  # store work, in a thread: always inside the time limit

    async def answer(self, ticket: Ticket) -> Response:
        assert self.principal is not None
        response = await self.work(self.principal, self.payload)
        response.raw_headers.extend(ticket.headers)
        return response


class AdminApi:
    """Made with the app; bound to the store and admission when the services start."""

    def __init__(self, settings: Settings, metrics: Metrics | None) -> None:
        self.settings = settings
        self.metrics = metrics
        self._admission: Admission | None = None
        self._engine: Engine | None = None
        # Why this server takes no writes of routing points or their usage (a mirror's,
        # whose points are its upstream's), once its addon says so.
        self.point_writes_refused: str | None = None

    def start(self, admission: Admission, engine: Engine) -> None:
        self._admission, self._engine = admission, engine

    def stop(self) -> None:
        self._admission = self._engine = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise NotStarted("the app's lifespan has not started")
        return self._engine

    async def call(
        self, request: Request, work: Work, *, with_body: bool, points: bool = False
    ) -> Response:
        """Run `work` as an admitted admin call (its body read first when `with_body`);
        `points`: it reads or writes the operation's routing points or their usage."""
        admission = self._admission
        if admission is None:
            raise NotStarted("the app's lifespan has not started")
        call = AdminCall(self, request, work, with_body, points)
        handle = partial(admission.handle, request.scope, request.receive, call.prepare)
        try:
            if self.metrics is None:
                return await handle()
            return await measured(self.metrics, ADMIN_API, handle)
        finally:
            if request.method not in READS:
                # The client's next request sees what it changed: on this worker at once
                # (before its answer goes out), on the others at the store's notice.
                admission.reader.forget_principals()

    async def read_json(self, request: Request) -> Any:
        limit = self.settings.max_upload_bytes
        declared = request.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared[:20]) > limit:
            raise PayloadTooLarge(f"THE BODY EXCEEDS THE LIMIT OF {limit} BYTES")
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
        try:
            return orjson.loads(b"".join(chunks))
        except orjson.JSONDecodeError:
            raise BadRequest("THE BODY IS NOT VALID JSON") from None

    def records(self, payload: Any, what: str) -> list[Any]:
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
        assert self._admission is not None
        peer = request.client.host if request.client else None
        address = self._admission.client_address(peer, request.headers.get("x-forwarded-for"))
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

    async def store(self, work: Callable[[], T]) -> T:
        """Store work in a thread; its refusals become the API's."""
        try:
            return await asyncio.to_thread(work)
        except store_errors.StoreError as exc:
            raise _store_error(exc) from None
