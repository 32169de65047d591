"""Reading routing points from an operator's file: CSV or JSON, with the contract's fields.

JSON is a list of records, or a whole API answer (`{"data": [...]}`), so the output of
one server imports into another. CSV has a header row with the field names. Problems
name the record (and for CSV the line) so the operator can find it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from routing_points.store.admin import Invalid


def read_records(path: Path) -> list[dict[str, Any]]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise Invalid(f"{path}: cannot be read ({exc.strerror})") from None
    text_start = raw.lstrip()[:1]
    if not text_start:
        raise Invalid(f"{path}: holds no records")
    if path.suffix.lower() == ".json" or text_start in (b"[", b"{"):
        records = _json_records(raw, path)
    else:
        records = list(_csv_records(raw, path))
    if not records:
        raise Invalid(f"{path}: holds no records")
    return records


def _json_records(raw: bytes, path: Path) -> list[dict[str, Any]]:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Invalid(f"{path}: malformed JSON ({exc})") from None
    if isinstance(document, dict):
        document = document.get("data", [document]) if "rp_id" not in document else [document]
    if not isinstance(document, list):
        raise Invalid(f"{path}: expected a list of routing point records")
    for index, record in enumerate(document, start=1):
        if not isinstance(record, dict):
            raise Invalid(f"{path}: record {index}: expected an object with the contract's fields")
    return document


def _csv_records(raw: bytes, path: Path) -> Iterator[dict[str, Any]]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Invalid(f"{path}: is not UTF-8 text") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames or "rp_id" not in reader.fieldnames:
        raise Invalid(f"{path}: the CSV header row must name rp_id and the other fields")
    for index, row in enumerate(reader, start=1):
        if None in row or any(value is None for value in row.values()):
            raise Invalid(
                f"{path}: record {index} (line {reader.line_num}): "
                "has a different number of fields than the header"
            )
        yield row
