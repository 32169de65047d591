"""`create_app(settings)`: the ASGI application, built from settings and nothing global.

Everything that touches the outside (the database, migrations, the limits backend) is
opened in the lifespan and closed after it; the routes are bound to those services then.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from http import HTTPStatus

import orjson
from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from routing_points.clock import Clock, system_clock
from routing_points.console import Console
from routing_points.contract import ENDPOINT
from routing_points.server.accesslog import AccessLogMiddleware
from routing_points.server.addon import ServerAddon
from routing_points.server.docs import page_routes
from routing_points.server.errors import (
    ApiError,
    InternalError,
    MethodNotAllowed,
    NotFound,
    envelope_response,
    error_response,
)
from routing_points.server.fastpath import InformationFastPath
from routing_points.server.guard import CLIENT_CLOSED
from routing_points.server.logformat import configure_logging
from routing_points.server.metrics import metrics_off
from routing_points.server.openapi import openapi_document
from routing_points.server.services import Services
from routing_points.settings import Settings
from routing_points.store.reader import StoreUnavailable

logger = logging.getLogger("routing_points.server")


async def _api_error(_request: Request, exc: Exception) -> Response:
    response = error_response(exc)
    assert response is not None
    return response


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error: ApiError
    if exc.status_code == 404:
        error = NotFound()
    elif exc.status_code == 405:
        allow = (exc.headers or {}).get("Allow", "GET")
        error = MethodNotAllowed(headers=[(b"allow", allow.encode())])
    else:
        error = ApiError(HTTPStatus(exc.status_code).phrase.upper())
        error.status = exc.status_code
    return envelope_response(error)


async def _client_gone(_request: Request, _exc: Exception) -> Response:
    """A client that left while its body was being read (or was dropped for trickling it):
    nobody to answer, and nothing wrong with the server (it was a 500 and two tracebacks)."""
    return Response(status_code=CLIENT_CLOSED)


async def _unexpected_error(_request: Request, exc: Exception) -> Response:
    logger.error("unhandled error", exc_info=exc)
    return envelope_response(InternalError())


ADMIN = "/api/v2/admin"


class RoutingPointId(Convertor[int]):
    """1 to 19 digits: "bulk" is another route, and int() never sees thousands of digits."""

    regex = "[0-9]{1,19}"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(value)


def admin_routes(services: Services) -> list[Route]:
    register_url_convertor("rp_id", RoutingPointId())  # idempotent
    points, access = services.points, services.access
    return [
        Route(f"{ADMIN}/routing_points", points.create_point, methods=["POST"]),
        Route(f"{ADMIN}/routing_points/bulk", points.bulk_upsert, methods=["POST"]),
        Route(f"{ADMIN}/routing_points/{{rp_id:rp_id}}", points.point, methods=["PATCH", "DELETE"]),
        Route(f"{ADMIN}/usage_events", points.usage_events, methods=["POST"]),
        Route(f"{ADMIN}/usage_report", points.usage_report, methods=["GET"]),
        Route(f"{ADMIN}/tokens", access.tokens, methods=["GET", "POST"]),
        Route(f"{ADMIN}/allowlist", access.allowlist, methods=["GET", "POST", "DELETE"]),
        Route(f"{ADMIN}/audit", access.audit_log, methods=["GET"]),
    ]


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock = system_clock,
    addon: ServerAddon | None = None,
) -> Starlette:
    settings = settings if settings is not None else Settings()
    services = Services(settings, clock, addon)

    async def alive(_request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    schema = orjson.dumps(openapi_document(settings))

    async def openapi(_request: Request) -> Response:
        return Response(schema, media_type="application/json")

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await services.start()
        try:
            if addon is not None:
                await addon.start(services)
            # What exists now (modules, settings, pools) lives as long as the server: out
            # of the collector's sight, a full collection no longer walks it, which cut
            # 70-80 ms pauses from the hot path's p99 (gc docs: "gc.freeze").
            gc.freeze()
            try:
                yield
            finally:
                gc.unfreeze()  # a process that goes on (a test's) collects it again
                if addon is not None:
                    await addon.stop()
        finally:
            await services.stop()

    console = Console(
        settings,
        lambda: services.engine,
        services.count_charges,
        services.forget_principals,
        lambda: services.admin.point_writes_refused,
    )
    app = Starlette(
        routes=[
            *console.routes(),
            Route(ENDPOINT, services.information, methods=["GET"]),
            *admin_routes(services),
            Route("/healthz", alive, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
            *page_routes(),
            Route("/readyz", services.readiness, methods=["GET"]),
            Route(
                "/metrics",
                services.metrics.page if services.metrics is not None else metrics_off,
                methods=["GET"],
            ),
        ],
        middleware=[
            *(addon.middleware() if addon is not None else []),
            *([Middleware(AccessLogMiddleware)] if settings.access_log else []),
            Middleware(InformationFastPath, services=services),
        ],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            StoreUnavailable: _api_error,
            ClientDisconnect: _client_gone,
            Exception: _unexpected_error,
        },
        lifespan=lifespan,
    )
    # No redirect to the path with(out) a trailing slash: its Location would be built
    # from the request's Host header. A wrong path is a 404 envelope.
    app.router.redirect_slashes = False
    app.state.services = services
    return app


def app_from_environment() -> Starlette:
    """The factory uvicorn's worker processes call: settings from ROUTING_POINTS_* only."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
