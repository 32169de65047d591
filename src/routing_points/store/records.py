"""Validation of operator and API input into store values, with messages that name the field."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import orjson

from routing_points import contract

NOMENCLATURE = re.compile(r"^[0-9]{4}$")
FLAG_FIELDS = contract.FLAG_FIELDS
POINT_FIELDS = contract.FIELDS
LAST_USE_FORMAT = "%Y-%m-%d %H:%M:%S"
MAX_RP_ID = 2**63 - 1  # PostgreSQL's BIGINT
# A contact center's seats, far past any real one: the daily budget (x 1,000 by default)
# and every count stay well inside the store's integers and Redis's exact numbers.
MAX_LICENSES = 100_000
MAX_DAILY_LIMIT = 1_000_000_000
# Instants the store keeps and every time zone can render: 1970 to the end of 9998.
MIN_EPOCH, MAX_EPOCH = 0, 253_370_764_799


class InvalidValue(ValueError):
    """A value that cannot go into the store; the message names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


# The most of a refused value a message echoes: a 10,000-element list is not repeated back.
SHOWN_CHARS = 40


def shown(value: Any) -> str:
    """A refused value as its sender wrote it: JSON's null, true and false by their names
    (an upload is JSON), anything else quoted, and cut short."""
    if value is None or isinstance(value, bool):
        return "null" if value is None else str(value).lower()
    try:
        # JSON-style throughout: null inside a list said None.
        text = orjson.dumps(value).decode() if isinstance(value, dict | list) else repr(value)
    except (RecursionError, orjson.JSONEncodeError):  # nested a thousand deep
        return "a deeply nested value"
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def nomenclature(value: str) -> str:
    if not NOMENCLATURE.match(value):
        raise InvalidValue(
            "server", f"{shown(value)} is not a server nomenclature of exactly 4 digits"
        )
    return value


def licenses(value: int) -> int:
    if value < 1:
        raise InvalidValue("licenses", f"must be at least 1, got {value}")
    if value > MAX_LICENSES:
        raise InvalidValue("licenses", f"must be at most {MAX_LICENSES}, got {value}")
    return value


def daily_limit(value: int | None) -> int | None:
    """A token's own daily limit (None: the operation's budget alone)."""
    if value is not None and not 1 <= value <= MAX_DAILY_LIMIT:
        bound = "at least 1" if value < 1 else f"at most {MAX_DAILY_LIMIT}"
        raise InvalidValue("daily limit", f"must be {bound}, got {value}")
    return value


def timezone(value: str) -> str:
    try:
        if value in available_timezones() or value == "UTC":
            ZoneInfo(value)
            return value
    except (ZoneInfoNotFoundError, ValueError):
        pass
    raise InvalidValue("timezone", f"{shown(value)} is not a known IANA time zone")


def is_rp_id(number: int) -> bool:
    """The one rule for an rp_id: a positive integer that fits a BIGINT."""
    return 0 < number <= MAX_RP_ID


def digits(text: str) -> bool:
    """Whether `int()` reads `text` as a whole number a BIGINT can hold the length of:
    ASCII digits only (`str.isdigit()` is true of "²", which `int()` refuses), at most 19
    (`int()` refuses thousands of digits with a ValueError)."""
    return text.isascii() and text.isdigit() and len(text) <= 19


def id_in_text(text: str, *, minimum: int = 1) -> int | None:
    """The id a query or path gives, or None: digits for `minimum` to MAX_RP_ID (`routing`
    and `after` may be 0, an rp_id may not)."""
    if digits(text):
        number = int(text)
        if minimum <= number <= MAX_RP_ID:
            return number
    return None


def rp_id(value: Any) -> int:
    if isinstance(value, bool):
        raise InvalidValue("rp_id", "must be a positive integer")
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON's 101.0 is the integer 101
    if isinstance(value, str):
        text = value.strip()
        if not digits(text):
            raise InvalidValue("rp_id", f"{shown(value)} is not a positive integer")
        value = int(text)
    if not isinstance(value, int) or not is_rp_id(value):
        raise InvalidValue("rp_id", f"{shown(value)} is not a positive integer")
    return value


def rp_name(value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 255 or not value.strip():
        raise InvalidValue("rp_name", "must be text of 1 to 255 characters")
    if "\x00" in value:
        raise InvalidValue("rp_name", "must not contain NUL characters")
    return value


def instant(field: str, epoch: int) -> int:
    if not MIN_EPOCH <= epoch <= MAX_EPOCH:
        raise InvalidValue(field, "must be between 1970 and 9998")
    return epoch


def flag(field: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("yes", "no"):
        return value.strip().lower() == "yes"
    raise InvalidValue(field, f"{shown(value)} is not yes or no")


def last_use(value: Any, zone: ZoneInfo) -> int | None:
    """Local wall time as the contract writes it -> epoch seconds; "" or None is never used."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidValue("last_use", f"{shown(value)} is not YYYY-MM-DD HH:MM:SS")
    try:
        local = datetime.strptime(value.strip(), LAST_USE_FORMAT)
    except ValueError:
        raise InvalidValue("last_use", f"{shown(value)} is not YYYY-MM-DD HH:MM:SS") from None
    return instant("last_use", int(local.replace(tzinfo=zone).timestamp()))


@dataclass(frozen=True, slots=True)
class PointChange:
    """One routing point to upsert: only the fields that were given are written."""

    rp_id: int
    values: dict[str, Any]


def point_change(record: Any, zone: ZoneInfo, *, require_name: bool) -> PointChange:
    """Validate one record with the contract's field names (unknown fields are refused)."""
    if not isinstance(record, dict):
        raise InvalidValue("record", "must be an object with the contract's fields")
    unknown = sorted(set(record) - set(POINT_FIELDS))
    if unknown:
        raise InvalidValue(unknown[0], "is not a routing point field")
    if "rp_id" not in record:
        raise InvalidValue("rp_id", "is required")
    values: dict[str, Any] = {}
    if "rp_name" in record:
        values["rp_name"] = rp_name(record["rp_name"])
    elif require_name:
        raise InvalidValue("rp_name", "is required")
    for field in FLAG_FIELDS:
        if field in record:
            values[field] = flag(field, record[field])
    if "last_use" in record:
        values["last_use_at"] = last_use(record["last_use"], zone)
    return PointChange(rp_id(record["rp_id"]), values)
