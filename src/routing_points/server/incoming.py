"""What the hot path needs from a request, read in one pass and without Starlette's Request.

ASGI hands headers over as a list of lowercase byte pairs; a single scan picks out the
six that matter instead of five linear lookups. Query strings repeat (every poller asks
the same thing), so they are parsed once and cached.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import parse_qsl

from routing_points.server.errors import InvalidParameters

_HOST_OPERATION = re.compile(rb"^wv([0-9]{4})\.", re.IGNORECASE)


@dataclass(slots=True)
class Incoming:
    token: str = ""
    # More than one wolkvox-token header: refused, never "the last one wins".
    tokens_seen: int = 0
    # Every operation the request names: wolkvox_server / wolkvox-server, or a wvNNNN. Host.
    named: list[str] = field(default_factory=list)
    if_none_match: str | None = None
    accepts_gzip: bool = False
    forwarded_for: str | None = None


def _nomenclature(value: bytes) -> str:
    """ "0032", "32" and "wv0032" name 0032; anything else is kept, to be refused."""
    text = value.decode("latin-1").strip()
    digits = text[2:] if text[:2].lower() == "wv" else text
    return digits.zfill(4) if digits.isdigit() and len(digits) <= 4 else text


def scan(headers: Iterable[tuple[bytes, bytes]]) -> Incoming:
    incoming = Incoming()
    accept_encoding: bytes | None = None
    for name, value in headers:
        if name == b"wolkvox-token":
            incoming.token = value.decode("latin-1").strip()
            incoming.tokens_seen += 1
        elif name in (b"wolkvox_server", b"wolkvox-server"):
            if value.strip():
                incoming.named.append(_nomenclature(value))
        elif name == b"host":
            if value[:2].lower() == b"wv":
                match = _HOST_OPERATION.match(value)
                if match is not None:
                    incoming.named.append(match.group(1).decode())
        elif name == b"if-none-match":
            tags = value.decode("latin-1")
            previous = incoming.if_none_match  # several lines are one list, as below
            incoming.if_none_match = tags if previous is None else f"{previous}, {tags}"
        elif name == b"accept-encoding":
            # Several lines are one list (RFC 9110 5.3), not "the last one wins".
            accept_encoding = value if accept_encoding is None else accept_encoding + b"," + value
        elif name == b"x-forwarded-for":
            incoming.forwarded_for = value.decode("latin-1")
    if accept_encoding is not None:
        incoming.accepts_gzip = accepts_gzip(accept_encoding)
    return incoming


@functools.lru_cache(maxsize=256)
def accepts_gzip(value: bytes) -> bool:
    """Whether an Accept-Encoding value accepts gzip (RFC 9110 12.5.3): `gzip` or `x-gzip`
    with a q above 0, or, when neither is listed, `*` with a q above 0 (`*` stands only for
    the codings not listed: `*, gzip;q=0` refuses gzip). A q that is not a number refuses:
    identity is always safe."""
    named: float | None = None
    anything: float | None = None
    for item in value.lower().split(b","):
        coding, _, params = item.partition(b";")
        coding = coding.strip()
        if coding in (b"gzip", b"x-gzip"):
            named = max(named or 0.0, _quality(params))
        elif coding == b"*":
            anything = max(anything or 0.0, _quality(params))
    chosen = named if named is not None else anything
    return chosen is not None and chosen > 0


def _quality(params: bytes) -> float:
    """The q of one Accept-Encoding item's parameters: 1 when absent, 0 when it is not
    RFC 9110's qvalue (0 to 1, three decimals at most: no `inf`, `1e-9` or `0_1`)."""
    for param in params.split(b";"):
        name, _, value = param.partition(b"=")
        if name.strip() == b"q":
            value = value.strip()
            return float(value) if _QVALUE.fullmatch(value) else 0.0
    return 1.0


_QVALUE = re.compile(rb"0(\.[0-9]{0,3})?|1(\.0{0,3})?")


# Pollers repeat short query strings; long ones are parsed every time, never kept.
CACHED_QUERY_BYTES = 256


# The name under which `query_params` reports a parameter given more than once.
REPEATED = "\x00repeated"


def _parse(raw: bytes) -> Mapping[str, str]:
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    params = dict(pairs)
    if len(params) < len(pairs):
        # A proxy may read the first value where this server reads the last: refuse both.
        names = [name for name, _ in pairs]
        params[REPEATED] = next(name for name in names if names.count(name) > 1)
    return MappingProxyType(params)


_parse_cached = functools.lru_cache(maxsize=4096)(_parse)


def query_params(raw: bytes) -> Mapping[str, str]:
    """The query string's parameters, read-only; a name given twice is under REPEATED."""
    return _parse_cached(raw) if len(raw) <= CACHED_QUERY_BYTES else _parse(raw)


def single_params(raw: bytes) -> Mapping[str, str]:
    """The query string's parameters, each given once, or the contract's 400 naming the one
    that is not (any call: `replace=false&replace=true` deleted points on the admin API)."""
    params = query_params(raw)
    if REPEATED in params:
        name = params[REPEATED].upper().encode("ascii", "backslashreplace").decode()
        raise InvalidParameters(f"{name[:40]} IS GIVEN MORE THAN ONCE")
    return params
