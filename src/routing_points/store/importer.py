"""Reading routing points from an operator's file: CSV or JSON, with the contract's fields.

JSON is a list of records, or a whole API answer (`{"data": [...]}`), so the output of
one server imports into another. CSV has a header row with the field names. Every bad
record is reported with its place (CSV: the line as an editor numbers it, the header
being line 1; JSON: the record's position), so one run finds them all.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import Engine, select

from routing_points.store import records as values
from routing_points.store.errors import Invalid
from routing_points.store.points import already_stored
from routing_points.store.schema import routing_points
from routing_points.store.tenants import operation_row

# Problems listed one by one; beyond this many, only their number.
MAX_REPORTED = 20


@dataclass(slots=True)
class PointFile:
    """The records of a file, where each one starts, and what is wrong with them."""

    unit: str  # "line" (CSV) or "record" (JSON)
    records: list[dict[str, Any]] = field(default_factory=list)
    places: list[int] = field(default_factory=list)
    # (place, what is wrong), for the records that could not even be read.
    problems: list[tuple[int, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ImportCheck:
    problems: list[str]
    new: int
    updated: int
    # Records that would change nothing: every field they give is as stored.
    unchanged: int = 0

    def summary(self) -> str:
        counts = f"{self.new} new, {self.updated} updated"
        return f"{counts}, {self.unchanged} unchanged" if self.unchanged else counts


def read_point_file(path: Path) -> PointFile:
    """The file's records; Invalid when it cannot be read as records at all."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise Invalid(f"{path}: cannot be read ({exc.strerror})") from None
    return read_upload(raw, path)


def read_upload(raw: bytes, name: str | Path) -> PointFile:
    """A file's records from its bytes: `points import`'s file, or the console's upload,
    read alike (the same checks, places and messages). JSON by its name or its first
    character, else CSV."""
    text_start = raw.lstrip()[:1]
    if not text_start:
        raise Invalid(f"{name}: holds no records")
    if str(name).lower().endswith(".json") or text_start in (b"[", b"{"):
        found = _json_records(raw, name)
    else:
        found = _csv_records(raw, name)
    if not found.records and not found.problems:
        raise Invalid(f"{name}: holds no records")
    return found


def read_records(path: Path) -> list[dict[str, Any]]:
    """The file's records, or Invalid naming the first problem."""
    found = read_point_file(path)
    if found.problems:
        place, problem = found.problems[0]
        raise Invalid(f"{path}: {found.unit} {place}: {problem}")
    return found.records


def _json_records(raw: bytes, path: Path | str) -> PointFile:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Invalid(f"{path}: malformed JSON ({exc})") from None
    if isinstance(document, dict):
        document = document.get("data", [document]) if "rp_id" not in document else [document]
    if not isinstance(document, list):
        raise Invalid(f"{path}: expected a list of routing point records")
    found = PointFile("record")
    for index, record in enumerate(document, start=1):
        if isinstance(record, dict):
            found.records.append(record)
            found.places.append(index)
        else:
            found.problems.append((index, "expected an object with the contract's fields"))
    return found


def _csv_records(raw: bytes, path: Path | str) -> PointFile:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Invalid(f"{path}: is not UTF-8 text") from None
    # Strict: a quote left open at the end was read as a name holding a line break.
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        raise _unreadable(path, 1, exc) from None
    if not header or "rp_id" not in header:
        raise Invalid(f"{path}: the CSV header row must name rp_id and the other fields")
    twice = sorted({name for name in header if header.count(name) > 1})
    if twice:  # the last column of a name would win unseen
        raise Invalid(f"{path}: the CSV header row names {', '.join(twice)} more than once")
    unknown = [name for name in header if name not in values.POINT_FIELDS]
    if unknown:  # the header's mistake, said once: not once per record, from line 2 on
        named = ", ".join(values.shown(name) for name in unknown)
        verb = (
            "is not a routing point field" if len(unknown) == 1 else "are not routing point fields"
        )
        raise Invalid(f"{path}: line 1: {named} {verb}")
    found = PointFile("line")
    start = reader.line_num + 1  # a quoted field may span lines: a record starts after the last
    try:
        for row in reader:
            place, start = start, reader.line_num + 1
            if None in row or any(value is None for value in row.values()):
                found.problems.append((place, "has a different number of fields than the header"))
                continue
            found.records.append(row)
            found.places.append(place)
    except csv.Error as exc:
        raise _unreadable(path, start, exc) from None
    return found


def _unreadable(path: Path | str, line: int, exc: csv.Error) -> Invalid:
    """A record the csv module cannot read at all: a quote left open, text after a closing
    quote, a field past the module's limit."""
    said = str(exc)
    if "field limit" in said:
        said = f"a field is longer than {csv.field_size_limit():,} characters"
    elif "unexpected end of data" in said:
        said = 'a quoted field is not closed (a " is missing)'
    elif "expected after" in said:
        said = "a quoted field is followed by more text before the next comma"
    return Invalid(f"{path}: line {line}: {said}")


def check_import(engine: Engine, nomenclature: str, found: PointFile) -> ImportCheck:
    """Validate every record against the operation, and count what an import would do."""
    with engine.connect() as conn:
        operation = operation_row(conn, nomenclature)
        existing = {
            row.rp_id: row._mapping
            for row in conn.execute(
                select(routing_points).where(routing_points.c.operation_id == operation.id)
            )
        }
    zone = ZoneInfo(operation.timezone)
    problems = list(found.problems)
    first_seen: dict[int, int] = {}
    unchanged = 0
    for place, record in zip(found.places, found.records, strict=True):
        try:
            change = values.point_change(record, zone, require_name=False)
        except values.InvalidValue as exc:
            problems.append((place, str(exc)))
            continue
        if change.rp_id in first_seen:
            first = f"{found.unit} {first_seen[change.rp_id]}"
            problems.append((place, f"rp_id {change.rp_id} appears twice (first at {first})"))
            continue
        first_seen[change.rp_id] = place
        stored = existing.get(change.rp_id)
        if stored is None and "rp_name" not in change.values:
            problems.append((place, f"rp_id {change.rp_id} is new, so it needs an rp_name"))
        elif already_stored(stored, change.values):
            unchanged += 1
    new = len(first_seen.keys() - existing.keys())
    listed = [f"{found.unit} {place}: {problem}" for place, problem in sorted(problems)]
    return ImportCheck(listed, new, len(first_seen) - new - unchanged, unchanged)


def problem_report(problems: list[str]) -> list[str]:
    """The problems to show: the first MAX_REPORTED, then how many more there are."""
    shown = problems[:MAX_REPORTED]
    if len(problems) > MAX_REPORTED:
        shown.append(f"and {len(problems) - MAX_REPORTED} more")
    return shown
