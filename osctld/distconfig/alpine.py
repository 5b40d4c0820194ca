"""Alpine: ifupdown-ng, started by the ``networking`` OpenRC service.

ifupdown-ng takes any number of ``address`` lines in CIDR form in one
stanza; the default route is a ``post-up`` command (after the addresses
exist) because its ``gateway`` keyword has no source address.
"""

from __future__ import annotations

from .ifupdown import IfupdownConfig
from .netconfig import IfaceConfig, dad_off, ip_route_args, wait_for_dad


class AlpineConfig(IfupdownConfig):
    include = "source-directory /etc/network/interfaces.d"

    def stanza(self, iface: IfaceConfig) -> str:
        lines = [f"auto {iface.name}", f"iface {iface.name}"]
        if iface.dhcp:
            lines.append("\tuse dhcp")
        if off := dad_off(iface):
            lines.append(f"\tpre-up {off}")
        lines += [f"\taddress {a.with_prefixlen}" for v in (4, 6) for a in iface.addresses_of(v)]
        for v in (4, 6):
            if v == 6 and (wait := wait_for_dad(iface)):
                lines.append(f"\tpost-up {wait}")
            lines += [f"\tpost-up ip -{v} route replace {ip_route_args(iface, r)}" for r in iface.routes_of(v)]
        return "\n".join(lines) + "\n"
