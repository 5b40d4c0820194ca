"""What a netif should look like, on the node and inside: pure functions.

Routed netif N gets the N-th /30 of the node's interconnect range: the host
veth has the first address, the container the second. IPv6 needs no
interconnect: the host veth carries the link-local ``fe80::1``, which is the
container's IPv6 gateway on every routed netif, so no ULA range has to be
allocated. On the node each IPv4 address of the container is a host route
via the container's interconnect address; each IPv6 address is an on-link
host route on the host veth (the container answers neighbour solicitation
for it), and an IPv6 routed prefix goes via the container's first IPv6
address, since the container's own link-local address depends on its
distribution's address generation mode.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from osctl.protocol import INVALID, OsctlError

from ..distconfig.netconfig import IfaceConfig, Route
from ..model.netif import AUTO, BRIDGE, NONE, IPAddress, IPInterface, IPNetwork, NetIf

GATEWAY6 = ipaddress.IPv6Interface("fe80::1/64")


@dataclass(frozen=True)
class HostPlan:
    """The host end of one netif, as the node should have it."""

    veth: str
    bridge: str | None = None
    addresses: tuple[IPInterface, ...] = ()
    # (destination, next hop or None for on-link), all through ``veth``.
    routes: frozenset[tuple[IPNetwork, IPAddress | None]] = field(default_factory=frozenset)
    max_tx: int | None = None
    max_rx: int | None = None


def interconnect(rng: ipaddress.IPv4Network, index: int) -> ipaddress.IPv4Network:
    if not 0 <= index < capacity(rng):
        raise OsctlError(INVALID, f"netif index {index} is outside the interconnect range {rng}")
    return ipaddress.IPv4Network((int(rng.network_address) + 4 * index, 30))


def capacity(rng: ipaddress.IPv4Network) -> int:
    return rng.num_addresses // 4


def ends(rng: ipaddress.IPv4Network, index: int) -> tuple[ipaddress.IPv4Interface, ipaddress.IPv4Interface]:
    """(host end .1/30, container end .2/30) of netif ``index``."""
    net = interconnect(rng, index)
    return (ipaddress.IPv4Interface((net.network_address + 1, 30)),
            ipaddress.IPv4Interface((net.network_address + 2, 30)))


def v6_next_hop(netif: NetIf) -> ipaddress.IPv6Address | None:
    v6 = netif.ips_of(6)
    return v6[0].ip if v6 else None


def host_plan(rng: ipaddress.IPv4Network, veth: str, netif: NetIf) -> HostPlan:
    if netif.type == BRIDGE:
        return HostPlan(veth, bridge=netif.link, max_tx=netif.max_tx, max_rx=netif.max_rx)
    host, ct = ends(rng, netif.index)
    routes = {(ipaddress.ip_network(a.ip), ct.ip if a.version == 4 else None) for a in netif.ips}
    for r in netif.routes:
        hop = r.gateway or (ct.ip if r.network.version == 4 else v6_next_hop(netif))
        routes.add((r.network, hop))
    return HostPlan(veth, addresses=(host, GATEWAY6), routes=frozenset(routes),
                    max_tx=netif.max_tx, max_rx=netif.max_rx)


def _gateway(value: str, version: int, bridge_ips: list[IPInterface]) -> IPAddress | None:
    if value == NONE:
        return None
    if value == AUTO:
        return next((a.ip for a in bridge_ips if a.version == version and not a.ip.is_link_local), None)
    ip = ipaddress.ip_address(value)
    return ip if ip.version == version else None


def first(ips: list[IPInterface], version: int) -> IPAddress | None:
    return next((a.ip for a in ips if a.version == version), None)


def inside(rng: ipaddress.IPv4Network, netif: NetIf,
           bridge_ips: list[IPInterface] = ()) -> IfaceConfig:
    """The interface as the container should see it (and distconfig write it)."""
    ips = netif.ips
    if netif.type == BRIDGE:
        return IfaceConfig(
            name=netif.name, kind=BRIDGE, addresses=ips,
            gateway4=_gateway(netif.gateway4, 4, list(bridge_ips)),
            gateway6=_gateway(netif.gateway6, 6, list(bridge_ips)),
            src4=first(ips, 4), src6=first(ips, 6), dhcp=netif.dhcp,
            routes=[Route(r.network, r.gateway) for r in netif.routes], hwaddr=netif.hwaddr)
    host, ct = ends(rng, netif.index)
    return IfaceConfig(
        name=netif.name, kind=netif.type, addresses=[ct, *ips], gateway4=host.ip,
        gateway6=GATEWAY6.ip if netif.ips_of(6) else None,
        src4=first(ips, 4), src6=first(ips, 6), hwaddr=netif.hwaddr)
