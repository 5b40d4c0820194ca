"""Container networking seen from outside: pings between the test node and
its containers, live changes, conflicts and leaks. Everything happens in the
test node's own network namespace; forwarding is switched on there only."""

from __future__ import annotations

import ipaddress
import json

import pytest

from tests.helpers.wait import wait_for

V4 = {"bb": ["192.0.2.10", "192.0.2.11"], "deb": ["198.51.100.10", "198.51.100.11"]}
V6 = {"bb": "2001:db8::10", "deb": "2001:db8::20"}


def forwarding_on(node) -> None:
    node.nsexec("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")


def node_pings(node, addr: str, count: int = 1) -> bool:
    return node.nsexec("busybox", "ping", "-c", str(count), "-W", "1", addr, check=False).returncode == 0


def ct_pings(node, ct: str, addr: str, *extra: str) -> bool:
    return node.exec(ct, "ping", "-c", "1", "-W", "2", *extra, addr).returncode == 0


def routed_ct(node, ct: str, template: str, v4: list[str], v6: str) -> None:
    node.osctl("ct", "new", ct, "--user", "alice", "--template", template, timeout=1800)
    node.osctl("ct", "netif", "new", ct, "eth0")
    for a in [*v4, v6]:
        node.osctl("ct", "netif", "ip", "add", ct, "eth0", a)


def host_links(node) -> list[str]:
    return [link["ifname"] for link in json.loads(node.nsexec("ip", "-j", "link").stdout)]


def host_routes(node) -> str:
    return node.nsexec("ip", "route").stdout + node.nsexec("ip", "-6", "route").stdout


@pytest.mark.slow
@pytest.mark.usefixtures("debian_template")
def test_routed_busybox_and_debian(node):
    forwarding_on(node)
    node.osctl("user", "new", "alice")
    for ct, tpl in (("bb", "busybox"), ("deb", "debian")):
        routed_ct(node, ct, tpl, V4[ct], V6[ct])
        node.osctl("ct", "start", ct)

    # The node reaches every address of both containers.
    for ct in ("bb", "deb"):
        for addr in [*V4[ct], V6[ct]]:
            wait_for(lambda: node_pings(node, addr), message=f"{addr} of {ct} to answer")

    # Each container reaches the node: its gateways, IPv4 and link-local IPv6.
    # (Its init may still be adding the routes: the node's own pings need none.)
    for ct in ("bb", "deb"):
        (netif,) = node.osctl_json("ct", "netif", "ls", ct)
        gw4 = str(ipaddress.ip_network(netif["interconnect"])[1])
        wait_for(lambda: ct_pings(node, ct, gw4), message=f"{ct} to reach {gw4}")
        wait_for(lambda: ct_pings(node, ct, "fe80::1", "-I", "eth0"), message=f"{ct} to reach fe80::1")
        assert netif["rx_packets"] > 0 and netif["tx_packets"] > 0

    # The containers reach each other through the node, from their public addresses.
    for src, dst in (("bb", "deb"), ("deb", "bb")):
        for addr in (V4[dst][0], V6[dst]):
            wait_for(lambda: ct_pings(node, src, addr), message=f"{src} to reach {addr}")
    default = node.exec("bb", "ip", "route", "show", "default").stdout
    assert "via 10.100." in default and f"src {V4['bb'][0]}" in default

    # Debian on its own: after a restart, ifupdown brings eth0 up from what
    # distconfig wrote.
    node.osctl("ct", "restart", "deb")
    wait_for(lambda: node.exec("deb", "cat", "/run/network/ifstate.eth0").stdout,
             message="ifupdown to bring eth0 up", until=lambda state: "eth0" in state)
    for addr in [*V4["deb"], V6["deb"]]:
        wait_for(lambda: node_pings(node, addr), message=f"{addr} to answer after the restart")
    wait_for(lambda: ct_pings(node, "deb", V4["bb"][1]), message=f"deb to reach {V4['bb'][1]}")


