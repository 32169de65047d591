"""The limits' decisions, as the client sees them: budget headers and refusals.

Every answer to an authenticated request says what its operation (and token) may still
spend today, in the IETF draft `RateLimit-Policy` / `RateLimit` fields, with the vendor's
`X-Poll-Interval` advice; a refusal adds `Retry-After` and becomes the contract's error.
"""

from __future__ import annotations

from routing_points.limits.policy import Reason, Refusal, Usage
from routing_points.server.errors import (
    ApiError,
    PollTooSoon,
    RawHeaders,
    ServiceUnavailable,
    TokenLimitExceeded,
    TooManySimultaneous,
)
from routing_points.settings import Settings

DAY_WINDOW_S = 86_400
DEGRADED = (b"x-limits", b"degraded")


class RateLimitHeaders:
    def __init__(self, settings: Settings) -> None:
        self._poll = (b"x-poll-interval", str(settings.poll_interval_s).encode())
        self._policies: dict[tuple[int, int | None], tuple[bytes, bytes]] = {}

    def __call__(self, usage: Usage) -> RawHeaders:
        if not usage.counted:
            return [self._poll, DEGRADED] if usage.degraded else [self._poll]
        operation_limit, own_limit = usage.operation_limit, usage.own_limit
        policy = self._policies.get((operation_limit, own_limit))
        if policy is None:
            policy = self._policy(operation_limit, own_limit)
        operation_left = operation_limit - usage.operation_used
        if operation_left < 0:
            operation_left = 0
        # Bytes formatted at once: every answer carries this one, so no str to encode.
        if own_limit is None:
            state = b'"daily";r=%d;t=%d' % (operation_left, usage.reset_s)
        else:
            token_left = max(0, min(usage.token_limit - usage.token_used, operation_left))
            state = b'"daily";r=%d;t=%d, "token";r=%d;t=%d' % (
                operation_left,
                usage.reset_s,
                token_left,
                usage.reset_s,
            )
        return [self._poll, policy, (b"ratelimit", state)]

    def _policy(self, operation_limit: int, own_limit: int | None) -> tuple[bytes, bytes]:
        """RateLimit-Policy: the same few values for every call, so built once each."""
        key = (operation_limit, own_limit)
        header = self._policies.get(key)
        if header is None:
            policy = f'"daily";q={operation_limit};w={DAY_WINDOW_S}'
            if own_limit is not None:
                policy += f', "token";q={own_limit};w={DAY_WINDOW_S}'
            header = self._policies[key] = (b"ratelimit-policy", policy.encode())
        return header

    def refusal(self, refusal: Refusal) -> ApiError:
        """The contract's error for a refusal, with the headers that let a client plan."""
        headers = [] if refusal.usage is None else self(refusal.usage)
        if refusal.retry_after_s is not None:
            headers.append((b"retry-after", str(refusal.retry_after_s).encode()))
        match refusal.reason:
            case Reason.CONCURRENCY:
                return TooManySimultaneous(int(refusal.limit), headers=headers)
            case Reason.INTERVAL:
                return PollTooSoon(refusal.limit, headers=headers)
            case Reason.RECLAIMING:
                return ServiceUnavailable(
                    "A SLOT HELD BY A STOPPED SERVER IS BEING RECLAIMED", headers=headers
                )
            case Reason.RECOVERING:
                return ServiceUnavailable(
                    "THE LIMITS SERVICE IS RECOVERING THE SLOTS OF RUNNING CALLS", headers=headers
                )
            case Reason.UNAVAILABLE:
                return ServiceUnavailable("THE LIMITS SERVICE IS UNAVAILABLE", headers=headers)
            case Reason.BUDGET:
                return TokenLimitExceeded(headers=headers)
