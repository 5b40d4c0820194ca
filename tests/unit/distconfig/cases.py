"""The interfaces every distribution's golden files are written from."""

from __future__ import annotations

from ipaddress import ip_address, ip_interface, ip_network

from osctld.distconfig.netconfig import BRIDGE, ROUTED, IfaceConfig, Route


def routed() -> IfaceConfig:
    """Interconnect, two public IPv4, one public IPv6, a routed-in prefix."""
    return IfaceConfig(
        name="eth0", kind=ROUTED,
        addresses=[ip_interface("10.100.0.2/30"), ip_interface("192.0.2.10/32"),
                   ip_interface("192.0.2.11/32"), ip_interface("2001:db8::10/128")],
        gateway4=ip_address("10.100.0.1"), gateway6=ip_address("fe80::1"),
        src4=ip_address("192.0.2.10"), src6=ip_address("2001:db8::10"),
        routes=[Route(ip_network("198.51.100.0/28"), ip_address("10.100.0.1"))],
        hwaddr="02:00:00:00:00:01",
    )


def bridged_static() -> IfaceConfig:
    return IfaceConfig(
        name="eth1", kind=BRIDGE,
        addresses=[ip_interface("203.0.113.50/24"), ip_interface("2001:db8:1::50/64")],
        gateway4=ip_address("203.0.113.1"), gateway6=ip_address("2001:db8:1::1"),
        src4=ip_address("203.0.113.50"), src6=ip_address("2001:db8:1::50"),
    )


def bridged_dhcp() -> IfaceConfig:
    return IfaceConfig(name="eth2", kind=BRIDGE, addresses=[], dhcp=True)


def all_kinds() -> list[IfaceConfig]:
    return [routed(), bridged_static(), bridged_dhcp()]
