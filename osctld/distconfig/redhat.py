"""Red Hat family (Fedora, CentOS, AlmaLinux, Rocky): NetworkManager keyfiles.

One ``osctld-<iface>.nmconnection`` per interface, mode 0600 (NetworkManager
ignores keyfiles others can read). The default route is a static route with
``src`` rather than ``gateway=``, which has no source address. The user's own
profiles live beside ours under other names.
"""

from __future__ import annotations

import uuid

from .base import DistConfig, generated_header
from .netconfig import IfaceConfig

CONNECTIONS = "etc/NetworkManager/system-connections"
PREFIX = "osctld-"
SUFFIX = ".nmconnection"
NM_DNS = "etc/NetworkManager/conf.d/90-osctld-dns.conf"
OWN = "Your own settings go in a profile of your own under another name."


def _ip_section(iface: IfaceConfig, v: int) -> list[str]:
    addrs = iface.addresses_of(v)
    if iface.dhcp:
        method = "auto"
    elif addrs:
        method = "manual"
    else:
        method = "disabled"
    lines = [f"[ipv{v}]", f"method={method}"]
    lines += [f"address{n}={a.with_prefixlen}" for n, a in enumerate(addrs, 1)]
    for n, r in enumerate(iface.routes_of(v), 1):
        lines.append(f"route{n}={r.prefix}" + (f",{r.via}" if r.via else ""))
        if r.is_default and iface.src(v):
            lines.append(f"route{n}_options=src={iface.src(v)}")
    return lines


def _keyfile(iface: IfaceConfig) -> str:
    name = f"{PREFIX}{iface.name}"
    lines = [
        "[connection]", f"id={name}", f"uuid={uuid.uuid5(uuid.NAMESPACE_URL, 'osctld:' + name)}",
        "type=ethernet", f"interface-name={iface.name}", "autoconnect=true", "", "[ethernet]", "",
        *_ip_section(iface, 4), "", *_ip_section(iface, 6),
    ]
    path = f"/{CONNECTIONS}/{name}{SUFFIX}"
    return generated_header("#", path, OWN) + "\n" + "\n".join(lines) + "\n"


class RedHatConfig(DistConfig):
    def set_network(self, ifaces: list[IfaceConfig]) -> None:
        self.write_set(CONNECTIONS, PREFIX, SUFFIX, {i.name: _keyfile(i) for i in ifaces}, mode=0o600)

    def set_dns(self, resolvers: list[str]) -> None:
        """NetworkManager would rewrite resolv.conf from its profiles, which
        carry no resolvers: told ``dns=none``, it leaves ours alone."""
        super().set_dns(resolvers)
        self.fs.write(NM_DNS, "# written by osctld: /etc/resolv.conf is osctld's\n[main]\ndns=none\n")
