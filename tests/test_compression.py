"""gzip on the wire: compressed once per page version, its own ETag, 304s unchanged."""

from __future__ import annotations

import asyncio
import gzip

import httpx
import orjson
import pytest

from routing_points.client import Client
from routing_points.server.incoming import scan
from routing_points.server.pages import GZIP_INLINE_BYTES, Page, etag_matches, gzipped
from tests.support.seed import Tenant
from tests.support.servers import LiveServer
from tests.support.wire import ENDPOINT

POINTS = f"{ENDPOINT}?api=routing_points"


class Answer:
    def __init__(self, response: httpx.Response, wire: bytes) -> None:
        self.status_code = response.status_code
        self.headers = response.headers
        self.wire = wire  # the body as sent, before any decoding


def get(live: LiveServer, token: str, **extra: str) -> Answer:
    with httpx.Client(timeout=30) as http:
        request = http.build_request(
            "GET", f"{live.url}{POINTS}", headers={"wolkvox-token": token, **extra}
        )
        response = http.send(request, stream=True)
        try:
            return Answer(response, b"".join(response.iter_raw()))
        finally:
            response.close()


def remaining(response: Answer) -> str:
    return response.headers["ratelimit"].split("r=")[1].split(";")[0]


def test_gzip_when_accepted_with_its_own_etag(live: LiveServer, tenant: Tenant) -> None:
    plain = get(live, tenant.token, **{"accept-encoding": "identity"})
    packed = get(live, tenant.token, **{"accept-encoding": "br;q=1, gzip;q=0.5"})
    assert "content-encoding" not in plain.headers
    assert packed.headers["content-encoding"] == "gzip"
    assert plain.headers["vary"] == packed.headers["vary"] == "Accept-Encoding"
    assert gzip.decompress(packed.wire) == plain.wire
    assert orjson.loads(plain.wire)["msg"] == "3 records were found"
    # Two representations, two strong validators (RFC 9110 8.8.3).
    assert plain.headers["etag"] != packed.headers["etag"]
    assert packed.headers["etag"] == plain.headers["etag"][:-1] + '-gz"'
    # q=0 refuses gzip; a q that is not a number too.
    for refusal in ("gzip;q=0", "gzip;q=high", "deflate"):
        assert (
            "content-encoding"
            not in get(live, tenant.token, **{"accept-encoding": refusal}).headers
        )


def test_either_tag_is_a_free_304(live: LiveServer, tenant: Tenant) -> None:
    plain = get(live, tenant.token, **{"accept-encoding": "identity"})
    packed = get(live, tenant.token, **{"accept-encoding": "gzip"})
    before = remaining(packed)
    for tag in (plain.headers["etag"], packed.headers["etag"]):
        for encoding in ("gzip", "identity"):
            answer = get(live, tenant.token, **{"if-none-match": tag, "accept-encoding": encoding})
            assert answer.status_code == 304
            assert answer.wire == b""
            assert answer.headers["vary"] == "Accept-Encoding"
            expected = packed if encoding == "gzip" else plain
            assert answer.headers["etag"] == expected.headers["etag"]
            assert remaining(answer) == before  # 4 conditional calls, 0 charged


def test_compressed_once_per_page_version(live: LiveServer, tenant: Tenant) -> None:
    first = get(live, tenant.token, **{"accept-encoding": "gzip"})
    cache = live.app.state.services.page_cache
    (page,) = list(cache._pages.values())
    kept = page.gzipped
    assert kept is not None
    second = get(live, tenant.token, **{"accept-encoding": "gzip"})
    assert page.gzipped is kept  # the same bytes object: not compressed again
    assert first.wire == second.wire == kept


