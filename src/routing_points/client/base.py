"""What `Client` and `AsyncClient` share: everything except how they wait and send.

The interpretation of answers lives here, with every quirk of the real service: `code`
as 200, "200", "0" or ""; `data` as a lone object; a 404 that only means "no records";
the non-JSON 403 of a maintenance window; a `msg` with odd spacing.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson

from routing_points import __version__, contract
from routing_points.client import errors
from routing_points.client.gate import MAX_IN_FLIGHT, TokenGate, gate_for
from routing_points.client.models import Budget, Page, TokenInfo

ENDPOINT = contract.ENDPOINT
SUCCESS_CODES = frozenset({200, "200", "0", "", 0})
_NO_RECORDS = re.compile(r"\b(no|0) records?\b.*\bfound\b", re.IGNORECASE)
_ERRORS_BY_MSG: tuple[tuple[str, type[errors.ContractError]], ...] = (
    (contract.MSG_MISSING_TOKEN, errors.MissingToken),
    (contract.MSG_INVALID_TOKEN, errors.InvalidToken),
    (contract.MSG_TOKEN_LIMIT_EXCEEDED, errors.QuotaExceeded),
    (contract.MSG_TOO_MANY_SIMULTANEOUS, errors.TooManySimultaneous),
    (contract.MSG_UNKNOWN_API, errors.UnknownApi),
    (contract.MSG_INVALID_PARAMETERS, errors.InvalidParameters),
)


def check_token(token: str) -> None:
    """A token is visible ASCII: one with another character (curly quotes or a space from
    a copy, an accent) could only be refused, and cannot even be sent as a header. The
    message names the character and where it is, never the token."""
    if len(token) > 1 and token[0] in "\"'<`" and token[-1] == {"<": ">"}.get(token[0], token[0]):
        raise errors.UsageError(f"the token is inside {token[0]}{token[-1]}: copy it without them")
    for position, char in enumerate(token, 1):
        if not (char.isascii() and char.isprintable() and not char.isspace()):
            raise errors.UsageError(
                f"the token cannot hold {char!r} (character {position}): "
                "a token is printable ASCII without spaces; was it copied with quotes?"
            )


def check_url(url: str) -> None:
    """A base URL httpx can parse (a port of letters would fail at the first request)."""
    try:
        httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise errors.UsageError(f"{url!r} is not a URL: {exc}") from None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential back-off with jitter; a `Retry-After` from the service is a floor."""

    max_retries: int = 4
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    # A Retry-After longer than this is not waited for: the error is raised instead.
    max_wait_s: float = 120.0

    def delay(self, attempt: int, retry_after_s: float | None, rng: random.Random) -> float | None:
        if attempt >= self.max_retries:
            return None
        backoff = min(self.backoff_cap_s, self.backoff_base_s * 2**attempt)
        jittered = rng.uniform(backoff / 2, backoff)
        if retry_after_s is None:
            return jittered
        if retry_after_s > self.max_wait_s:
            return None
        return retry_after_s + rng.uniform(0, self.backoff_base_s)


@dataclass(frozen=True, slots=True)
class Envelope:
    """A successful answer: its records (always a list), or a 304."""

    records: list[dict[str, Any]]
    not_modified: bool = False


def normalise_msg(msg: Any) -> str:
    return " ".join(str(msg or "").split())


# The longest Retry-After believed (a year): past it a date cannot even be computed (a
# 12-digit one was an OverflowError traceback), and no service means it.
MAX_RETRY_AFTER_S = 366 * 86_400


def retry_after_s(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # str.isdigit() is true of "²" too
        # Compared as text first: thousands of digits are more than int() reads.
        return float(MAX_RETRY_AFTER_S if len(value) > 9 else min(int(value), MAX_RETRY_AFTER_S))
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _structured_items(value: str) -> dict[str, dict[str, str]]:
    items: dict[str, dict[str, str]] = {}
    for member in value.split(","):
        name, *params = (part.strip() for part in member.split(";"))
        items[name.strip('"')] = dict(p.split("=", 1) for p in params if "=" in p)
    return items


def budget_from(response: httpx.Response) -> Budget | None:
    """The budget the IETF draft RateLimit headers show, if the service sends them."""
    state_header = response.headers.get("ratelimit")
    if not state_header:
        return None
    try:
        states = _structured_items(state_header)
        policies = _structured_items(response.headers.get("ratelimit-policy", ""))
        name = "daily" if "daily" in states else next(iter(states))
        remaining = min(int(state["r"]) for state in states.values())
        resets = states[name].get("t")
        limit = policies.get(name, {}).get("q")
        return Budget(
            limit=None if limit is None else int(limit),
            remaining=remaining,
            resets_in_s=None if resets is None else int(resets),
            observed_at=datetime.now(UTC),
        )
    except (ValueError, KeyError, StopIteration):
        return None


def _records(data: Any) -> list[dict[str, Any]]:
    if data is None or data == "":
        return []
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list):
        return [record for record in data if isinstance(record, dict)]
    raise ValueError("data is neither a list nor an object")


