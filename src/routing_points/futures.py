"""Small helpers for asyncio futures, shared by the server and the store."""

from __future__ import annotations

import asyncio
from typing import Any


def discard_outcome(future: asyncio.Future[Any]) -> None:
    """A done-callback for abandoned work: its result or error is of no use to anyone,
    and asyncio would otherwise log an exception that was never retrieved."""
    if not future.cancelled():
        future.exception()
