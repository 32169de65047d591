"""One log line per request, with a request id the client also gets as `X-Request-ID`.

Pure ASGI, so it costs a closure and a log call, not a response copy. The path is logged
as the client sent it (`raw_path`, still percent-encoded), so `%0a` cannot start a forged
line, and every byte outside printable ASCII is escaped as `\\xNN`. Token-like query
parameters (a client that puts its `wolkvox-token` in the URL) are redacted; headers, and
so the `wolkvox-token`, are never logged. With JSON lines on, the fields ride on the
record (`extra`) and the formatter writes them as one JSON object.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from urllib.parse import unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("routing_points.access")

_SAFE_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{1,64}$")
# Anything a terminal or a line-based reader could take for structure: controls, spaces,
# non-ASCII bytes, and the backslash itself (so an escape in the line is always ours).
_UNSAFE = re.compile(r"[^\x21-\x5b\x5d-\x7e]")
_SECRET_WORDS = ("token", "secret", "passw", "key", "auth")
REDACTED = "REDACTED"


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    return "\\\\" if char == "\\" else f"\\x{ord(char):02x}"


def escape(raw: bytes) -> str:
    """Bytes as one unambiguous, printable token: `\\xNN` for anything unsafe."""
    text = raw.decode("latin-1")
    return _UNSAFE.sub(_escape_char, text) if _UNSAFE.search(text) else text


def _is_secret(name: str) -> bool:
    lowered = unquote(name).lower()
    return any(word in lowered for word in _SECRET_WORDS)


def redact_query(query: bytes) -> bytes:
    """The query string with the value of every token-like parameter replaced."""
    lowered = query.lower()
    if b"%" not in query and not any(word.encode() in lowered for word in _SECRET_WORDS):
        return query  # the common case: nothing to look at twice
    parts = []
    for part in query.split(b"&"):
        name, equals, _value = part.partition(b"=")
        if equals and _is_secret(name.decode("latin-1")):
            part = name + b"=" + REDACTED.encode()
        parts.append(part)
    return b"&".join(parts)


def request_target(scope: Scope) -> str:
    """The path and query as sent, redacted and escaped: safe to write on one line."""
    raw_path = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
    raw_path = raw_path.partition(b"?")[0]  # some servers (httpx's ASGI transport) include it
    query = scope.get("query_string", b"")
    return escape(raw_path + (b"?" + redact_query(query) if query else b""))


def _incoming_request_id(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            return value if _SAFE_REQUEST_ID.match(value) else None
    return None


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _incoming_request_id(scope) or secrets.token_hex(8).encode()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if logger.isEnabledFor(logging.INFO):
                method = escape(scope["method"].encode("latin-1", "replace"))
                target = request_target(scope)
                elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
                logger.info(
                    "%s %s %d %.1fms id=%s",
                    method,
                    target,
                    status,
                    elapsed_ms,
                    request_id.decode(),
                    extra={
                        "access": {
                            "method": method,
                            "target": target,
                            "status": status,
                            "ms": elapsed_ms,
                            "request_id": request_id.decode(),
                        }
                    },
                )
