"""Alpine: ifupdown-ng, started by the ``networking`` OpenRC service.

ifupdown-ng takes any number of ``address`` lines in CIDR form in one
stanza; the default route is a ``post-up`` command (after the addresses
exist) because its ``gateway`` keyword has no source address.
"""

from __future__ import annotations

from .ifupdown import IfupdownConfig
from .netconfig import IfaceConfig, ip_route_args


class AlpineConfig(IfupdownConfig):
    def stanza(self, iface: IfaceConfig) -> str:
        lines = [f"auto {iface.name}", f"iface {iface.name}"]
        if iface.dhcp:
            lines.append("\tuse dhcp")
        if iface.addresses_of(6) and iface.skip_dad:
            lines.append(f"\tpre-up echo 0 > /proc/sys/net/ipv6/conf/{iface.name}/accept_dad")
        lines += [f"\taddress {a.with_prefixlen}" for v in (4, 6) for a in iface.addresses_of(v)]
        lines += [f"\tpost-up ip -{v} route replace {ip_route_args(iface, r)}"
                  for v in (4, 6) for r in iface.routes_of(v)]
        return "\n".join(lines) + "\n"
