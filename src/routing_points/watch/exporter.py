"""Prometheus metrics of a watched operation, served by the watcher itself."""

from __future__ import annotations

import math
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from routing_points.client.models import RoutingPoint
from routing_points.watch.diff import FLAGS


class WatchMetrics:
    def __init__(self, server: str) -> None:
        self.server = server
        self.registry = CollectorRegistry()
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
    ) -> None:
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
        if budget_remaining is not None:
            self.budget.labels(self.server).set(budget_remaining)
        self.polls.labels(self.server, "success").inc()
        self.last_success.labels(self.server).set(now)
        self.up.labels(self.server).set(1)

    def failed(self) -> None:
        self.polls.labels(self.server, "failure").inc()
        self.up.labels(self.server).set(0)

    def _forget(self, rp_id: int) -> None:
        label = str(rp_id)
        for flag in FLAGS:
            self.flag.remove(self.server, label, flag)
        self.info.remove(self.server, label, self._shown.pop(rp_id))
        self.idle.remove(self.server, label)
