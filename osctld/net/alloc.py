"""Node-wide uniqueness: netif indices (host veth names, interconnects)
and the addresses and prefixes that netifs hold.

The netifs of every container of every pool are the allocation table:
each netif's index is persisted in its container's config, so the table
can never disagree with the interfaces that exist. Callers check and
reserve (add the netif to its container) with no await in between, so two
commands cannot take the same index or address.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable

from osctl.protocol import CONFLICT, INVALID, OsctlError

from ..model.container import Container
from ..model.netif import IPNetwork, NetIf

Holders = Iterable[tuple[Container, NetIf]]


def free_index(used: set[int], capacity: int) -> int:
    """The lowest index not in ``used``."""
    for i in range(capacity):
        if i not in used:
            return i
    raise OsctlError(CONFLICT, f"all {capacity} interconnects of the node are in use; "
                               "enlarge net.interconnect in the daemon's config")


def check_usable(prefix: IPNetwork, interconnect: ipaddress.IPv4Network) -> None:
    """Refuse what may never be a container's: link-local, loopback,
    multicast, unspecified, and anything inside the interconnect range."""
    a = prefix.network_address
    if a.is_link_local or a.is_loopback or a.is_multicast or a.is_unspecified:
        raise OsctlError(INVALID, f"{prefix} cannot be given to a container")
    if prefix.version == 4 and prefix.overlaps(interconnect):
        raise OsctlError(INVALID, f"{prefix} overlaps the node's interconnect range {interconnect}")


def check_free(holders: Holders, wanted: list[tuple[IPNetwork, str]]) -> None:
    """Refuse a prefix that overlaps one held by any netif of the node
    (the same one included), naming the holder."""
    for ct, netif in holders:
        for held, what in netif.held():
            for prefix, label in wanted:
                if prefix.version == held.version and prefix.overlaps(held):
                    raise OsctlError(
                        CONFLICT, f"{label} overlaps {what} of {ct.pool}:{ct.id} netif {netif.name}",
                        details={"pool": ct.pool, "ct": ct.id, "netif": netif.name, "held": what})