@pytest.mark.parametrize(
    ("values", "gzip_accepted"),
    [
        ([b"gzip"], True),
        ([b"x-gzip"], True),
        ([b"*"], True),
        ([b"deflate, br"], False),
        ([b"gzip;q=0"], False),
        ([b"GZIP ; q = 0.000"], False),
        ([b"gzip;q=nan"], False),
        ([b"gzip;q=-1"], False),
        ([b'gzip;q="0"'], False),
        ([b"gzip;level=9;q=0"], False),  # q is not always the first parameter
        ([b"gzip;q=0.001"], True),
        ([b"gzip;q=1.000"], True),
        # Not RFC 9110 qvalues, though Python's float reads them: refused.
        ([b"gzip;q=inf"], False),
        ([b"gzip;q=1e-9"], False),
        ([b"gzip;q=0_1"], False),
        ([b"gzip;q=0.0001"], False),
        ([b"gzip;q=0.5, identity;q=1"], True),
        # `*` stands for the codings not listed: a listed gzip speaks for itself.
        ([b"*;q=1, gzip;q=0"], False),
        ([b"gzip;q=0, *"], False),
        ([b"*;q=0, gzip"], True),
        ([b"identity, *;q=0"], False),
        # Several lines are one list, whatever their order.
        ([b"gzip;q=0", b"*"], False),
        ([b"*", b"gzip;q=0"], False),
        ([b"identity", b"gzip"], True),
    ],
)
def test_accept_encoding_is_read_as_rfc_9110_says(values: list[bytes], gzip_accepted: bool) -> None:
    incoming = scan([(b"accept-encoding", value) for value in values])
    assert incoming.accepts_gzip is gzip_accepted


def test_several_if_none_match_lines_are_one_list() -> None:
    for lines in ([b'"current"', b'"old"'], [b'"old"', b'"current"']):
        incoming = scan([(b"if-none-match", line) for line in lines])
        assert incoming.if_none_match is not None
        assert etag_matches(incoming.if_none_match, '"current"')


@pytest.mark.anyio
async def test_clients_asking_at_once_share_one_compression() -> None:
    body = orjson.dumps({"records": [str(i) for i in range(40_000)]})
    assert len(body) > GZIP_INLINE_BYTES  # compressed in a thread, where a race can happen
    page = Page(body, 40_000, None, 1)
    waiters = [asyncio.ensure_future(gzipped(page)) for _ in range(6)]
    await asyncio.sleep(0)
    waiters[0].cancel()  # one client gives up: the compression goes on for the others
    results = await asyncio.gather(*waiters[1:])
    assert waiters[0].cancelled()
    # One compression: five answers carry the very same bytes object, kept on the page.
    assert {id(result) for result in results} == {id(page.gzipped)}
    assert gzip.decompress(results[0]) == body
    assert page.gzipping is None


@pytest.mark.anyio
async def test_a_failed_compression_is_tried_again() -> None:
    page = Page(b"[]", 0, None, 1)
    page.body = _Unreadable(GZIP_INLINE_BYTES + 1)  # type: ignore[assignment]
    results = await asyncio.gather(*(gzipped(page) for _ in range(3)), return_exceptions=True)
    assert [type(result) for result in results] == [TypeError] * 3
    assert page.gzipped is None
    assert page.gzipping is None
    page.body = b"x" * (GZIP_INLINE_BYTES + 1)
    assert gzip.decompress(await gzipped(page)) == page.body


class _Unreadable:
    """A body of some length that gzip cannot read."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length


class RecordingTransport(httpx.HTTPTransport):
    """The real HTTP transport, remembering the encodings the server answered with."""

    def __init__(self) -> None:
        super().__init__()
        self.encodings: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.encodings.append(response.headers.get("content-encoding"))
        return response


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_sdk_asks_for_gzip(live: LiveServer, tenant: Tenant) -> None:
    transport = RecordingTransport()
    with Client(tenant.server, tenant.token, base_url=live.url, transport=transport) as client:
        points = client.routing_points()
    assert [point.rp_id for point in points] == [101, 102, 1000]
    assert transport.encodings == ["gzip"]
