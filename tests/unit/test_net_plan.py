"""Netif model, interconnect allocation, conflicts and the host/inside plans."""

from __future__ import annotations

import ipaddress

import pytest

from osctl.protocol import CONFLICT, INVALID, OsctlError
from osctld.config import Config, NetConfig
from osctld.model.container import Container
from osctld.model.netif import NetIf, NetRoute
from osctld.model.units import parse_rate
from osctld.net import alloc, plan

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


@pytest.mark.parametrize("bad", ["10.100.3.4/32", "fe80::5/128", "127.0.0.1/32", "224.0.0.1/32"])
def test_unusable_prefixes_are_invalid(bad):
    with pytest.raises(OsctlError) as e:
        alloc.check_usable(net(bad), RNG)
    assert e.value.code == INVALID


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
    registry.pools["default"] = SimpleNamespace(cts={"c1": here})
    network = Network(NetConfig(), registry)
    incoming = SimpleNamespace(cts={"c9": ct_with(routed(index=0, addresses=("192.0.2.9/32",)),
                                                  id="c9")})
    assert network.admit(incoming) == [incoming.cts["c9"]]
    assert incoming.cts["c9"].netifs[0].index == 1
    clash = SimpleNamespace(cts={"c8": ct_with(routed(index=7, addresses=("192.0.2.2/32",)),
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
