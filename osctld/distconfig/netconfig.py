"""The network of one container interface, as distconfig writes it inside.

The net layer knows the addresses, the interconnect and the gateways; each
distribution module turns a list of these into its own configuration format.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

ROUTED = "routed"
BRIDGE = "bridge"


@dataclass(frozen=True)
class Route:
    """A prefix reachable through the interface, optionally via a gateway."""

    prefix: ipaddress.IPv4Network | ipaddress.IPv6Network
    via: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None


@dataclass
class IfaceConfig:
    """One interface inside the container.

    Routed: ``addresses`` holds the interconnect (x.x.x.2/30) first, then the
    public /32 and /128 addresses; the v4 default route goes via
    ``gateway4`` with ``src4`` (the first public address) as its source.
    ``gateway6`` may be link-local (fe80::1), on-link via this interface.
    Bridged with ``dhcp``: the static addresses and gateways are unused.
    """

    name: str
    kind: str
    addresses: list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]
    gateway4: ipaddress.IPv4Address | None = None
    gateway6: ipaddress.IPv6Address | None = None
    src4: ipaddress.IPv4Address | None = None
    src6: ipaddress.IPv6Address | None = None
    dhcp: bool = False
    routes: list[Route] = field(default_factory=list)
    hwaddr: str | None = None
