"""The embedded limits decide alike whether a call is admitted at once or through a wait.

`LocalLimits.admit_now` is `admit`'s decision written out for the hot path; here one
instance takes every call as the server does (at once, else through `admit`) and another
only through `admit`, over the same sequence of calls and releases.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import Engine

from routing_points.limits.backend import Outcome
from routing_points.limits.local import LocalLimits
from routing_points.store.sqlite import SqliteReader
from tests.support.limits import admit_request

pytestmark = pytest.mark.anyio

# Three tokens each: the first with a daily limit of its own, the third polled under a
# minimum interval; each side its own operation and tokens, so they share nothing.
AT_ONCE, WAITING = (1, (1, 2, 3)), (2, (11, 12, 13))


async def test_admitting_at_once_decides_as_admit_does(database_url: str, engine: Engine) -> None:
    reader = SqliteReader(Path(database_url.removeprefix("sqlite:///")))
    at_once, waiting = LocalLimits(reader), LocalLimits(reader)
    chosen = random.Random(20)
    held: dict[int, int] = Counter()
    outcomes: Counter[str] = Counter()
    now = 1_000.0
    try:
        for step in range(600):
            now += chosen.choice((0.0, 0.4, 1.5))
            which = chosen.randrange(3)
            if held[which] and chosen.random() < 0.4:
                held[which] -= 1
                at_once.release_now(AT_ONCE[1][which])
                waiting.release_now(WAITING[1][which])
                continue
            cost = chosen.choice((1, 1, 1, 0))
            decided = []
            for limits, (operation_id, tokens) in ((at_once, AT_ONCE), (waiting, WAITING)):
                request = admit_request(
                    tokens[which],
                    operation_id,
                    cost=cost,
                    now=now,
                    operation_limit=60,
                    token_limit=12 if which == 0 else None,
                    max_in_flight=2,
                    interval_key=f"{tokens[which]}:routing_points" if which == 2 else None,
                    min_interval_s=1.0 if which == 2 else 0,
                )
                taken = limits.admit_now(request) if limits is at_once else None
                if taken is None:
                    result = await limits.admit(request)
                    decided.append((result.outcome, result.token_used, result.operation_used))
                else:
                    decided.append((Outcome.ADMITTED, taken[0], taken[1]))
            assert decided[0] == decided[1], f"step {step}: {decided}"
            outcomes[decided[0][0].value] += 1
            if decided[0][0] is Outcome.ADMITTED:
                held[which] += 1
    finally:
        await reader.close()
    # Every kind of decision was taken, and each token used up what it could.
    assert set(outcomes) == {"admitted", "concurrency", "interval", "budget"}, outcomes
    assert outcomes["admitted"] > 100, outcomes