def interpret(response: httpx.Response) -> Envelope:
    """The answer's records, or the error it means."""
    request, status = response.request, response.status_code
    context: dict[str, Any] = {"request": request, "response": response}
    if status == 304:
        if "if-none-match" not in request.headers:
            # "Not modified" since no tag: it would read as an empty operation.
            raise errors.MalformedResponse(
                "HTTP 304 to a request that sent no If-None-Match", **context
            )
        return Envelope([], not_modified=True)
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, Mapping):
        if status == 403 or status >= 500:
            maintenance = status == 403
            raise errors.ServiceUnavailable(
                f"the service answered HTTP {status} without the API's JSON envelope"
                + (": it is probably in a maintenance window" if maintenance else ""),
                retryable=not maintenance,
                **context,
            )
        if 200 <= status < 300:
            raise errors.MalformedResponse(
                f"HTTP {status} without the API's JSON envelope", **context
            )
        raise errors.HTTPStatusError(f"unexpected HTTP {status}", **context)
    code, msg = body.get("code"), normalise_msg(body.get("msg"))
    if not isinstance(code, int | str | None):  # [1] could not even be looked up
        raise errors.MalformedResponse(
            f"the envelope's code is not a number: {code!r:.40}", **context
        )
    if 200 <= status < 300 and code in SUCCESS_CODES:
        try:
            return Envelope(_records(body.get("data")))
        except ValueError as exc:
            raise errors.MalformedResponse(str(exc), **context) from None
    if status == 404 and _NO_RECORDS.search(msg):
        return Envelope([])
    upper = msg.upper()
    for prefix, error_type in _ERRORS_BY_MSG:
        if upper.startswith(prefix):
            error = error_type(msg, code=code, error=body.get("error"), **context)
            if isinstance(error, errors.QuotaExceeded):
                wait = retry_after_s(response)
                if wait is not None:
                    error.reset_at = datetime.now(UTC) + timedelta(seconds=wait)
            raise error
    if status >= 500:
        raise errors.ServiceUnavailable(msg or f"HTTP {status}", **context)
    raise errors.ContractError(
        msg or f"HTTP {status}", code=code, error=body.get("error"), **context
    )


def undecodable(exc: httpx.DecodingError, request: httpx.Request) -> errors.MalformedResponse:
    """A body its Content-Encoding does not describe (gzip that is not gzip)."""
    return errors.MalformedResponse(
        f"the body does not decode as its Content-Encoding says ({exc})", request=request
    )


def transport_error(exc: httpx.TransportError, request: httpx.Request) -> errors.TransportError:
    kind = errors.Timeout if isinstance(exc, httpx.TimeoutException) else errors.TransportError
    cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    # Which address could not be reached: a wrong port or host is the usual mistake.
    return kind(f"{request.url.scheme}://{request.url.netloc.decode()}: {cause}", request=request)


@dataclass(slots=True)
class Followed:
    """What a walk through continuation pages has seen: its URLs, and the last rp_id."""

    urls: set[str] = field(default_factory=set)
    last_rp_id: int | None = None


def _rp_id_of(records: list[dict[str, Any]]) -> int | None:
    """The rp_id of the one record given, if it reads as one (typing the page says why
    not, later)."""
    try:
        return int(records[0]["rp_id"]) if records else None
    except (KeyError, TypeError, ValueError):
        return None


