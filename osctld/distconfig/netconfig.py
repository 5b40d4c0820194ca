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

    @property
    def is_default(self) -> bool:
        return self.prefix.prefixlen == 0


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

    @property
    def skip_dad(self) -> bool:
        """A routed link has the host on its other end and no one else:
        duplicate address detection only delays the addresses there."""
        return self.kind == ROUTED

    def addresses_of(self, version: int) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
        return [] if self.dhcp else [a for a in self.addresses if a.version == version]

    def gateway(self, version: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        return None if self.dhcp else (self.gateway4 if version == 4 else self.gateway6)

    def src(self, version: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        return self.src4 if version == 4 else self.src6

    def routes_of(self, version: int) -> list[Route]:
        """The default route (when there is a gateway) first, then the extra
        routes of one IP version: the order in which they can be added."""
        gw = self.gateway(version)
        default = [Route(ipaddress.ip_network("0.0.0.0/0" if version == 4 else "::/0"), gw)] if gw else []
        return default + [r for r in self.routes if r.prefix.version == version]


def ip_route_args(iface: IfaceConfig, route: Route) -> str:
    """``ip route`` arguments after the verb: the default route carries the
    preferred source address (the first public one, not the interconnect)."""
    v = route.prefix.version
    words = ["default" if route.is_default else str(route.prefix)]
    if route.via:
        words += ["via", str(route.via)]
    words += ["dev", iface.name]
    src = iface.src(v)
    if route.is_default and src:
        words += ["src", str(src)]
    return " ".join(words)


def dad_off(iface: IfaceConfig) -> str | None:
    """The shell command that turns DAD off on a routed interface, run before
    the link goes up so that its link-local address skips DAD as well."""
    if not (iface.skip_dad and iface.addresses_of(6)):
        return None
    return f"echo 0 > /proc/sys/net/ipv6/conf/{iface.name}/accept_dad"


def wait_for_dad(iface: IfaceConfig) -> str | None:
    """A shell loop that waits (up to 5 s) while duplicate address detection
    holds the interface's IPv6 addresses tentative: the kernel refuses a
    route whose source address is still tentative. Also where ``dad_off``
    ran, in case /proc/sys was read-only: then it returns at once. None where
    no IPv6 default route has a source."""
    if not (iface.src6 and iface.gateway(6) and iface.addresses_of(6)):
        return None
    return (f"n=0; while ip -6 addr show dev {iface.name} | grep -q tentative && [ $n -lt 50 ];"
            " do sleep 0.1; n=$((n+1)); done")
