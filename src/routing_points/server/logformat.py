"""How the server logs: text lines with a time stamp, or JSON lines for every log record
(`ROUTING_POINTS_LOG_FORMAT=json`).

One JSON object per line, so log shippers need no parsing rules and no field can break
out of its line: JSON escapes every control character. The access log's fields come as
their own keys (`access`), not only inside the message.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson


class JsonLinesFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            entry.update(access)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str, log_format: str = "text") -> None:
    """The root logger's one handler, in every process that serves: the server, and each
    of its workers (fresh interpreters, which would otherwise log nothing under WARNING,
    the access log included, and that bare)."""
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    if log_format == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonLinesFormatter())
    # Alembic's INFO lines ("Context impl SQLiteImpl.") say nothing to an operator at every
    # start: they are shown with DEBUG only.
    logging.getLogger("alembic").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
