"""Delivering change events to a webhook, in order, with none lost while it is down.

Events wait in the history until the webhook answers 2xx for them. Each delivery POSTs
`{"events": [...]}` with up to `batch` events in id order, retrying a few times with
back-off; when the webhook stays down the events simply wait for the next cycle. Delivery
is at least once: a receiver can drop repeats by event `id`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import httpx

from routing_points.watch.history import History

logger = logging.getLogger("routing_points.watch")


class WebhookSender:
    def __init__(
        self,
        url: str,
        history: History,
        *,
        batch: int = 100,
        attempts: int = 3,
        backoff_s: float = 0.5,
        timeout_s: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url
        self.history = history
        self.batch = batch
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._sleep = sleep
        self._http = httpx.Client(timeout=timeout_s, transport=transport)

    def close(self) -> None:
        self._http.close()

    def deliver(self) -> int:
        """Send every waiting event, oldest first; stop at the first batch that fails."""
        delivered = 0
        while events := self.history.undelivered(self.batch):
            if not self._post({"events": [event.as_dict() for event in events]}):
                break
            self.history.mark_delivered([event.id for event in events], time.time())
            delivered += len(events)
        return delivered

    def _post(self, body: dict[str, object]) -> bool:
        for attempt in range(self.attempts):
            try:
                response = self._http.post(self.url, json=body)
                if response.is_success:
                    return True
                problem = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            logger.warning("webhook delivery failed (attempt %d): %s", attempt + 1, problem)
            if attempt + 1 < self.attempts:
                self._sleep(self.backoff_s * 2**attempt)
        return False
