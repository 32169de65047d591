"""Prometheus metrics of a watched operation, served by the watcher itself.

By default the series are aggregates (points, points with each flag on, never used, stale),
so a scrape stays a few hundred bytes however big the operation. Per-point series
(`routing_point_flag`, `routing_point_info`, `routing_point_seconds_since_last_use`) are
opt-in: three series or more per point weigh megabytes at 70,000 points.
"""

from __future__ import annotations

import math
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from routing_points.client.models import RoutingPoint
from routing_points.watch.diff import FLAGS


class WatchMetrics:
    def __init__(self, server: str, *, per_point: bool = False) -> None:
        self.server = server
        self.per_point = per_point
        self.registry = CollectorRegistry()
        self.points = Gauge(
            "routing_points_count",
            "Routing points of the operation.",
            ["server"],
            registry=self.registry,
        )
        self.flag_on = Gauge(
            "routing_points_flag_on",
            "Routing points with the flag on.",
            ["server", "flag"],
            registry=self.registry,
        )
        self.never_used = Gauge(
            "routing_points_never_used",
            "Routing points with no last use.",
            ["server"],
            registry=self.registry,
        )
        self.stale = Gauge(
            "routing_points_stale",
            "Routing points unused for longer than --stale-after.",
            ["server"],
            registry=self.registry,
        )
        self.flag = Gauge(
            "routing_point_flag",
            "1 when the routing point's flag is on.",
            ["server", "rp_id", "flag"],
            registry=self.registry,
        )
        self.info = Gauge(
            "routing_point_info",
            "The routing point's name, as a label.",
            ["server", "rp_id", "rp_name"],
            registry=self.registry,
        )
        self.idle = Gauge(
            "routing_point_seconds_since_last_use",
            "Seconds since the last use (NaN: never).",
            ["server", "rp_id"],
            registry=self.registry,
        )
        self.budget = Gauge(
            "routing_points_budget_remaining",
            "Today's budget left, from the RateLimit header.",
            ["server"],
            registry=self.registry,
        )
        self.polls = Counter(
            "routing_points_polls",
            "Polls by result.",
            ["server", "result"],
            registry=self.registry,
        )
        self.last_success = Gauge(
            "routing_points_last_success_timestamp_seconds",
            "When the last poll succeeded.",
            ["server"],
            registry=self.registry,
        )
        self.up = Gauge(
            "routing_points_up",
            "1 when the last poll succeeded.",
            ["server"],
            registry=self.registry,
        )
        self._shown: dict[int, str] = {}

    def serve(self, port: int, host: str) -> None:
        start_http_server(port, addr=host, registry=self.registry)

    def succeeded(
        self,
        points: dict[int, RoutingPoint],
        now_local: datetime,
        now: float,
        budget_remaining: int | None,
        stale: int = 0,
    ) -> None:
        self.points.labels(self.server).set(len(points))
        for flag in FLAGS:
            on = sum(1 for point in points.values() if getattr(point, flag))
            self.flag_on.labels(self.server, flag).set(on)
        self.never_used.labels(self.server).set(
            sum(1 for point in points.values() if point.last_use is None)
        )
        self.stale.labels(self.server).set(stale)
        if self.per_point:
            self._per_point(points, now_local)
        if budget_remaining is not None:
            self.budget.labels(self.server).set(budget_remaining)
        self.polls.labels(self.server, "success").inc()
        self.last_success.labels(self.server).set(now)
        self.up.labels(self.server).set(1)

    def _per_point(self, points: dict[int, RoutingPoint], now_local: datetime) -> None:
        for rp_id in set(self._shown) - set(points):
            self._forget(rp_id)
        for rp_id, point in points.items():
            label = str(rp_id)
            for flag in FLAGS:
                self.flag.labels(self.server, label, flag).set(1 if getattr(point, flag) else 0)
            if self._shown.get(rp_id) not in (None, point.rp_name):
                self.info.remove(self.server, label, self._shown[rp_id])
            self.info.labels(self.server, label, point.rp_name).set(1)
            self._shown[rp_id] = point.rp_name
            idle = (
                math.nan if point.last_use is None else (now_local - point.last_use).total_seconds()
            )
            self.idle.labels(self.server, label).set(idle)

    def failed(self) -> None:
        self.polls.labels(self.server, "failure").inc()
        self.up.labels(self.server).set(0)

    def _forget(self, rp_id: int) -> None:
        label = str(rp_id)
        for flag in FLAGS:
            self.flag.remove(self.server, label, flag)
        self.info.remove(self.server, label, self._shown.pop(rp_id))
        self.idle.remove(self.server, label)