class BaseClient:
    def __init__(
        self,
        server: str,
        token: str,
        base_url: str | None,
        max_in_flight: int,
        retry: RetryPolicy | None,
    ) -> None:
        if not token or not token.strip():
            raise errors.UsageError("a token is required")
        check_token(token.strip())
        if not 1 <= max_in_flight <= MAX_IN_FLIGHT:
            raise errors.UsageError(
                f"max_in_flight must be 1 or 2 (the service allows {MAX_IN_FLIGHT} per token)"
            )
        self.server = server
        self.base_url = (base_url or f"https://wv{server}.wolkvox.com").rstrip("/")
        check_url(self.base_url)
        self.retry = retry if retry is not None else RetryPolicy()
        self.budget: Budget | None = None
        # The service's advised seconds between consumptions (X-Poll-Interval), if it says.
        self.poll_interval_s: int | None = None
        self._token = token.strip()
        self._gate: TokenGate = gate_for(self._token, max_in_flight)
        self._rng = random.Random()

    @property
    def remaining_budget(self) -> int | None:
        """What the last answer said is left of today's budget (None: not told)."""
        return None if self.budget is None else self.budget.remaining

    def _default_headers(self) -> dict[str, str]:
        return {
            "wolkvox-token": self._token,
            "wolkvox_server": self.server,
            "user-agent": f"routing-points/{__version__}",
            "accept": "application/json",
            # The 60,000-point answer is 11 MB as JSON, 0.7 MB gzipped; httpx decodes it.
            "accept-encoding": "gzip",
        }

    def _observe(self, response: httpx.Response) -> Envelope:
        budget = budget_from(response)
        if budget is not None:
            self.budget = budget
        advised = response.headers.get("x-poll-interval", "")
        if advised.isascii() and advised.isdigit() and len(advised) <= 9:
            self.poll_interval_s = int(advised)
        return interpret(response)

    def _retry_delay(self, attempt: int, error: errors.RoutingPointsError) -> float | None:
        if isinstance(error, errors.TransportError):
            return self.retry.delay(attempt, None, self._rng)
        retryable = isinstance(error, errors.TooManySimultaneous) or (
            isinstance(error, errors.ServiceUnavailable) and error.retryable
        )
        if not retryable:
            return None
        wait = None if error.response is None else retry_after_s(error.response)
        return self.retry.delay(attempt, wait, self._rng)

    @staticmethod
    def _next_url(response: httpx.Response) -> str | None:
        link = response.links.get("next", {}).get("url")
        if not link:
            return None
        here = response.url
        following = here.join(link)
        if (following.scheme, following.host, following.port) != (
            here.scheme,
            here.host,
            here.port,
        ):
            # The token goes with every request: a link elsewhere would hand it to another
            # server, or send it in the clear.
            raise errors.MalformedResponse(
                f"the continuation link leads to another server ({following.scheme}://"
                f"{following.netloc.decode()}): not followed",
                request=response.request,
                response=response,
            )
        if following == here:
            raise errors.MalformedResponse(
                "the continuation link points at itself",
                request=response.request,
                response=response,
            )
        return str(following)

    @staticmethod
    def _check_progress(followed: Followed, response: httpx.Response, page: Page) -> None:
        """A continuation must lead somewhere new, from a page that brought records past
        the last page's (the pages go up by rp_id, nothing repeated): links that go round,
        or pages that bring the same records again, would spend the budget for ever."""
        followed.urls.add(str(response.url))
        problem = None
        first, last = _rp_id_of(page.records[:1]), _rp_id_of(page.records[-1:])
        if followed.last_rp_id is not None and first is not None and first <= followed.last_rp_id:
            problem = "a continuation page repeats records of the page before"
        elif page.next_url is not None and page.next_url in followed.urls:
            problem = "the continuation links go round in a circle"
        elif page.next_url is not None and not page.records:
            problem = "a page without records links to another"
        if problem is not None:
            raise errors.MalformedResponse(problem, request=response.request, response=response)
        if last is not None:
            followed.last_rp_id = last

    def _page(self, response: httpx.Response, envelope: Envelope) -> Page:
        next_url = None if envelope.not_modified else self._next_url(response)
        return Page(envelope.records, response.headers.get("etag"), envelope.not_modified, next_url)

    @staticmethod
    def _token_info(response: httpx.Response, envelope: Envelope) -> TokenInfo:
        if not envelope.records:
            raise errors.MalformedResponse(
                "token_info answered no record", request=response.request, response=response
            )
        return TokenInfo.from_record(envelope.records[0])

    @staticmethod
    def _points_params(routing: int | None) -> dict[str, str]:
        params = {"api": contract.ROUTING_POINTS}
        if routing is not None:
            params["routing"] = str(routing)
        return params
