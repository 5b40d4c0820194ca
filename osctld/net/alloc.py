"""Node-wide uniqueness: netif indices (host veth names, interconnects)
and the addresses and prefixes that netifs hold.

The netifs of every container of every pool are the allocation table:
each netif's index is persisted in its container's config, so the table
can never disagree with the interfaces that exist. Callers check and
reserve (add the netif to its container) with no await in between, so two
commands cannot take the same index or address. What netifs may hold at
all: never what is not for a host (``SPECIAL``), never the node's own
network (``check_node``, on what ``netlink.node_network`` reads).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable

from osctl.protocol import CONFLICT, INVALID, OsctlError

from ..model.container import Container
from ..model.netif import IPNetwork, NetIf
from ..model.vm import VM

# Every netif of the node with its container or VM (``Network.holders``).
Holders = Iterable[tuple[Container | VM, NetIf]]


def free_index(used: set[int], capacity: int) -> int:
    """The lowest index not in ``used``."""
    for i in range(capacity):
        if i not in used:
            return i
    raise OsctlError(CONFLICT, f"all {capacity} interconnects of the node are in use; "
                               "enlarge net.interconnect in the daemon's config")


# What may never be a container's, in whole or in part (any overlap is
# refused): not unicast, or never routed to a host. IPv4: the blocks of
# ipaddress's is_loopback, is_link_local, is_multicast and is_reserved, and
# 0.0.0.0/8 ("this network", RFC 1122, with the unspecified address). IPv6:
# is_unspecified, is_loopback, is_link_local, is_multicast, and the rest of
# ::/96 (IPv4-compatible, deprecated); the other reserved blocks stay usable
# (NAT64's 64:ff9b::/96 may be routed to a container). IPv4-mapped addresses
# come here as IPv4 (``model.netif.MAPPED``): only a larger prefix meets them.
SPECIAL: tuple[tuple[IPNetwork, str], ...] = tuple((ipaddress.ip_network(n), why) for n, why in (
    ("0.0.0.0/8", "'this network' (0.0.0.0/8)"),
    ("127.0.0.0/8", "loopback (127.0.0.0/8)"),
    ("169.254.0.0/16", "link-local (169.254.0.0/16)"),
    ("224.0.0.0/4", "multicast (224.0.0.0/4)"),
    ("240.0.0.0/4", "reserved (240.0.0.0/4, with the broadcast 255.255.255.255)"),
    ("::/96", "unspecified, loopback or IPv4-compatible (::/96)"),
    ("::ffff:0:0/96", "IPv4-mapped (::ffff:0:0/96)"),
    ("fe80::/10", "link-local (fe80::/10)"),
    ("ff00::/8", "multicast (ff00::/8)"),
))


def check_usable(prefix: IPNetwork, interconnect: ipaddress.IPv4Network) -> None:
    """Refuse what may never be a container's: a prefix that overlaps one of
    ``SPECIAL`` or the node's interconnect range."""
    for special, why in (*SPECIAL, (interconnect, f"the node's interconnect range {interconnect}")):
        if prefix.version == special.version and prefix.overlaps(special):
            raise OsctlError(INVALID, f"{prefix} cannot be given to a container: it overlaps {why}")


@dataclass(frozen=True)
class NodeEntry:
    """An address or a main-table route of the node's own (not osctld's).
    ``elsewhere``: a route that sends traffic away from the node's own links
    (via a gateway, or a blackhole/unreachable/prohibit/throw route): like the
    default route, it may hold more specific prefixes routed to containers."""

    prefix: IPNetwork
    what: str  # for errors: "address 198.18.0.1 on lan0", "route 198.18.0.0/24 dev lan0"
    route: bool
    elsewhere: bool = False


def check_node(node: Iterable[NodeEntry], wanted: list[tuple[IPNetwork, str]], routed: bool) -> None:
    """Refuse what would take the node's own network. Everything held is
    compared with the node's addresses: a prefix must not contain one.
    What the node routes to a container (``routed``: a routed netif's
    addresses and prefixes) is also compared with the node's routes, but for
    the default routes (/0): it must not overlap an on-link route (contain it,
    equal it, or lie inside it: the node's own LAN, whose neighbours it would
    take), nor contain or equal a route elsewhere. osctld's own addresses and
    routes are not ``node``'s: the caller leaves them out."""
    for entry in node:
        if entry.route and (not routed or entry.prefix.prefixlen == 0):
            continue
        for prefix, label in wanted:
            if prefix.version != entry.prefix.version:
                continue
            inside = not entry.elsewhere and entry.prefix.supernet_of(prefix)
            if prefix.supernet_of(entry.prefix) or inside:
                raise OsctlError(CONFLICT, f"{label} overlaps the node's own {entry.what}",
                                 details={"node": entry.what})


def _nested(own: NetIf, held: IPNetwork, prefix: IPNetwork, route: bool) -> bool:
    """Whether ``prefix`` (a route if ``route``, else an address) and
    ``held`` of ``own`` are an address of ``own`` inside a larger prefix
    routed to ``own``: the hosting layout, a /64 routed to the container and
    its ::1 on the interface (vpsAdminOS's ``ip add --route-as``)."""
    routes = {r.network for r in own.routes}
    addr, net = (held, prefix) if route else (prefix, held)
    return (held in routes) != route and addr != net and addr.subnet_of(net)  # type: ignore[arg-type]


def check_free(holders: Holders, wanted: list[tuple[IPNetwork, str]],
               own: NetIf | None = None, route: bool = False) -> None:
    """Refuse a prefix that overlaps one held by any netif of the node
    (the same one included), naming the holder. ``own``, the netif that is
    to hold ``wanted`` (routes if ``route``, else addresses), may hold an
    address inside a prefix routed to it (``_nested``)."""
    for ct, netif in holders:
        for held, what in netif.held():
            for prefix, label in wanted:
                if (prefix.version == held.version and prefix.overlaps(held)
                        and not (netif is own and _nested(netif, held, prefix, route))):
                    raise OsctlError(
                        CONFLICT, f"{label} overlaps {what} of {ct.pool}:{ct.id} netif {netif.name}",
                        details={"pool": ct.pool, "ct": ct.id, "netif": netif.name, "held": what})
