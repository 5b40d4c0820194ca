"""busybox: our template's rcS runs /etc/init.d/S* at boot; S40network
brings the interfaces up with busybox ``ip``.

The same script is udhcpc's event script (``-s``) for interfaces on DHCP,
so one generated file holds the whole network configuration.
"""

from __future__ import annotations

from .base import DistConfig, generated_header
from .netconfig import IfaceConfig, dad_off, ip_route_args, wait_for_dad

SCRIPT = "etc/init.d/S40network"
OWN = "Your own start-up commands go in a script of your own, /etc/init.d/S41local say."

DHCP_EVENTS = """\
deconfig)
	ip -4 addr flush dev "$interface"
	ip link set dev "$interface" up
	;;
bound|renew)
	ip -4 addr flush dev "$interface"
	ip -4 addr add "$ip/$mask" dev "$interface"
	for gw in $router; do
		ip -4 route replace default via "$gw" dev "$interface"
		break
	done
	;;
"""


def _pidfile(iface: IfaceConfig) -> str:
    return f"/run/udhcpc.{iface.name}.pid"


def _start(iface: IfaceConfig) -> list[str]:
    n = iface.name
    cmds = [c for c in [dad_off(iface)] if c] + [f"ip link set dev {n} up"]
    if iface.dhcp:
        return cmds + [f"udhcpc -b -S -i {n} -p {_pidfile(iface)} -s /{SCRIPT}"]
    for v in (4, 6):
        cmds += [f"ip -{v} addr add {a.with_prefixlen} dev {n}" for a in iface.addresses_of(v)]
        if v == 6 and (wait := wait_for_dad(iface)):
            cmds.append(wait)
        cmds += [f"ip -{v} route replace {ip_route_args(iface, r)}" for r in iface.routes_of(v)]
    return cmds


def _stop(iface: IfaceConfig) -> list[str]:
    n = iface.name
    cmds = [f"[ -f {_pidfile(iface)} ] && kill $(cat {_pidfile(iface)})"] if iface.dhcp else []
    return cmds + [f"ip -4 addr flush dev {n}", f"ip -6 addr flush dev {n} scope global",
                   f"ip link set dev {n} down"]


def _case(label: str, cmds: list[str]) -> str:
    return f"{label})\n" + "".join(f"\t{c}\n" for c in cmds) + "\t;;\n"


class BusyboxConfig(DistConfig):
    def passwd_command(self, user: str, password: str) -> tuple[list[str], bytes]:
        # busybox-static has no chpasswd; its passwd reads the new password
        # twice from a stdin that is not a terminal.
        return ["passwd", user], f"{password}\n{password}\n".encode()

    def set_network(self, ifaces: list[IfaceConfig]) -> None:
        start = ["ip link set dev lo up"] + [c for i in ifaces for c in _start(i)]
        stop = [c for i in ifaces for c in _stop(i)]
        body = _case("start", start) + _case("stop", stop)
        if any(i.dhcp for i in ifaces):
            body += DHCP_EVENTS
        self.fs.write(SCRIPT, "#!/bin/sh\n" + generated_header("#", "/" + SCRIPT, OWN)
                      + f'\ncase "$1" in\n{body}esac\n', mode=0o755)
