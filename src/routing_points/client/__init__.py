"""The SDK: consume this server, or the real vendor service, within its limits.

from routing_points.client import Client

with Client(server="0032", token="...") as client:
    for point in client.routing_points():
        print(point.rp_id, point.rp_name, point.ivr_active, point.last_use)
"""

from routing_points.client.async_client import AsyncClient
from routing_points.client.base import RetryPolicy
from routing_points.client.errors import (
    ContractError,
    HTTPStatusError,
    InvalidParameters,
    InvalidToken,
    MalformedResponse,
    MissingToken,
    QuotaExceeded,
    ResponseError,
    RoutingPointsError,
    ServiceUnavailable,
    Timeout,
    TooManySimultaneous,
    TransportError,
    UnknownApi,
    UsageError,
)
from routing_points.client.models import Budget, Page, RoutingPoint, RoutingPointList, TokenInfo
from routing_points.client.sync_client import Client

__all__ = [
    "AsyncClient",
    "Budget",
    "Client",
    "ContractError",
    "HTTPStatusError",
    "InvalidParameters",
    "InvalidToken",
    "MalformedResponse",
    "MissingToken",
    "Page",
    "QuotaExceeded",
    "ResponseError",
    "RetryPolicy",
    "RoutingPoint",
    "RoutingPointList",
    "RoutingPointsError",
    "ServiceUnavailable",
    "Timeout",
    "TokenInfo",
    "TooManySimultaneous",
    "TransportError",
    "UnknownApi",
    "UsageError",
]