def test_live_changes_hotplug_and_conflicts(node):
    forwarding_on(node)
    node.osctl("user", "new", "alice")
    routed_ct(node, "c1", "busybox", ["192.0.2.20"], "2001:db8::20")
    node.osctl("ct", "start", "c1")
    wait_for(lambda: node_pings(node, "192.0.2.20"), message="192.0.2.20 to answer")

    # A new address answers at once, the removed one stops, the default
    # route keeps going via the host with the first address left as source.
    node.osctl("ct", "netif", "ip", "add", "c1", "eth0", "192.0.2.21")
    node.osctl("ct", "netif", "ip", "add", "c1", "eth0", "2001:db8::21")
    assert node_pings(node, "192.0.2.21") and node_pings(node, "2001:db8::21")
    node.osctl("ct", "netif", "ip", "del", "c1", "eth0", "192.0.2.20")
    assert not node_pings(node, "192.0.2.20")
    assert "192.0.2.20" not in node.exec("c1", "ip", "addr").stdout
    assert node_pings(node, "192.0.2.21")
    default = node.exec("c1", "ip", "route", "show", "default").stdout
    assert "via 10.100.0.1" in default and "src 192.0.2.21" in default, default
    assert "192.0.2.20" not in host_routes(node)

    # A conflicting address on another container is refused, naming the
    # holder, and changes nothing.
    node.osctl("ct", "new", "c2", "--user", "alice")
    node.osctl("ct", "netif", "new", "c2", "eth0")
    node.osctl("ct", "start", "c2")
    def kept() -> dict:  # c2 as it is kept: what it uses now moves on
        return {k: v for k, v in node.osctl_json("ct", "show", "c2").items() if k != "usage"}

    routes, c2 = host_routes(node), kept()
    p = node.osctl("ct", "netif", "ip", "add", "c2", "eth0", "192.0.2.21", check=False)
    assert p.returncode == 6 and "default:c1 netif eth0" in p.stderr, p.stderr
    p = node.osctl("ct", "netif", "route", "add", "c2", "eth0", "192.0.2.16/28", check=False)
    assert p.returncode == 6 and "default:c1" in p.stderr, p.stderr
    assert host_routes(node) == routes and kept() == c2
    assert "192.0.2.21" not in node.exec("c2", "ip", "addr").stdout
    assert node_pings(node, "192.0.2.21")

    # Hot-plug: a second interface of a running container works at once and
    # goes without a trace.
    node.osctl("ct", "netif", "new", "c1", "eth1")
    node.osctl("ct", "netif", "ip", "add", "c1", "eth1", "203.0.113.5")
    assert node_pings(node, "203.0.113.5")
    veth = {n["name"]: n["veth"] for n in node.osctl_json("ct", "netif", "ls", "c1")}["eth1"]
    node.osctl("ct", "netif", "route", "add", "c1", "eth1", "203.0.113.128/25")
    assert "203.0.113.128/25 via 10.100." in host_routes(node)
    node.osctl("ct", "netif", "del", "c1", "eth1")
    assert veth not in host_links(node) and "203.0.113" not in host_routes(node)
    assert "eth1" not in node.exec("c1", "ip", "link").stdout

    # Shaping is on the host end, out of the container's reach.
    node.osctl("ct", "netif", "set", "c1", "eth0", "--max-rx", "8M", "--max-tx", "4M")
    qdiscs = node.nsexec("tc", "qdisc", "show").stdout
    assert "rate 8Mbit" in qdiscs and "rate 4Mbit" in qdiscs and "ingress" in qdiscs, qdiscs
    assert node_pings(node, "192.0.2.21")

    # A live rename keeps the addresses and the default route.
    node.osctl("ct", "netif", "rename", "c1", "eth0", "net0")
    assert "via 10.100.0.1 dev net0" in node.exec("c1", "ip", "route", "show", "default").stdout
    assert node_pings(node, "192.0.2.21")

    # A stop leaves no host veth and no route.
    node.osctl("ct", "stop", "c1")
    node.osctl("ct", "stop", "c2")
    assert not [n for n in host_links(node) if n.startswith("osv")]
    assert "192.0.2" not in host_routes(node) and "2001:db8" not in host_routes(node)


def test_daemon_crash_leaves_nothing_behind(node):
    node.osctl("user", "new", "alice")
    routed_ct(node, "c1", "busybox", ["192.0.2.30"], "2001:db8::30")
    node.osctl("ct", "start", "c1")
    node.kill()  # SIGKILL: no post-stop handling by the daemon from here on
    node.lxc("lxc-stop", "default", "c1", "-k")
    # What a crash half-way through a hot-plug would have left.
    node.nsexec("ip", "link", "add", "osv7", "type", "veth", "peer", "name", "leak7")
    node.start()
    assert node.osctl_json("ct", "show", "c1")["state"] == "stopped"
    wait_for(lambda: [n for n in host_links(node) if n.startswith(("osv", "leak"))], 10,
             message="the leaked veths to go", until=lambda left: not left)
    assert "192.0.2.30" not in host_routes(node) and "2001:db8" not in host_routes(node)
    # The interconnect stays with its netif and the container starts again.
    node.osctl("ct", "start", "c1")
    wait_for(lambda: node_pings(node, "192.0.2.30"), message="192.0.2.30 to answer")


