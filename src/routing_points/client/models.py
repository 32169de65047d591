"""Typed views of what the service sends, parsed leniently where the real service is loose."""

from __future__ import annotations

import gc
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from routing_points import contract
from routing_points.client.errors import MalformedResponse

FIELDS = contract.FIELDS
_TRUE = frozenset({"yes", "y", "si", "sí", "true", "1", "on", "active"})


def _flag(value: Any) -> bool:
    if value == "yes":
        return True
    if value == "no":
        return False
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in _TRUE


def _moment(value: Any) -> datetime | None:
    """The service's local wall time "YYYY-MM-DD HH:MM:SS", naive; empty means never used."""
    if not value:
        return None
    if type(value) is str and len(value) == 19 and value[4] == "-" and value[0] != "0":
        return datetime.fromisoformat(value)  # the usual case, without copies
    text = str(value).strip()
    if not text or text.startswith("0000-00-00"):
        return None  # a MySQL "zero date": never used
    return datetime.fromisoformat(text)


class RoutingPoint(NamedTuple):
    """One routing point, typed. A named tuple: 60,000 of them are cheap to build."""

    rp_id: int
    rp_name: str
    ivr_active: bool
    chat_active: bool
    interaction_active: bool
    crm_active: bool
    # Naive: the operation's local time, exactly as the service sends it.
    last_use: datetime | None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> RoutingPoint:
        """One record typed; MalformedResponse naming the field that cannot be."""
        try:
            return cls._typed(record)
        except (KeyError, ValueError, TypeError) as exc:
            raise MalformedResponse(_problem(record, exc)) from None

    @classmethod
    def _typed(cls, record: Mapping[str, Any]) -> RoutingPoint:
        get = record.get
        name = get("rp_name", "")
        return cls(
            int(record["rp_id"]),
            name if type(name) is str else str(name),
            _flag(get("ivr_active")),
            _flag(get("chat_active")),
            _flag(get("interaction_active")),
            _flag(get("crm_active")),
            _moment(get("last_use")),
        )

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> list[RoutingPoint]:
        """Many at once: the usual "yes"/"no" and "YYYY-MM-DD HH:MM:SS" without calls.

        The cyclic garbage collector is paused meanwhile: these tuples of strings, numbers
        and datetimes cannot form cycles, and 60,000 new objects would otherwise set off
        collections that walk the whole heap, again and again.
        """
        collecting = gc.isenabled()
        gc.disable()
        try:
            return cls._build(records)
        except (KeyError, ValueError, TypeError):
            # Typed one by one, the first record that cannot be is named.
            return [cls.from_record(record) for record in records]
        finally:
            if collecting:
                gc.enable()

    @classmethod
    def _build(cls, records: Iterable[Mapping[str, Any]]) -> list[RoutingPoint]:
        new, flag, moment, parse = tuple.__new__, _flag, _moment, datetime.fromisoformat
        points: list[RoutingPoint] = []
        append = points.append
        for record in records:
            get = record.get
            name, last_use = get("rp_name", ""), get("last_use")
            flags = []
            for field_name in ("ivr_active", "chat_active", "interaction_active", "crm_active"):
                value = get(field_name)
                flags.append(True if value == "yes" else False if value == "no" else flag(value))
            if type(last_use) is str and len(last_use) == 19 and last_use[4] == "-":
                when: datetime | None = parse(last_use)
            else:
                when = moment(last_use)
            append(
                new(
                    cls,
                    (int(record["rp_id"]), name if type(name) is str else str(name), *flags, when),
                )
            )
        return points

    def to_record(self) -> dict[str, str]:
        """The contract's record: every value a string."""
        return {
            "rp_id": str(self.rp_id),
            "rp_name": self.rp_name,
            "ivr_active": "yes" if self.ivr_active else "no",
            "chat_active": "yes" if self.chat_active else "no",
            "interaction_active": "yes" if self.interaction_active else "no",
            "crm_active": "yes" if self.crm_active else "no",
            "last_use": "" if self.last_use is None else f"{self.last_use:%Y-%m-%d %H:%M:%S}",
        }


def _problem(record: Mapping[str, Any], exc: Exception) -> str:
    """What is wrong with a record that cannot be typed, for one line."""
    rp_id = record.get("rp_id")
    if isinstance(exc, KeyError):
        return "a routing point record has no rp_id"
    try:
        int(rp_id)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return f"a routing point's rp_id is not a number: {str(rp_id)[:40]!r}"
    return f"routing point {str(rp_id)[:40]}: last_use is not a date and time: " + repr(
        str(record.get("last_use"))[:40]
    )


def _count(record: Mapping[str, Any], name: str) -> int:
    """A count of token_info's: absent or empty is 0; one that is no whole number is the
    service's mistake (it read as 0: "no budget left")."""
    value = record.get(name)
    if value is None or value == "":
        return 0
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    digits = text[1:] if text.startswith("-") else text
    if digits.isascii() and digits.isdigit() and len(digits) <= 18:
        return int(text)
    raise MalformedResponse(f"token_info's {name} is not a whole number: {str(value)[:40]!r}")


@dataclass(frozen=True, slots=True)
class TokenInfo:
    description: str
    token_limit: int
    token_use_today: int
    all_token_today: int
    available_consumption_options: int

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> TokenInfo:
        return cls(
            str(record.get("description", "")),
            _count(record, "token_limit"),
            _count(record, "token_use_today"),
            _count(record, "all_token_today"),
            _count(record, "available_consumption_options"),
        )


@dataclass(frozen=True, slots=True)
class Budget:
    """The daily budget as the last answer's RateLimit headers showed it."""

    limit: int | None
    remaining: int
    resets_in_s: int | None
    observed_at: datetime


@dataclass(slots=True)
class Page:
    """One consumption's worth of routing points."""

    records: list[dict[str, Any]]
    etag: str | None
    not_modified: bool = False
    next_url: str | None = None
    _points: list[RoutingPoint] | None = field(default=None, repr=False)

    @property
    def points(self) -> list[RoutingPoint]:
        if self._points is None:
            self._points = RoutingPoint.from_records(self.records)
        return self._points


class RoutingPointList(list[RoutingPoint]):
    """Every routing point, with the ETag to poll with next time.

    When the service answered 304 to `if_none_match`, the list is empty and
    `not_modified` is True: nothing changed since that tag, and nothing was spent.
    """

    etag: str | None = None
    not_modified: bool = False
