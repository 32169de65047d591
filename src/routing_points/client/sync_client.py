"""`Client`: the blocking SDK, safe to share between threads."""

from __future__ import annotations

import time
from collections.abc import Iterator
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


class Client(BaseClient):
    """Routing points of one operation, within the service's limits.

    >>> with Client(server="0032", token=token) as client:
    ...     for point in client.routing_points():
    ...         print(point.rp_id, point.rp_name, point.ivr_active)
    """

    def __init__(
        self,
        server: str,
        token: str,
        base_url: str | None = None,
        timeout: float = 90.0,
        transport: httpx.BaseTransport | None = None,
        *,
        max_in_flight: int = 1,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(server, token, base_url, max_in_flight, retry)
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers=self._default_headers(),
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def routing_points(
        self, routing: int | None = None, *, if_none_match: str | None = None
    ) -> RoutingPointList:
        """Every routing point (following continuations), or `not_modified` after a 304."""
        result = RoutingPointList()
        for index, page in enumerate(
            self.iter_routing_points(routing, if_none_match=if_none_match)
        ):
            if index == 0:
                result.etag, result.not_modified = page.etag, page.not_modified
            result.extend(page.points)
        return result

    def iter_routing_points(
        self, routing: int | None = None, *, if_none_match: str | None = None
    ) -> Iterator[Page]:
        """Page by page, one consumption each, as the service's continuation links lead."""
        url: str | None = ENDPOINT
        params: dict[str, str] | None = self._points_params(routing)
        extra = {"if-none-match": if_none_match} if if_none_match else {}
        followed = Followed()
        while url is not None:
            response, envelope = self._call(url, params, extra)
            page = self._page(response, envelope)
            self._check_progress(followed, response, page)
            yield page
            url, params, extra = page.next_url, None, {}

    def token_info(self) -> TokenInfo:
        """The calling token's counters. The service charges this call too."""
        response, envelope = self._call(ENDPOINT, {"api": contract.TOKEN_INFO}, {})
        return self._token_info(response, envelope)

    def _call(
        self, url: str, params: dict[str, str] | None, extra: dict[str, str]
    ) -> tuple[httpx.Response, Envelope]:
        attempt = 0
        while True:
            request = self._http.build_request("GET", url, params=params, headers=extra)
            error: errors.RoutingPointsError
            self._gate.acquire()
            try:
                response = self._http.send(request)
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
            time.sleep(delay)
            attempt += 1
