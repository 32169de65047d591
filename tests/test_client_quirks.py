"""The SDK against every quirk of the real service, played by httpx's MockTransport."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import orjson
import pytest

import routing_points.client as sdk
from routing_points.client import (
    AsyncClient,
    Client,
    InvalidToken,
    MissingToken,
    QuotaExceeded,
    RetryPolicy,
    ServiceUnavailable,
    TooManySimultaneous,
    TransportError,
    UsageError,
)
from tests.support.wire import SALES_LINE

FAST = RetryPolicy(max_retries=3, backoff_base_s=0.001, backoff_cap_s=0.01)
RECORD = SALES_LINE


class Script:
    """A fake service answering from a list, recording what it was asked."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def envelope(
    code: Any = 200,
    data: Any = None,
    msg: str = "1 records were found",
    status: int = 200,
    **headers: str,
) -> httpx.Response:
    body = {"code": code, "error": None, "msg": msg, "data": [RECORD] if data is None else data}
    return httpx.Response(status, content=orjson.dumps(body), headers=headers)


def refusal(status: int, msg: str, **headers: str) -> httpx.Response:
    body = {"code": status, "error": "FORBIDDEN", "msg": msg, "data": None}
    return httpx.Response(status, content=orjson.dumps(body), headers=headers)


def client_for(script: Script, **kwargs: Any) -> Client:
    kwargs.setdefault("retry", FAST)
    return Client(server="0032", token="secret", transport=httpx.MockTransport(script), **kwargs)


@pytest.mark.parametrize("code", [200, "200", "0", ""])
def test_code_as_int_or_string(code: Any) -> None:
    with client_for(Script(envelope(code=code))) as client:
        points = client.routing_points()
    assert points == [
        sdk.RoutingPoint(
            101, "Sales line", True, False, True, False, datetime(2026, 11, 20, 14, 3, 11)
        )
    ]


def test_data_as_a_single_object() -> None:
    with client_for(Script(envelope(data=RECORD))) as client:
        assert [p.rp_id for p in client.routing_points()] == [101]


def test_a_404_that_says_no_records_is_an_empty_list() -> None:
    body = {"code": 404, "error": "NOT FOUND", "msg": "No records were found", "data": None}
    script = Script(httpx.Response(404, content=orjson.dumps(body)))
    with client_for(script) as client:
        assert client.routing_points() == []
    assert len(script.requests) == 1


def test_a_404_that_means_something_else_is_an_error() -> None:
    body = {"code": 404, "error": "NOT FOUND", "msg": "PAGE NOT FOUND", "data": None}
    client = client_for(Script(httpx.Response(404, content=orjson.dumps(body))))
    with client, pytest.raises(sdk.ContractError) as caught:
        client.routing_points()
    assert caught.value.status_code == 404


def test_a_non_json_403_is_a_maintenance_window_not_retried() -> None:
    page = httpx.Response(403, text="<html><body>Estamos en mantenimiento</body></html>")
    script = Script(page)
    with client_for(script) as client, pytest.raises(ServiceUnavailable) as caught:
        client.routing_points()
    assert "maintenance window" in str(caught.value)
    assert caught.value.response is not None
    assert caught.value.response.status_code == 403
    assert len(script.requests) == 1


@pytest.mark.parametrize(
    ("msg", "error_type"),
    [
        ("  TOKEN   LIMIT EXCEEDED ", QuotaExceeded),
        ("token limit exceeded", QuotaExceeded),
        ("PLEASE  VALIDATE TOKEN", InvalidToken),
        ("PLEASE ENTER THE WOLKVOX-TOKEN\n", MissingToken),
        ("EXCEEDS THE LIMIT OF  SIMULTANEOUS REQUESTS PER TOKEN (2)", TooManySimultaneous),
        ("THE API YOU WANT TO CONSULT DOES NOT EXIST", sdk.UnknownApi),
        ("SOME PARAMETERS ARE REQUIRED", sdk.InvalidParameters),
    ],
)
def test_msg_with_odd_spacing_still_names_the_error(msg: str, error_type: type) -> None:
    status = 401 if "ENTER" in msg else 400 if "API" in msg or "PARAM" in msg else 403
    script = Script(refusal(status, msg))
    client = client_for(script, retry=RetryPolicy(max_retries=0))
    with pytest.raises(error_type) as caught:
        client.routing_points()
    client.close()
    assert caught.value.request is script.requests[0]
    assert caught.value.response is not None
    assert caught.value.msg == " ".join(msg.split())


def test_quota_is_never_retried_and_carries_the_reset() -> None:
    script = Script(refusal(403, "TOKEN LIMIT EXCEEDED", **{"retry-after": "3600"}))
    with client_for(script) as client, pytest.raises(QuotaExceeded) as caught:
        client.routing_points()
    assert len(script.requests) == 1
    assert caught.value.reset_at is not None
    remaining = caught.value.reset_at - datetime.now(caught.value.reset_at.tzinfo)
    assert 3500 < remaining.total_seconds() <= 3600


@pytest.mark.parametrize("msg", ["PLEASE VALIDATE TOKEN", "PLEASE ENTER THE WOLKVOX-TOKEN"])
def test_auth_errors_are_never_retried(msg: str) -> None:
    script = Script(refusal(403, msg))
    with client_for(script) as client, pytest.raises(sdk.ContractError):
        client.token_info()
    assert len(script.requests) == 1


def test_5xx_and_network_errors_are_retried() -> None:
    script = Script(
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        refusal(503, "SERVICE UNAVAILABLE"),
        envelope(),
    )
    with client_for(script) as client:
        assert len(client.routing_points()) == 1
    assert len(script.requests) == 4


