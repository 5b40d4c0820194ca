"""Netif model, interconnect allocation, conflicts and the host/inside plans."""

from __future__ import annotations

import ipaddress

import pytest

from osctl.protocol import CONFLICT, INVALID, OsctlError
from osctld.config import Config, NetConfig
from osctld.model.container import Container
from osctld.model.netif import NetIf, NetRoute, parse_ip, parse_prefix
from osctld.model.units import parse_rate
from osctld.net import alloc, netlink, plan

RNG = ipaddress.IPv4Network("10.100.0.0/16")
ip, net = ipaddress.ip_address, ipaddress.ip_network


def routed(index: int = 5, addresses=("192.0.2.1/32", "192.0.2.2/32", "2001:db8::1/128"),
           routes=()) -> NetIf:
    return NetIf(name="eth0", index=index, hwaddr="02:00:00:00:00:01",
                 addresses=list(addresses), routes=list(routes))


def ct_with(*netifs: NetIf, id: str = "c1") -> Container:
    return Container(id=id, pool="default", user="alice", distribution="busybox",
                     version="1", netifs=list(netifs))


def test_interconnect_ends_per_index():
    assert plan.interconnect(RNG, 0) == net("10.100.0.0/30")
    host, ct = plan.ends(RNG, 5)
    assert (str(host), str(ct)) == ("10.100.0.21/30", "10.100.0.22/30")
    assert plan.capacity(RNG) == 16384
    with pytest.raises(OsctlError):
        plan.interconnect(RNG, 16384)


def test_host_plan_routes_every_address_via_the_container():
    n = routed(routes=[NetRoute("203.0.113.0/28"), NetRoute("2001:db8:1::/48")])
    hp = plan.host_plan(RNG, "osv5", n)
    assert [str(a) for a in hp.addresses] == ["10.100.0.21/30", "fe80::1/64"]
    assert hp.routes == {
        (net("192.0.2.1/32"), ip("10.100.0.22")),
        (net("192.0.2.2/32"), ip("10.100.0.22")),
        (net("2001:db8::1/128"), None),  # on-link: the container answers ND for it
        (net("203.0.113.0/28"), ip("10.100.0.22")),
        (net("2001:db8:1::/48"), ip("2001:db8::1")),
    }


def test_inside_routed_interconnect_first_default_from_first_public():
    cfg = plan.inside(RNG, routed())
    assert [str(a) for a in cfg.addresses] == [
        "10.100.0.22/30", "192.0.2.1/32", "192.0.2.2/32", "2001:db8::1/128"]
    assert (cfg.gateway4, cfg.src4) == (ip("10.100.0.21"), ip("192.0.2.1"))
    assert (cfg.gateway6, cfg.src6) == (ip("fe80::1"), ip("2001:db8::1"))
    assert cfg.kind == "routed" and cfg.hwaddr == "02:00:00:00:00:01"
    assert plan.inside(RNG, routed(addresses=("192.0.2.1/32",))).gateway6 is None


def test_inside_bridged_gateway_auto_is_the_bridges_first_address():
    n = NetIf(name="eth1", type="bridge", link="br0", index=1, addresses=["192.168.5.10/24"],
              routes=[NetRoute("10.9.0.0/16", "192.168.5.254")])
    bridge = [ipaddress.ip_interface("fe80::5/64"), ipaddress.ip_interface("192.168.5.1/24")]
    cfg = plan.inside(RNG, n, bridge)
    assert cfg.gateway4 == ip("192.168.5.1") and cfg.gateway6 is None
    assert cfg.routes[0].prefix == net("10.9.0.0/16") and cfg.routes[0].via == ip("192.168.5.254")
    n.gateway4 = "none"
    assert plan.inside(RNG, n, bridge).gateway4 is None
    assert plan.host_plan(RNG, "osv1", n).bridge == "br0"


def test_free_index_skips_used_and_fills_holes():
    assert alloc.free_index({0, 1, 3}, 8) == 2
    with pytest.raises(OsctlError) as e:
        alloc.free_index({0}, 1)
    assert e.value.code == CONFLICT


