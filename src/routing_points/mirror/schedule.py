"""When the mirror may call its upstream: the poll interval, the budget share, the back-off.

The upstream's budget is shared with everyone else who holds one of its tokens, so the
mirror spends at most `budget_share` of it per upstream day, counting every request it
sends (continuation pages, 304s and failures included, even where the upstream does not
charge them). A sync starts no sooner than one interval after the previous one started:
the interval is the requested one, raised to the upstream's advice (`X-Poll-Interval`)
and to what spreads the share evenly over a day. Failures wait longer, doubling up to
`max_backoff_s`; a refused budget waits for the upstream's reset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# The smallest daily budget there is (1 license x 1,000), when the upstream does not say.
SMALLEST_BUDGET = 1000
DAY_S = 86_400.0
# An upstream reset that moves later by more than this means a new upstream day began.
RESET_SLACK_S = 60.0


@dataclass(frozen=True, slots=True)
class Interval:
    seconds: float
    # Why it is longer than the requested interval ("" if it is not).
    why: str


@dataclass(slots=True)
class BudgetShare:
    """The mirror's own upstream requests in the upstream's current day."""

    share: float
    spent: int = 0
    # When the upstream's day ends (epoch seconds); None until a request was made.
    window_ends: float | None = None
    # The upstream token's daily limit, as token_info or RateLimit-Policy said.
    daily_budget: int | None = None

    @property
    def allowance(self) -> int:
        return max(1, math.floor(self.share * (self.daily_budget or SMALLEST_BUDGET)))

    def _roll(self, now: float) -> None:
        if self.window_ends is not None and now >= self.window_ends:
            self.spent, self.window_ends = 0, None

    def record(self, requests: int, now: float, resets_in_s: int | None) -> None:
        """Count requests just sent; `resets_in_s` is the upstream's word on its day's end."""
        self._roll(now)
        if resets_in_s is not None:
            ends = now + resets_in_s
            if self.window_ends is not None and ends > self.window_ends + RESET_SLACK_S:
                self.spent = 0  # the upstream's day turned while we waited
            self.window_ends = ends
        elif self.window_ends is None:
            self.window_ends = now + DAY_S
        self.spent += requests

    def wait_s(self, now: float, requests: int = 1) -> float:
        """0 if `requests` more fit in today's share, else the seconds to the upstream's reset."""
        self._roll(now)
        if self.spent + requests <= self.allowance or self.window_ends is None:
            return 0.0
        return max(0.0, self.window_ends - now)


@dataclass(slots=True)
class Schedule:
    every_s: float
    budget: BudgetShare
    max_backoff_s: float = 3600.0
    advised_s: int | None = None
    # Requests the last complete sync took (its continuation pages).
    requests_per_sync: int = 1
    _explained: str = field(default="", repr=False)

    def interval(self) -> Interval:
        seconds, reasons = self.every_s, []
        if self.advised_s is not None and seconds < self.advised_s:
            seconds = float(self.advised_s)
            reasons.append(f"the upstream advises {self.advised_s} s (X-Poll-Interval)")
        budget = self.budget
        floor = DAY_S * self.requests_per_sync / budget.allowance
        if seconds < floor:
            seconds = float(math.ceil(floor))
            reasons.append(
                f"{self.requests_per_sync} request(s) a sync must stay within "
                f"{budget.share * 100:g}% of a daily budget of "
                f"{budget.daily_budget or SMALLEST_BUDGET}"
            )
        return Interval(seconds, "; ".join(reasons))

    def explain(self) -> str | None:
        """The reason for a longer interval when it is new (to log once), else None."""
        why = self.interval().why
        if why == self._explained:
            return None
        self._explained = why
        return why

    def retry_s(self, failures: int) -> float:
        """The wait after `failures` failed syncs in a row: the interval, doubling."""
        interval = self.interval().seconds
        doubled: float = interval * 2.0 ** max(0, failures - 1)
        return min(doubled, max(interval, self.max_backoff_s))
