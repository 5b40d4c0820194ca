"""systemd-networkd: Arch, and any distribution that uses it.

One ``10-osctld-<iface>.network`` per interface in /etc/systemd/network; the
prefix sorts it before the distribution's own catch-all files, since
networkd applies the first file that matches a link. The user's additions go
in drop-ins (``10-osctld-<iface>.network.d/*.conf``), which survive.
"""

from __future__ import annotations

from .base import DistConfig, generated_header
from .netconfig import ROUTED, IfaceConfig

NETWORK_DIR = "etc/systemd/network"
PREFIX = "10-osctld-"
SUFFIX = ".network"
ENABLED = "etc/systemd/system/multi-user.target.wants/systemd-networkd.service"


def _network(iface: IfaceConfig) -> str:
    path = f"/{NETWORK_DIR}/{PREFIX}{iface.name}{SUFFIX}"
    own = f"Your own settings go in drop-ins: {path}.d/*.conf"
    lines = ["[Match]", f"Name={iface.name}", "", "[Network]"]
    if iface.dhcp:
        lines.append("DHCP=yes")
    elif iface.kind == ROUTED:
        lines.append("IPv6AcceptRA=no")
    for v in (4, 6):
        for a in iface.addresses_of(v):
            lines += ["", "[Address]", f"Address={a.with_prefixlen}"]
            if v == 6 and iface.skip_dad:
                lines.append("DuplicateAddressDetection=none")
        for r in iface.routes_of(v):
            lines += ["", "[Route]"]
            if not r.is_default:
                lines.append(f"Destination={r.prefix}")
            lines.append(f"Gateway={r.via}" if r.via else "Scope=link")
            if r.is_default and iface.src(v):
                lines.append(f"PreferredSource={iface.src(v)}")
    return generated_header("#", path, own) + "\n" + "\n".join(lines) + "\n"


def uses_networkd(dist: DistConfig) -> bool:
    """Whether the rootfs starts systemd-networkd at boot."""
    return dist.fs.readlink(ENABLED) is not None


def write_networkd(dist: DistConfig, ifaces: list[IfaceConfig]) -> None:
    dist.write_set(NETWORK_DIR, PREFIX, SUFFIX, {i.name: _network(i) for i in ifaces})


class NetworkdConfig(DistConfig):
    def set_network(self, ifaces: list[IfaceConfig]) -> None:
        write_networkd(self, ifaces)
