"""Prometheus metrics for operators, safe across worker processes.

With several workers, `serve` points `PROMETHEUS_MULTIPROC_DIR` at a shared folder before
the workers start; each worker then writes its values there and any of them can answer
`/metrics` for all. The page names operations, so it is only served with a bearer secret.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Awaitable, Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.requests import Request
from starlette.responses import Response

from routing_points.contract import REPORTS
from routing_points.server.errors import ApiError, Forbidden, NotFound
from routing_points.store.reader import StoreUnavailable

KNOWN_APIS = frozenset(REPORTS)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    def __init__(self, token: str) -> None:
        self._token = token
        shared = multiprocess_dir() is not None
        self.registry = CollectorRegistry()
        # In multiprocess mode the values live in files; the page reads them all back.
        own = None if shared else self.registry
        self.requests = Counter(
            "routing_points_requests_total",
            "Requests to the API by api and HTTP status.",
            ["api", "status"],
            registry=own,
        )
        self.refusals = Counter(
            "routing_points_refusals_total",
            "Calls refused by a limit, by reason (concurrency, budget, interval, time, size).",
            ["reason"],
            registry=own,
        )
        self.latency = Histogram(
            "routing_points_request_duration_seconds",
            "Time to answer, by api.",
            ["api"],
            buckets=LATENCY_BUCKETS,
            registry=own,
        )
        self.consumptions = Counter(
            "routing_points_consumptions_total",
            "Charged consumptions by operation (its budget use).",
            ["operation"],
            registry=own,
        )
        self.budget_used = Gauge(
            "routing_points_budget_used",
            "Consumptions of the operation's current local day, as last seen.",
            ["operation"],
            registry=own,
            multiprocess_mode="mostrecent",
        )
        if shared:
            multiprocess.MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]

    def observe(self, api: str, status: int, seconds: float, refusal: str | None) -> None:
        api = api if api in KNOWN_APIS else "other"
        self.requests.labels(api, str(status)).inc()
        self.latency.labels(api).observe(seconds)
        if refusal is not None:
            self.refusals.labels(refusal).inc()

    def consumed(self, operation: str, used_today: int) -> None:
        self.consumptions.labels(operation).inc()
        self.budget_used.labels(operation).set(used_today)

    async def page(self, request: Request) -> Response:
        supplied = request.headers.get("authorization", "")
        if not hmac.compare_digest(supplied.encode(), f"Bearer {self._token}".encode()):
            raise Forbidden("A VALID BEARER TOKEN IS REQUIRED FOR THE METRICS")
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


async def metrics_off(_request: Request) -> Response:
    raise NotFound()


async def measured(
    metrics: Metrics, api: str, handler: Callable[[], Awaitable[Response]]
) -> Response:
    """The handler's answer, counted by api and status, and timed."""
    started, status, refusal = time.perf_counter(), 500, None
    try:
        response = await handler()
        status = response.status_code
        return response
    except ApiError as exc:
        status, refusal = exc.status, exc.refusal
        raise
    except StoreUnavailable:
        status = 503
        raise
    finally:
        metrics.observe(api, status, time.perf_counter() - started, refusal)