def test_conflicts_name_the_holder():
    c1 = ct_with(routed(routes=[NetRoute("203.0.113.0/28")]))
    holders = [(c1, c1.netifs[0])]
    with pytest.raises(OsctlError) as e:
        alloc.check_free(holders, [(net("192.0.2.2/32"), "address 192.0.2.2")])
    assert e.value.code == CONFLICT and "default:c1 netif eth0" in e.value.message
    with pytest.raises(OsctlError):  # a prefix over a held address
        alloc.check_free(holders, [(net("192.0.2.0/24"), "route 192.0.2.0/24")])
    with pytest.raises(OsctlError):  # an address inside a routed prefix
        alloc.check_free(holders, [(net("203.0.113.7/32"), "address 203.0.113.7")])
    alloc.check_free(holders, [(net("192.0.2.3/32"), "address 192.0.2.3")])


def test_an_address_inside_the_same_netifs_routed_prefix_is_no_conflict():
    """The hosting layout: a /64 routed to the netif and its ::1 on it, in
    either order; nothing else of the same netif overlaps."""
    n = routed(routes=[NetRoute("2001:db8:1::/64")])
    holders = [(ct_with(n), n)]
    alloc.check_free(holders, [(net("2001:db8:1::1/128"), "address 2001:db8:1::1")], own=n)
    alloc.check_free(holders, [(net("2001:db8::/64"), "route 2001:db8::/64")], own=n, route=True)
    for wanted, route in ((net("2001:db8:1::/64"), True), (net("2001:db8:1::/80"), True),
                          (net("2001:db8::1/128"), True), (net("2001:db8::1/128"), False),
                          (net("2001:db8:1::1/128"), True)):
        with pytest.raises(OsctlError):  # a route twice, routes in routes, an address twice
            alloc.check_free(holders, [(wanted, str(wanted))], own=n, route=route)
    other = routed(index=6, addresses=())
    with pytest.raises(OsctlError, match="netif eth0"):  # another netif's prefix stays its own
        alloc.check_free([*holders, (ct_with(other, id="c2"), other)],
                         [(net("2001:db8:1::2/128"), "address 2001:db8:1::2")], own=other)


def test_sync_host_adds_on_link_routes_before_the_ones_via_them():
    """The kernel refuses a prefix via the container's IPv6 address before
    the on-link host route to that address (EHOSTUNREACH)."""
    n = routed(addresses=("2001:db8:ffff::1/128",),
               routes=[NetRoute("2001:db8::/64"), NetRoute("2001:db8:1::/64")])
    order = netlink._next_hops_last(plan.host_plan(RNG, "osv5", n).routes)
    assert order[0] == (net("2001:db8:ffff::1/128"), None), order
    assert {hop for _, hop in order[1:]} == {ip("2001:db8:ffff::1")}


@pytest.mark.parametrize("bad", [
    "10.100.3.4/32", "fe80::5/128", "127.0.0.1/32", "224.0.0.1/32",
    "255.255.255.255/32", "240.0.0.1/32", "0.0.0.1/32", "169.254.1.1/32", "ff02::1/128",
    "::/128", "::1/128", "::192.0.2.10/128", "::fffe:0:0/95",
    # prefixes that hold special addresses without starting with one
    "169.252.0.0/14", "128.0.0.0/1", "0.0.0.0/0", "::/0", "fe00::/7", "10.0.0.0/8"])
def test_unusable_prefixes_are_invalid(bad):
    with pytest.raises(OsctlError) as e:
        alloc.check_usable(net(bad), RNG)
    assert e.value.code == INVALID


@pytest.mark.parametrize("good", [
    "192.0.2.10/32", "198.51.100.0/24", "10.1.2.3/32", "172.16.0.0/12", "100.64.0.1/32",
    "198.18.0.0/15", "2001:db8::1/128", "fd00::/8", "64:ff9b::/96", "2000::/3"])
def test_unicast_private_and_documentation_prefixes_are_usable(good):
    alloc.check_usable(net(good), RNG)


