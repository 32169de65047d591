"""Every refusal the server answers, each with its HTTP status and the contract's `msg`.

They become the contract's envelope (`{"code", "error", "msg", "data": null}`) in one
place, `envelope_response`, and nowhere else; every envelope, success or refusal, is
built by `envelope_body`. Their `msg` strings are `contract.py`'s::

    ApiError
    ├── BadRequest (400)                BAD REQUEST
    │   ├── UnknownApi                  THE API YOU WANT TO CONSULT DOES NOT EXIST
    │   ├── InvalidParameters           SOME PARAMETERS ARE REQUIRED[: detail]
    │   └── ResultTooLarge              THE RESULT EXCEEDS THE SIZE LIMIT (L6)
    ├── MissingToken (401)              PLEASE ENTER THE WOLKVOX-TOKEN
    ├── Forbidden (403)
    │   ├── InvalidToken                PLEASE VALIDATE TOKEN
    │   ├── TokenLimitExceeded          TOKEN LIMIT EXCEEDED (L9)
    │   ├── TooManySimultaneous         EXCEEDS THE LIMIT OF SIMULTANEOUS ... (L8)
    │   ├── PollTooSoon                 the optional minimum interval (L2)
│   ├── AddressNotAllowed           the caller is outside the operation's IP allow-list
    │   └── InsufficientScope           an admin endpoint with a read token
    ├── NotFound (404), MethodNotAllowed (405), Conflict (409)
    ├── PayloadTooLarge (413)           uploads over L4, or over the body size cap
    ├── InternalError (500)
    ├── ServiceUnavailable (503)        a dependency is down, or sandbox fault injection
    └── ConsumptionTimeout (504)        the time limit (L7)
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import orjson
from starlette.responses import Response

from routing_points import contract
from routing_points.store.reader import StoreUnavailable

logger = logging.getLogger("routing_points.server")

RawHeaders = list[tuple[bytes, bytes]]


class ApiError(Exception):
    status: int = 500
    msg: str = contract.MSG_INTERNAL_ERROR
    # Why the limits refused, for metrics; None for errors that are not limit refusals.
    refusal: str | None = None

    def __init__(self, msg: str | None = None, *, headers: RawHeaders | None = None) -> None:
        if msg is not None:
            self.msg = msg
        super().__init__(self.msg)
        self.headers: RawHeaders = headers if headers is not None else []

    @property
    def error(self) -> str:
        return HTTPStatus(self.status).phrase.upper()


class BadRequest(ApiError):
    status = 400
    msg = contract.MSG_BAD_REQUEST


class UnknownApi(BadRequest):
    msg = contract.MSG_UNKNOWN_API


class InvalidParameters(BadRequest):
    msg = contract.MSG_INVALID_PARAMETERS

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(f"{self.msg}: {detail}" if detail else None)


class ResultTooLarge(BadRequest):
    refusal = "size"

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(contract.result_too_large(_size(limit_bytes)))


class MissingToken(ApiError):
    status = 401
    msg = contract.MSG_MISSING_TOKEN


class Forbidden(ApiError):
    status = 403
    msg = contract.MSG_FORBIDDEN


class InvalidToken(Forbidden):
    msg = contract.MSG_INVALID_TOKEN


class TokenLimitExceeded(Forbidden):
    msg = contract.MSG_TOKEN_LIMIT_EXCEEDED
    refusal = "budget"


class TooManySimultaneous(Forbidden):
    refusal = "concurrency"

    def __init__(self, limit: int, *, headers: RawHeaders | None = None) -> None:
        super().__init__(contract.too_many_simultaneous(limit), headers=headers)


class PollTooSoon(Forbidden):
    refusal = "interval"

    def __init__(self, interval_s: float, *, headers: RawHeaders | None = None) -> None:
        super().__init__(contract.poll_too_soon(interval_s), headers=headers)


class AddressNotAllowed(Forbidden):
    """The operation has an IP allow-list and the caller is outside it; costs nothing."""

    refusal = "address"

    def __init__(self, address: str) -> None:
        super().__init__(
            f"THE ADDRESS {address or 'UNKNOWN'} IS NOT IN THE OPERATION'S IP ALLOW-LIST"
        )


class InsufficientScope(Forbidden):
    msg = contract.MSG_INSUFFICIENT_SCOPE


class NotFound(ApiError):
    status = 404
    msg = contract.MSG_NOT_FOUND


class MethodNotAllowed(ApiError):
    status = 405
    msg = contract.MSG_METHOD_NOT_ALLOWED


class Conflict(ApiError):
    status = 409
    msg = contract.MSG_CONFLICT


class PayloadTooLarge(ApiError):
    status = 413
    msg = contract.MSG_UPLOAD_TOO_LARGE
    refusal = "upload"


class InternalError(ApiError):
    status = 500
    msg = contract.MSG_INTERNAL_ERROR


class ServiceUnavailable(ApiError):
    status = 503
    msg = contract.MSG_SERVICE_UNAVAILABLE


class ConsumptionTimeout(ApiError):
    status = 504
    refusal = "time"

    def __init__(self, limit_s: float) -> None:
        super().__init__(contract.consumption_timeout(limit_s))


def _size(n: int) -> str:
    if n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MB"
    return f"{n} BYTES"


def envelope_body(code: int, error: str | None, msg: str, data: Any = None) -> bytes:
    """The contract's envelope, the one place it is built: success, refusal or readiness."""
    return orjson.dumps({"code": code, "error": error, "msg": msg, "data": data})


def encoded_envelope_body(
    code: int, error: str | None, msg: str, *data: bytes | memoryview
) -> bytes:
    """The same envelope around `data` encoded already (its pieces, joined in one copy):
    the very bytes `envelope_body` makes."""
    head = orjson.dumps({"code": code, "error": error, "msg": msg, "data": None})
    return b"".join((head[: -len(b"null}")], *data, b"}"))


def envelope(status: int, msg: str, data: Any, *, error: str | None = None) -> Response:
    """An answer in the envelope: HTTP status = code."""
    return Response(
        envelope_body(status, error, msg, data), status_code=status, media_type="application/json"
    )


def envelope_response(exc: ApiError) -> Response:
    """The contract's error envelope: HTTP status = code, data null."""
    response = envelope(exc.status, exc.msg, None, error=exc.error)
    response.raw_headers.extend(exc.headers)
    return response


def error_response(exc: Exception) -> Response | None:
    """The envelope for an error the API answers, or None for a bug (which is a 500)."""
    if isinstance(exc, ApiError):
        return envelope_response(exc)
    if isinstance(exc, StoreUnavailable):
        logger.debug("store unavailable: %s", exc)  # the store logs the outage once
        return envelope_response(ServiceUnavailable(contract.MSG_STORE_UNAVAILABLE))
    return None
