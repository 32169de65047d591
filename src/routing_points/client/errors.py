"""Every way a call can fail, kept apart so callers can react to each::

    RoutingPointsError
    ├── UsageError                 the SDK was misused (e.g. max_in_flight=3); no request made
    ├── TransportError             no HTTP answer: connection refused or reset, timeout
    │   └── Timeout
    └── ResponseError              an HTTP answer that is not a success
        ├── HTTPStatusError        a status the contract does not explain
        │   └── ServiceUnavailable 5xx, or the vendor's non-JSON 403 of a maintenance window
        ├── MalformedResponse      a 2xx whose body is not the contract's envelope
        └── ContractError          the contract's error envelope, with its code and msg
            ├── MissingToken       401 PLEASE ENTER THE WOLKVOX-TOKEN
            ├── InvalidToken       403 PLEASE VALIDATE TOKEN
            ├── UnknownApi         400 THE API YOU WANT TO CONSULT DOES NOT EXIST
            ├── InvalidParameters  400 SOME PARAMETERS ARE REQUIRED
            ├── QuotaExceeded      403 TOKEN LIMIT EXCEEDED (never retried; carries reset_at)
            └── TooManySimultaneous 403 EXCEEDS THE LIMIT OF SIMULTANEOUS REQUESTS PER TOKEN

Every error carries `request` and `response` (None where there was none).
"""

from __future__ import annotations

from datetime import datetime

import httpx


class RoutingPointsError(Exception):
    def __init__(
        self,
        message: str,
        *,
        request: httpx.Request | None = None,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(message)
        self.request = request
        self.response = response


class UsageError(RoutingPointsError, ValueError):
    pass


class TransportError(RoutingPointsError):
    pass


class Timeout(TransportError):
    pass


class ResponseError(RoutingPointsError):
    @property
    def status_code(self) -> int | None:
        return None if self.response is None else self.response.status_code


class HTTPStatusError(ResponseError):
    pass


class ServiceUnavailable(HTTPStatusError):
    """Retried when it may pass soon (a 5xx); not during a maintenance window."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        request: httpx.Request | None = None,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(message, request=request, response=response)
        self.retryable = retryable


class MalformedResponse(ResponseError):
    pass


class ContractError(ResponseError):
    """The service answered with the contract's error envelope."""

    def __init__(
        self,
        msg: str,
        *,
        code: int | str | None = None,
        error: str | None = None,
        request: httpx.Request | None = None,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(msg, request=request, response=response)
        self.msg = msg
        self.code = code
        self.error = error


class MissingToken(ContractError):
    pass


class InvalidToken(ContractError):
    pass


class UnknownApi(ContractError):
    pass


class InvalidParameters(ContractError):
    pass


class QuotaExceeded(ContractError):
    """The daily budget is spent. `reset_at` is when it comes back, if the service said."""

    reset_at: datetime | None = None


class TooManySimultaneous(ContractError):
    pass