def test_special_blocks_agree_with_ipaddress():
    """Both ends of every special block are what ipaddress calls not for a
    host (and 0.0.0.0/8, RFC 1122 'this network', private to it)."""
    def special(a) -> bool:
        return (a.is_unspecified or a.is_loopback or a.is_link_local or a.is_multicast
                or (a.version == 4 and a.is_reserved) or a in net("0.0.0.0/8")
                or (a.version == 6 and (a.ipv4_mapped is not None or a in net("::/96"))))
    for block, _ in alloc.SPECIAL:
        assert special(block[0]) and special(block[-1]), block
    for ok in ("192.0.2.1", "10.0.0.1", "1.0.0.0", "223.255.255.255", "2001:db8::1", "fd00::1"):
        assert not special(ip(ok)) and all(not ip(ok) in b for b, _ in alloc.SPECIAL)


def test_ipv4_mapped_ipv6_is_held_as_ipv4():
    assert parse_ip("::ffff:192.0.2.10") == ip("192.0.2.10")
    assert parse_prefix("::ffff:192.0.2.0/120") == net("192.0.2.0/24")
    assert parse_prefix("2001:db8::/32") == net("2001:db8::/32")
    assert str(routed().parse_address("::ffff:192.0.2.10")) == "192.0.2.10/32"
    b = NetIf(name="eth1", type="bridge", link="br0")
    assert str(b.parse_address("::ffff:192.168.5.9/120")) == "192.168.5.9/24"
    # so the per-version conflict check sees the holder
    c1 = ct_with(routed(addresses=("192.0.2.10/32",)))
    mapped = routed().parse_address("::ffff:192.0.2.10")
    with pytest.raises(OsctlError) as e:
        alloc.check_free([(c1, c1.netifs[0])], [(net(mapped.ip), "address ::ffff:192.0.2.10")])
    assert e.value.code == CONFLICT


NODE = [
    alloc.NodeEntry(net("198.18.0.1/32"), "address 198.18.0.1 on lan0", route=False),
    alloc.NodeEntry(net("198.18.0.0/24"), "route 198.18.0.0/24 dev lan0", route=True),
    alloc.NodeEntry(net("10.0.0.0/8"), "route 10.0.0.0/8 via 198.18.0.254 dev lan0",
                    route=True, elsewhere=True),
    alloc.NodeEntry(net("0.0.0.0/0"), "route 0.0.0.0/0 via 198.18.0.254 dev lan0",
                    route=True, elsewhere=True),
    alloc.NodeEntry(net("2001:db8:ff::/64"), "route 2001:db8:ff::/64 dev lan0", route=True),
]


@pytest.mark.parametrize("prefix, routed, taken", [
    ("198.18.0.0/24", True, "address 198.18.0.1 on lan0"),  # the node's LAN itself
    ("198.18.0.0/16", True, "address 198.18.0.1 on lan0"),  # holds the node's address
    ("198.18.0.1/32", True, "address 198.18.0.1 on lan0"),
    ("198.18.0.1/32", False, "address 198.18.0.1 on lan0"),  # bridged: the node's own address
    ("198.18.0.50/32", True, "route 198.18.0.0/24 dev lan0"),  # a LAN neighbour's address
    ("198.18.0.128/25", True, "route 198.18.0.0/24 dev lan0"),
    ("10.0.0.0/8", True, "route 10.0.0.0/8 via 198.18.0.254 dev lan0"),  # equal to one elsewhere
    ("2001:db8:ff::5/128", True, "route 2001:db8:ff::/64 dev lan0"),
])
def test_what_takes_the_nodes_network_is_a_conflict_naming_it(prefix, routed, taken):
    with pytest.raises(OsctlError) as e:
        alloc.check_node(NODE, [(net(prefix), f"route {prefix}")], routed)
    assert e.value.code == CONFLICT
    assert e.value.message == f"route {prefix} overlaps the node's own {taken}"


