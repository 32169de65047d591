"""Small helpers for asyncio futures, shared by the server and the store."""

from __future__ import annotations

import asyncio
from typing import Any


def discard_outcome(future: asyncio.Future[Any]) -> None:
    """A done-callback for abandoned work: its result or error is of no use to anyone,
    and asyncio would otherwise log an exception that was never retrieved."""
    if not future.cancelled():
        future.exception()


def settle(waiting: asyncio.Future[None], error: BaseException | None) -> None:
    """End a future someone awaits for a commit: done, or failed with `error`. One whose
    waiter was cancelled meanwhile is left alone (it is done already)."""
    if waiting.done():
        return
    if error is None:
        waiting.set_result(None)
    else:
        waiting.set_exception(error)
