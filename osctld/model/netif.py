"""A network interface of a container: what is configured (persisted).

Routed (the default): a veth whose host end the node routes to; the
container's addresses are host routes on the node, so each is held as a
single address (/32, /128). Bridged: a veth whose host end joins an existing
bridge; addresses carry their prefix, with a gateway or DHCP. Either kind
may have routed prefixes: networks routed to the container but not assigned
on its interface.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field

from osctl.protocol import INVALID, OsctlError

from .units import RATE_RANGE

ROUTED, BRIDGE = "routed", "bridge"
KINDS = (ROUTED, BRIDGE)
# The name inside the container: a kernel interface name (15 characters).
IFNAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,14}$")
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
# Bridged gateways: "auto" is the bridge's first address, "none" no default route.
AUTO, NONE = "auto", "none"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def check_ifname(value: object) -> str:
    if not isinstance(value, str) or not IFNAME_RE.match(value):
        raise OsctlError(INVALID, f"invalid interface name {value!r}: use 1-15 of a-z 0-9 _ -, "
                                  "starting with a letter")
    return value


def check_hwaddr(value: str) -> str:
    mac = value.lower()
    if not MAC_RE.match(mac) or int(mac[:2], 16) & 1:
        raise OsctlError(INVALID, f"invalid MAC address {value!r}: give a unicast aa:bb:cc:dd:ee:ff")
    return mac


def random_hwaddr() -> str:
    """A locally administered unicast MAC, fixed at creation so that the
    container's link-local address and DHCP leases survive restarts."""
    b = bytearray(os.urandom(6))
    b[0] = (b[0] & 0xFC) | 0x02
    return ":".join(f"{x:02x}" for x in b)


# IPv4-mapped IPv6 (::ffff:a.b.c.d) is IPv4 written as IPv6: held as IPv4,
# so that conflicts (checked per IP version) see it.
MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def unmapped_interface(iface: IPInterface) -> IPInterface:
    """``iface`` as IPv4 if it is IPv4-mapped IPv6 with a prefix inside ::ffff:0:0/96."""
    if iface.version == 6 and iface.network.prefixlen >= MAPPED.prefixlen and iface.ip in MAPPED:
        v4_prefixlen = iface.network.prefixlen - MAPPED.prefixlen
        return ipaddress.IPv4Interface((iface.ip.ipv4_mapped, v4_prefixlen))
    return iface


def parse_ip(value: str) -> IPAddress:
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        raise OsctlError(INVALID, f"invalid IP address {value!r}") from None
    return getattr(ip, "ipv4_mapped", None) or ip


def parse_prefix(value: str) -> IPNetwork:
    try:
        return unmapped_interface(ipaddress.ip_interface(ipaddress.ip_network(value))).network
    except ValueError as e:
        raise OsctlError(INVALID, f"invalid prefix {value!r}: {e}") from None


@dataclass
class NetRoute:
    """A prefix routed to the container; ``via`` is the next hop (routed:
    on the node, default the container's interconnect address; bridged:
    inside the container)."""

    prefix: str
    via: str | None = None

    @property
    def network(self) -> IPNetwork:
        return ipaddress.ip_network(self.prefix)

    @property
    def gateway(self) -> IPAddress | None:
        return ipaddress.ip_address(self.via) if self.via else None

    def to_dict(self) -> dict:
        return {"prefix": self.prefix, "via": self.via}


@dataclass
class NetIf:
    name: str
    type: str = ROUTED
    # Allocated by the node (osctld.net): the host veth's name and, for a
    # routed netif, its interconnect /30. Unique among all netifs of a node.
    index: int = -1
    link: str | None = None  # the bridge of a bridged netif
    hwaddr: str = field(default_factory=random_hwaddr)
    addresses: list[str] = field(default_factory=list)
    routes: list[NetRoute] = field(default_factory=list)
    gateway4: str = AUTO  # bridged only
    gateway6: str = AUTO
    dhcp: bool = False  # bridged only
    max_tx: int | None = None  # bits per second, shaped on the host veth
    max_rx: int | None = None

    PERSISTED = ("name", "type", "index", "link", "hwaddr", "addresses", "gateway4",
                 "gateway6", "dhcp", "max_tx", "max_rx")

    def __post_init__(self) -> None:
        check_ifname(self.name)
        if self.type not in KINDS:
            raise OsctlError(INVALID, f"invalid netif type {self.type!r}: routed or bridge")
        if self.type == BRIDGE and not self.link:
            raise OsctlError(INVALID, "a bridged netif needs --link BRIDGE")
        if self.type == ROUTED and (self.link or self.dhcp):
            raise OsctlError(INVALID, "--link and DHCP are for bridged netifs only")
        self.hwaddr = check_hwaddr(self.hwaddr)
        for gw in (self.gateway4, self.gateway6):
            if gw not in (AUTO, NONE):
                parse_ip(gw)
        for key in ("max_tx", "max_rx"):
            if getattr(self, key) is not None:
                RATE_RANGE.check(key.replace("_", "-"), getattr(self, key))

    # --- addresses -------------------------------------------------------------

    def parse_address(self, value: str) -> IPInterface:
        """An address as this kind of netif holds it: routed ones are single
        addresses (a larger prefix is a route, not an address); bridged ones
        need their prefix, which says what is on the bridge."""
        try:
            iface = unmapped_interface(ipaddress.ip_interface(value))
        except ValueError:
            raise OsctlError(INVALID, f"invalid address {value!r}") from None
        if self.type == ROUTED and "/" in value and iface.network.num_addresses != 1:
            raise OsctlError(INVALID, f"{value}: a routed netif holds single addresses; "
                                      "route a prefix with 'netif route add'")
        if self.type == BRIDGE and "/" not in value:
            raise OsctlError(INVALID, f"{value}: give the prefix on the bridge, e.g. {value}/24")
        return iface

    @property
    def ips(self) -> list[IPInterface]:
        return [ipaddress.ip_interface(a) for a in self.addresses]

    def ips_of(self, version: int) -> list[IPInterface]:
        return [a for a in self.ips if a.version == version]

    def held(self) -> list[tuple[IPNetwork, str]]:
        """What this netif holds on the node: each address as a single
        address, each routed prefix whole; with a label for errors."""
        out = [(ipaddress.ip_network(a.ip), f"address {a.ip}") for a in self.ips]
        out += [(r.network, f"route {r.prefix}") for r in self.routes]
        return out

    # --- persistence -----------------------------------------------------------

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.PERSISTED}
        d["addresses"] = list(self.addresses)  # a copy: snapshots must not share it
        d["routes"] = [r.to_dict() for r in self.routes]
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "netif") -> "NetIf":
        """As saved; a rate out of range (saved before there were bounds) is
        clamped, with a warning naming ``where``."""
        routes = [NetRoute(**r) for r in d.get("routes") or []]
        d = {**d, **{k: RATE_RANGE.clamp(f"{where} {d.get('name')}: {k}", d.get(k))
                     for k in ("max_tx", "max_rx") if k in d}}
        return cls(routes=routes, **{k: d[k] for k in cls.PERSISTED if k in d})

    def public(self) -> dict:
        return self.to_dict()