@pytest.mark.parametrize("prefix, routed", [
    ("198.18.0.50/32", False),  # bridged: beside the node on its LAN, not routed by it
    ("10.5.0.0/24", True),  # more specific inside a route via a gateway, as inside the default
    ("192.0.2.10/32", True),
    ("2001:db8::1/128", True),
])
def test_what_leaves_the_nodes_network_alone_is_allowed(prefix, routed):
    alloc.check_node(NODE, [(net(prefix), "x")], routed)


def test_addresses_by_kind():
    r = routed()
    assert str(r.parse_address("192.0.2.9")) == "192.0.2.9/32"
    assert str(r.parse_address("2001:db8::9")) == "2001:db8::9/128"
    with pytest.raises(OsctlError):
        r.parse_address("192.0.2.9/24")
    b = NetIf(name="eth1", type="bridge", link="br0")
    assert str(b.parse_address("192.168.5.9/24")) == "192.168.5.9/24"
    with pytest.raises(OsctlError):
        b.parse_address("192.168.5.9")


@pytest.mark.parametrize("kw", [dict(name="Eth0"), dict(name="a" * 16), dict(type="bridge"),
                                dict(link="br0"), dict(hwaddr="01:00:00:00:00:01"),
                                dict(max_tx=-1), dict(gateway4="nope")])
def test_netif_validation(kw):
    with pytest.raises(OsctlError):
        NetIf(**{"name": "eth0", **kw})


def test_netifs_persist_with_their_container():
    c = ct_with(routed(routes=[NetRoute("203.0.113.0/28", "10.100.0.22")]))
    back = Container.from_dict(c.to_dict(), "default")
    assert back.netifs == c.netifs
    assert back.netif("eth0").routes[0].via == "10.100.0.22"
    with pytest.raises(OsctlError):
        back.netif("eth9")


def test_random_hwaddr_is_local_unicast_and_fixed_per_netif():
    a, b = NetIf(name="eth0"), NetIf(name="eth0")
    assert a.hwaddr != b.hwaddr
    first = int(a.hwaddr[:2], 16)
    assert first & 0x02 and not first & 0x01


def test_rates_and_net_config():
    assert parse_rate("100M") == 100_000_000 and parse_rate("1.5g") == 1_500_000_000
    assert parse_rate("64kbit") == 64_000 and parse_rate(0) == 0
    with pytest.raises(OsctlError):
        parse_rate("fast")
    assert Config(net={"interconnect": "10.200.0.0/24"}).net.interconnect == "10.200.0.0/24"
    for bad in ({"interconnect": "fd00::/64"}, {"interconnect": "10.0.0.0/31"},
                {"veth_prefix": "toolongname"}):
        with pytest.raises(ValueError):
            NetConfig(**bad)


def test_admitting_a_pool_refuses_held_addresses_and_renumbers_taken_indices():
    from types import SimpleNamespace

    from osctld.net.network import Network
    from osctld.state import Registry

    here = ct_with(routed(index=0))
    registry = Registry()
    registry.pools["default"] = SimpleNamespace(cts={"c1": here}, vms={})
    network = Network(NetConfig(), registry)
    incoming = SimpleNamespace(vms={}, cts={"c9": ct_with(routed(index=0, addresses=("192.0.2.9/32",)),
                                                  id="c9")})
    assert network.admit(incoming) == [incoming.cts["c9"]]
    assert incoming.cts["c9"].netifs[0].index == 1
    clash = SimpleNamespace(vms={}, cts={"c8": ct_with(routed(index=7, addresses=("192.0.2.2/32",)),
                                               id="c8")})
    with pytest.raises(OsctlError) as e:
        network.admit(clash)
    assert e.value.code == CONFLICT and "default:c1" in e.value.message


def test_a_netif_snapshot_shares_nothing_with_it():
    n = routed(routes=[NetRoute("203.0.113.0/28")])
    snap = NetIf.from_dict(n.to_dict())
    n.addresses.append("192.0.2.3/32")
    n.routes.append(NetRoute("203.0.113.16/28"))
    assert len(snap.addresses) == 3 and len(snap.routes) == 1