def test_retries_give_up_with_the_last_error() -> None:
    script = Script(httpx.ReadTimeout("slow"))
    with client_for(script) as client, pytest.raises(sdk.Timeout) as caught:
        client.routing_points()
    assert isinstance(caught.value, TransportError)
    assert caught.value.request is not None
    assert len(script.requests) == 1 + FAST.max_retries


def test_the_concurrency_refusal_is_retried() -> None:
    script = Script(
        refusal(
            403, "EXCEEDS THE LIMIT OF SIMULTANEOUS REQUESTS PER TOKEN (2)", **{"retry-after": "0"}
        ),
        envelope(),
    )
    with client_for(script) as client:
        assert len(client.routing_points()) == 1
    assert len(script.requests) == 2


def test_retry_after_is_a_floor_and_back_off_grows_with_jitter() -> None:
    policy = RetryPolicy(max_retries=5, backoff_base_s=1.0, backoff_cap_s=8.0, max_wait_s=60)
    rng = random.Random(1)
    assert all(7.0 <= policy.delay(0, 7.0, rng) <= 8.0 for _ in range(50))
    for attempt, ceiling in enumerate([1.0, 2.0, 4.0, 8.0, 8.0]):
        delays = {policy.delay(attempt, None, rng) for _ in range(50)}
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(delays) > 1  # jittered
    assert policy.delay(5, None, rng) is None  # retries exhausted
    assert policy.delay(0, 3600.0, rng) is None  # too long to wait: raise instead


def test_default_base_url_and_headers() -> None:
    script = Script(envelope())
    with Client(server="0032", token="s3cret", transport=httpx.MockTransport(script)) as client:
        client.routing_points(routing=101)
    request = script.requests[0]
    assert str(request.url) == (
        "https://wv0032.wolkvox.com/api/v2/information.php?api=routing_points&routing=101"
    )
    assert request.headers["wolkvox-token"] == "s3cret"
    assert request.headers["wolkvox_server"] == "0032"


def test_the_budget_from_ratelimit_headers() -> None:
    answer = envelope(
        **{"ratelimit-policy": '"daily";q=1000;w=86400', "ratelimit": '"daily";r=998;t=3600'}
    )
    with client_for(Script(answer)) as client:
        assert client.remaining_budget is None
        client.routing_points()
        assert client.remaining_budget == 998
        assert client.budget is not None
        assert client.budget.limit == 1000
        assert client.budget.resets_in_s == 3600


def test_the_vendor_sends_no_budget_headers() -> None:
    with client_for(Script(envelope())) as client:
        client.routing_points()
        assert client.remaining_budget is None


@pytest.mark.parametrize("max_in_flight", [0, 3])
def test_more_than_two_in_flight_is_refused(max_in_flight: int) -> None:
    with pytest.raises(UsageError):
        Client(server="0032", token="t", max_in_flight=max_in_flight)


def test_a_token_is_required() -> None:
    with pytest.raises(UsageError):
        Client(server="0032", token=" ")


@pytest.mark.parametrize("client", [Client, AsyncClient])
def test_a_token_or_url_that_could_not_be_sent_is_refused_at_once(client: type) -> None:
    """No header can carry it (httpx raised UnicodeEncodeError at the first request); the
    message names the character, never the token."""
    with pytest.raises(UsageError, match="cannot hold '\u201c' \\(character 1\\)") as raised:
        client(server="0032", token="\u201csecret\u201d")
    assert "secret" not in str(raised.value)
    with pytest.raises(UsageError, match="is not a URL: Invalid port"):
        client(server="0032", token="t", base_url="http://127.0.0.1:80a0")


@pytest.mark.anyio
async def test_the_async_client_handles_the_same_quirks() -> None:
    script = Script(httpx.ConnectError("down"), envelope(code="0", data=RECORD))
    async with AsyncClient(
        server="0032", token="t", transport=httpx.MockTransport(script), retry=FAST
    ) as client:
        points = await client.routing_points()
    assert [p.rp_name for p in points] == ["Sales line"]
    assert len(script.requests) == 2


def test_public_names() -> None:
    assert sorted(sdk.__all__) == sorted(
        [
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
    )
    for name in sdk.__all__:
        assert getattr(sdk, name) is not None


def test_the_error_kinds_stay_distinct() -> None:
    kinds: list[Callable[..., Any]] = [
        sdk.TransportError,
        sdk.HTTPStatusError,
        sdk.ContractError,
        sdk.UsageError,
    ]
    for kind in kinds:
        others = [other for other in kinds if other is not kind]
        assert not any(issubclass(kind, other) for other in others)  # type: ignore[arg-type]
    assert issubclass(sdk.QuotaExceeded, sdk.ContractError)
    assert issubclass(sdk.ServiceUnavailable, sdk.HTTPStatusError)


def test_bulk_conversion_matches_one_by_one_and_restores_the_collector() -> None:
    import gc

    records = [
        RECORD,
        {**RECORD, "rp_id": "7", "ivr_active": "YES ", "last_use": " 2026-11-20 14:03:11 "},
        {**RECORD, "rp_id": 8, "chat_active": True, "last_use": ""},
    ]
    assert sdk.RoutingPoint.from_records(records) == [
        sdk.RoutingPoint.from_record(record) for record in records
    ]
    assert gc.isenabled()
    gc.disable()
    try:
        sdk.RoutingPoint.from_records(records)
        assert not gc.isenabled()  # it was off: it stays off
    finally:
        gc.enable()