def test_bridged_static_and_a_failed_start_leaves_nothing(node):
    node.nsexec("ip", "link", "add", "br0", "type", "bridge")
    node.nsexec("ip", "addr", "add", "192.168.77.1/24", "dev", "br0")
    node.nsexec("ip", "link", "set", "br0", "up")
    node.osctl("user", "new", "alice")
    node.osctl("ct", "new", "b1", "--user", "alice")
    node.osctl("ct", "netif", "new", "b1", "eth0", "--type", "bridge", "--link", "br0")
    node.osctl("ct", "netif", "ip", "add", "b1", "eth0", "192.168.77.10/24")
    node.osctl("ct", "start", "b1")
    wait_for(lambda: node_pings(node, "192.168.77.10"), message="192.168.77.10 to answer")
    assert "via 192.168.77.1" in node.exec("b1", "ip", "route", "show", "default").stdout
    (veth,) = [n["veth"] for n in node.osctl_json("ct", "netif", "ls", "b1")]
    assert "master br0" in node.nsexec("ip", "link", "show", veth).stdout

    # A bridge that is not there: the start fails saying why, and the veth
    # made before it for eth0 is gone again.
    node.osctl("ct", "stop", "b1")
    node.osctl("ct", "netif", "new", "b1", "eth1", "--type", "bridge", "--link", "nobr9")
    p = node.osctl("ct", "start", "b1", check=False)
    assert p.returncode != 0 and "nobr9" in p.stderr, p.stderr
    assert node.osctl_json("ct", "show", "b1")["state"] == "stopped"
    assert not [n for n in host_links(node) if n.startswith("osv")]


def test_ipv4_quota_counts_netif_addresses(node):
    node.osctl("user", "new", "alice")
    node.osctl("user", "set", "quota", "alice", "ipv4=2")
    node.osctl("ct", "new", "q1", "--user", "alice")
    node.osctl("ct", "netif", "new", "q1", "eth0")
    node.osctl("ct", "netif", "ip", "add", "q1", "eth0", "192.0.2.40")
    node.osctl("ct", "netif", "ip", "add", "q1", "eth0", "192.0.2.41")
    p = node.osctl("ct", "netif", "ip", "add", "q1", "eth0", "192.0.2.42", check=False)
    assert p.returncode != 0 and "ipv4" in p.stderr, p.stderr
    p = node.osctl("ct", "netif", "route", "add", "q1", "eth0", "198.51.100.0/30", check=False)
    assert p.returncode != 0 and "ipv4" in p.stderr, p.stderr
    assert [a["address"] for a in node.osctl_json("ct", "netif", "ip", "ls", "q1")] == [
        "192.0.2.40/32", "192.0.2.41/32"]
    assert node.osctl_json("user", "show", "alice")["quota_usage"]["ipv4"] == 2


def node_lan(node) -> str:
    """The test node's own "LAN": 198.18.0.1/24 on a veth whose peer is in the
    node's namespace too (198.18.0.0/15 is benchmarking space, private to
    this machine; this kernel has no dummy links)."""
    node.nsexec("ip", "link", "add", "lan0", "type", "veth", "peer", "name", "lan0p")
    node.nsexec("ip", "addr", "add", "198.18.0.1/24", "dev", "lan0")
    node.nsexec("ip", "link", "set", "lan0p", "up")
    node.nsexec("ip", "link", "set", "lan0", "up")
    return node.nsexec("ip", "route", "show", "198.18.0.0/24").stdout


