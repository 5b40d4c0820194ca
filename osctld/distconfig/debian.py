"""Debian and Ubuntu: classic ifupdown, brought up by networking.service.

Where ifupdown is not installed but systemd-networkd is enabled (Ubuntu's
images, whose netplan renders to networkd), the network goes to networkd.

One ``inet`` and one ``inet6 static`` stanza per interface: the first
address of each family is the stanza's own, the others and the routes are
``up`` lines, because ifupdown knows one address per stanza and no source
address for its gateway. The default route of a routed interface leaves from
the first public address, not from the interconnect.
"""

from __future__ import annotations

from .ifupdown import IfupdownConfig
from .netconfig import IfaceConfig, ip_route_args
from .networkd import uses_networkd, write_networkd

FAMILY = {4: "inet", 6: "inet6"}
IFUP = ("sbin/ifup", "usr/sbin/ifup")


class DebianConfig(IfupdownConfig):
    def set_network(self, ifaces: list[IfaceConfig]) -> None:
        if not any(self.fs.exists(p) for p in IFUP) and uses_networkd(self):
            write_networkd(self, ifaces)
        else:
            super().set_network(ifaces)

    def stanza(self, iface: IfaceConfig) -> str:
        lines = [f"auto {iface.name}"]
        for v in (4, 6):
            addrs = iface.addresses_of(v)
            if iface.dhcp and v == 4:
                lines.append(f"iface {iface.name} inet dhcp")
            elif addrs:
                lines += [f"iface {iface.name} {FAMILY[v]} static", f"\taddress {addrs[0].with_prefixlen}"]
            else:
                continue
            if v == 6 and iface.skip_dad:
                lines.append("\tdad-attempts 0")
            for a in addrs[1:]:
                lines.append(f"\tup ip -{v} addr replace {a.with_prefixlen} dev {iface.name}"
                             + (" nodad" if v == 6 and iface.skip_dad else ""))
                lines.append(f"\tdown ip -{v} addr del {a.with_prefixlen} dev {iface.name}")
            lines += [f"\tup ip -{v} route replace {ip_route_args(iface, r)}" for r in iface.routes_of(v)]
        return "\n".join(lines) + "\n"
