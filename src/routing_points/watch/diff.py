"""What changed between two snapshots of an operation: pure functions, no I/O.

Events, in the order they are reported (by rp_id, then this order within a point):
`added`, `removed`, `renamed`, `flag_on` / `flag_off` (naming the flag),
`last_use_advanced`, and `stale` (no use for longer than the configured time; reported
once, and again only after the point has been used since).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from routing_points.client.models import RoutingPoint

FLAGS = ("ivr_active", "chat_active", "interaction_active", "crm_active")


@dataclass(frozen=True, slots=True)
class Change:
    kind: str
    rp_id: int
    rp_name: str
    field: str | None = None
    old: Any = None
    new: Any = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "rp_id": self.rp_id,
            "rp_name": self.rp_name,
            "field": self.field,
            "old": self.old,
            "new": self.new,
        }


def _moment(value: datetime | None) -> str | None:
    return None if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


def changes_between(
    before: dict[int, RoutingPoint], after: dict[int, RoutingPoint]
) -> list[Change]:
    found: list[Change] = []
    for rp_id in sorted(before.keys() | after.keys()):
        old, new = before.get(rp_id), after.get(rp_id)
        if old is None and new is not None:
            found.append(Change("added", rp_id, new.rp_name))
            continue
        if new is None and old is not None:
            found.append(Change("removed", rp_id, old.rp_name))
            continue
        assert old is not None
        assert new is not None
        if old.rp_name != new.rp_name:
            found.append(Change("renamed", rp_id, new.rp_name, "rp_name", old.rp_name, new.rp_name))
        for flag in FLAGS:
            was, now = getattr(old, flag), getattr(new, flag)
            if was != now:
                kind = "flag_on" if now else "flag_off"
                found.append(Change(kind, rp_id, new.rp_name, flag, was, now))
        if new.last_use is not None and (old.last_use is None or new.last_use > old.last_use):
            found.append(
                Change(
                    "last_use_advanced",
                    rp_id,
                    new.rp_name,
                    "last_use",
                    _moment(old.last_use),
                    _moment(new.last_use),
                )
            )
    return found


def newly_stale(
    points: Iterable[RoutingPoint], already_stale: set[int], now: datetime, stale_after: timedelta
) -> tuple[list[Change], set[int]]:
    """Stale events for points unused for `stale_after`, and the points stale from now on.

    `now` is naive local time of the operation, like `last_use`. Never-used points are not
    judged: there is no use to measure from.
    """
    found, stale = [], set()
    for point in points:
        if point.last_use is None or now - point.last_use < stale_after:
            continue
        stale.add(point.rp_id)
        if point.rp_id not in already_stale:
            found.append(
                Change(
                    "stale", point.rp_id, point.rp_name, "last_use", _moment(point.last_use), None
                )
            )
    return found, stale