def test_the_nodes_own_network_and_special_addresses_are_refused(node):
    forwarding_on(node)
    lan = node_lan(node)
    assert "dev lan0" in lan
    node.osctl("user", "new", "alice")
    routed_ct(node, "c1", "busybox", ["192.0.2.10"], "2001:db8::10")
    node.osctl("ct", "start", "c1")

    # The node's LAN, its address, a neighbour's on it: conflicts naming what
    # of the node's they would take; the node's route stays as it was.
    for verb, value, taken in (("route", "198.18.0.0/24", "198.18.0.1 on lan0"),
                               ("route", "198.18.0.0/23", "198.18.0.1 on lan0"),
                               ("route", "198.18.0.128/25", "route 198.18.0.0/24 dev lan0"),
                               ("ip", "198.18.0.1", "address 198.18.0.1 on lan0"),
                               ("ip", "198.18.0.50", "route 198.18.0.0/24 dev lan0")):
        p = node.osctl("ct", "netif", verb, "add", "c1", "eth0", value, check=False)
        assert p.returncode == 6 and taken in p.stderr, (value, p.stderr)
    assert node.nsexec("ip", "route", "show", "198.18.0.0/24").stdout == lan
    assert node.osctl_json("ct", "netif", "route", "ls", "c1") == []
    assert node_pings(node, "198.18.0.1") and node_pings(node, "192.0.2.10")

    # Not unicast, or not for a host: invalid.
    for bad in ("255.255.255.255", "240.0.0.1", "224.0.0.1", "ff02::1", "127.0.0.2", "169.254.0.5",
                "0.0.0.1", "fe80::5"):
        p = node.osctl("ct", "netif", "ip", "add", "c1", "eth0", bad, check=False)
        assert p.returncode == 2, (bad, p.stderr)
    for bad in ("240.0.0.0/4", "128.0.0.0/1", "ff00::/8"):
        p = node.osctl("ct", "netif", "route", "add", "c1", "eth0", bad, check=False)
        assert p.returncode == 2, (bad, p.stderr)

    # IPv4-mapped IPv6 is IPv4: it conflicts with the container that holds
    # the address, and is held as IPv4 where it is free.
    node.osctl("ct", "new", "c2", "--user", "alice")
    node.osctl("ct", "netif", "new", "c2", "eth0")
    p = node.osctl("ct", "netif", "ip", "add", "c2", "eth0", "::ffff:192.0.2.10", check=False)
    assert p.returncode == 6 and "default:c1 netif eth0" in p.stderr, p.stderr
    node.osctl("ct", "netif", "ip", "add", "c2", "eth0", "::ffff:192.0.2.11")
    assert [a["address"] for a in node.osctl_json("ct", "netif", "ip", "ls", "c2")] == ["192.0.2.11/32"]
    assert [a["address"] for a in node.osctl_json("ct", "netif", "ip", "ls", "c1")] == [
        "192.0.2.10/32", "2001:db8::10/128"]

    # A route the node gets later for an address a stopped container holds:
    # the container's start fails rather than take the route over.
    node.nsexec("ip", "route", "add", "192.0.2.11/32", "dev", "lan0")
    p = node.osctl("ct", "start", "c2", check=False)
    assert p.returncode != 0 and "already has a route to 192.0.2.11/32" in p.stderr, p.stderr
    assert "dev lan0" in node.nsexec("ip", "route", "show", "192.0.2.11/32").stdout
    assert node.osctl_json("ct", "show", "c2")["state"] == "stopped"


def test_a_routed_ipv6_prefix_starts_and_restarts(node):
    """The prefix route via the container's address goes in after the host
    route that makes that address reachable, at every start; and the
    hosting layout, a /64 routed to the netif with its ::1 configured there,
    is no overlap in either order."""
    forwarding_on(node)
    node.osctl("user", "new", "alice")
    routed_ct(node, "p1", "busybox", ["192.0.2.30"], "2001:db8::10")
    node.osctl("ct", "netif", "route", "add", "p1", "eth0", "2001:db8:1::/64")
    node.osctl("ct", "netif", "ip", "add", "p1", "eth0", "2001:db8:1::1")
    # The other order, on a second netif: the address first, then its /64.
    node.osctl("ct", "netif", "new", "p1", "eth1")
    node.osctl("ct", "netif", "ip", "add", "p1", "eth1", "2001:db8:2::1")
    node.osctl("ct", "netif", "route", "add", "p1", "eth1", "2001:db8:2::/64")
    # Another netif's prefix still may not take the address, nor the other way.
    node.osctl("ct", "new", "p2", "--user", "alice")
    node.osctl("ct", "netif", "new", "p2", "eth0")
    node.osctl("ct", "netif", "ip", "add", "p2", "eth0", "2001:db8::40")
    p = node.osctl("ct", "netif", "ip", "add", "p2", "eth0", "2001:db8:1::2", check=False)
    assert p.returncode == 6 and "default:p1 netif eth0" in p.stderr, p.stderr
    p = node.osctl("ct", "netif", "route", "add", "p2", "eth0", "2001:db8:2::/48", check=False)
    assert p.returncode == 6 and "default:p1 netif eth1" in p.stderr, p.stderr

    node.osctl("ct", "start", "p1")
    for _ in range(2):  # a start, then a restart, each with the whole layout at once
        for addr in ("2001:db8::10", "2001:db8:1::1", "2001:db8:2::1"):
            wait_for(lambda: node_pings(node, addr), message=f"{addr} to answer")
        routes = host_routes(node)
        assert "2001:db8:1::/64 via 2001:db8::10" in routes, routes
        assert "2001:db8:2::/64 via 2001:db8:2::1" in routes, routes
        node.osctl("ct", "restart", "p1")
        assert node.osctl_json("ct", "show", "p1")["state"] == "running"
    node.osctl("ct", "stop", "p1")
    assert "2001:db8" not in host_routes(node)
