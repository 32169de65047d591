"""`AsyncClient`: the asyncio SDK, safe to share between tasks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import TracebackType

import httpx

from routing_points import contract
from routing_points.client import errors
from routing_points.client.base import (
    ENDPOINT,
    BaseClient,
    Envelope,
    Followed,
    RetryPolicy,
    transport_error,
    undecodable,
)
from routing_points.client.models import Page, RoutingPointList, TokenInfo


class AsyncClient(BaseClient):
    """The same as `Client`, awaited.

    >>> async with AsyncClient(server="0032", token=token) as client:
    ...     points = await client.routing_points()
    """

    def __init__(
        self,
        server: str,
        token: str,
        base_url: str | None = None,
        timeout: float = 90.0,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        max_in_flight: int = 1,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(server, token, base_url, max_in_flight, retry)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers=self._default_headers(),
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def routing_points(
        self, routing: int | None = None, *, if_none_match: str | None = None
    ) -> RoutingPointList:
        """Every routing point (following continuations), or `not_modified` after a 304."""
        result = RoutingPointList()
        first = True
        async for page in self.iter_routing_points(routing, if_none_match=if_none_match):
            if first:
                result.etag, result.not_modified, first = page.etag, page.not_modified, False
            result.extend(page.points)
        return result

    async def iter_routing_points(
        self, routing: int | None = None, *, if_none_match: str | None = None
    ) -> AsyncIterator[Page]:
        """Page by page, one consumption each, as the service's continuation links lead."""
        url: str | None = ENDPOINT
        params: dict[str, str] | None = self._points_params(routing)
        extra = {"if-none-match": if_none_match} if if_none_match else {}
        followed = Followed()
        while url is not None:
            response, envelope = await self._call(url, params, extra)
            page = self._page(response, envelope)
            self._check_progress(followed, response, page)
            yield page
            url, params, extra = page.next_url, None, {}

    async def token_info(self) -> TokenInfo:
        """The calling token's counters. The service charges this call too."""
        response, envelope = await self._call(ENDPOINT, {"api": contract.TOKEN_INFO}, {})
        return self._token_info(response, envelope)

    async def _call(
        self, url: str, params: dict[str, str] | None, extra: dict[str, str]
    ) -> tuple[httpx.Response, Envelope]:
        attempt = 0
        while True:
            request = self._http.build_request("GET", url, params=params, headers=extra)
            error: errors.RoutingPointsError
            await self._gate.acquire_async()
            try:
                response = await self._http.send(request)
            except httpx.TransportError as exc:
                error = transport_error(exc, request)
            except httpx.DecodingError as exc:
                error = undecodable(exc, request)
            else:
                try:
                    return response, self._observe(response)
                except errors.RoutingPointsError as exc:
                    error = exc
            finally:
                self._gate.release()
            delay = self._retry_delay(attempt, error)
            if delay is None:
                raise error
            await asyncio.sleep(delay)
            attempt += 1
