"""The caller's address, and whether an operation's IP allow-list admits it.

`X-Forwarded-For` is believed only from a trusted proxy (the `trusted_proxies` setting),
read from the right: the first address that is not a trusted proxy is the client. From
anyone else the header is ignored, so a caller cannot pick its own address.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# The client's address when a trusted proxy forwarded something that is not one.
UNKNOWN = "unknown"


def parse_networks(text: str) -> tuple[Network, ...]:
    """Networks from a comma- or space-separated list; bad entries raise ValueError."""
    items = text.replace(",", " ").split()
    return tuple(ipaddress.ip_network(item, strict=False) for item in items)


_allowlist = functools.lru_cache(maxsize=4096)(parse_networks)


def _within(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


class ClientAddress:
    def __init__(self, trusted_proxies: str) -> None:
        self.trusted = parse_networks(trusted_proxies)

    def __call__(self, peer: str | None, forwarded_for: str | None) -> str:
        address = peer or ""
        if not forwarded_for or not self.trusted or not _within(address, self.trusted):
            return address
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not _is_address(hop):
                return UNKNOWN  # a proxy passed on what is not an address: trust none of it
            if not _within(hop, self.trusted):
                return hop
            address = hop
        return address

    def forwarded_https(self, peer: str | None, forwarded_proto: str | None) -> bool:
        """Whether a trusted proxy says its client spoke HTTPS (`X-Forwarded-Proto`, as the
        nearest proxy set it): a TLS-terminating proxy's cookies must still be Secure."""
        if not forwarded_proto or not self.trusted or not _within(peer or "", self.trusted):
            return False
        return forwarded_proto.split(",")[-1].strip().lower() == "https"


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def allowed(address: str, allowlist: str) -> bool:
    """An empty allow-list admits every address."""
    if not allowlist:
        return True
    return _within(address, _allowlist(allowlist))
