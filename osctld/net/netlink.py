"""Netlink work, through pyroute2: blocking functions, run off the event loop.

Host-side functions take an ``IPRoute`` of the daemon's own namespace and
make the host end of a netif match its ``HostPlan``; they are idempotent,
so start, hot-plug, live changes and reconciliation all use the same ones.
``in_netns`` runs a function with an ``IPRoute`` opened inside a
container's network namespace: a fresh thread enters the namespace with
setns(2) (a thread's network namespace is its own), opens the netlink
socket there and is thrown away afterwards, so the daemon never forks and
no other thread ever sees the container's view.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import logging
import os
import socket
import threading
from typing import Any, Callable

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import rt_type
from pyroute2.netlink.rtnl.ifaddrmsg import IFA_F_NODAD
from pyroute2.protocols import ETH_P_ALL

from osctl.protocol import CONFLICT, OsctlError

from ..distconfig.netconfig import IfaceConfig
from .alloc import NodeEntry
from .plan import HostPlan

CLONE_NEWNET = 0x40000000
# The routing protocol number osctld marks its host routes with, so that
# reconciliation tells them from anyone else's.
RTPROT_OSCTLD = 199
RT_TABLE_MAIN = 254
# Routes that take traffic nowhere on the node's links (and have no device).
ELSEWHERE_TYPES = ("blackhole", "unreachable", "prohibit", "throw")
TBF_LATENCY = "50ms"
ROOT_HANDLE = 0x10000  # 1:
INGRESS = 0xFFFF0000  # ffff:
IFB_SUFFIX = "i"

_libc = ctypes.CDLL(None, use_errno=True)
# pyroute2 logs every netlink message at debug level, and each of its sockets
# makes an event loop that asyncio announces: far too much for osctld's log.
for _name in ("pyroute2", "asyncio"):
    logging.getLogger(_name).setLevel(logging.INFO)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def in_netns(pid: int, fn: Callable[[IPRoute], Any]) -> Any:
    """``fn(ipr)`` with ``ipr`` in the network namespace of process ``pid``."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(target)  # this thread only; it ends right after
            finally:
                os.close(target)
            with IPRoute() as ipr:
                result["value"] = fn(ipr)
        except BaseException as e:  # handed to the caller's thread
            result["error"] = e

    t = threading.Thread(target=run, name=f"netns-{pid}", daemon=True)
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


def on_host(fn: Callable[[IPRoute], Any], strict_check: bool = False) -> Any:
    with IPRoute(strict_check=strict_check) as ipr:
        return fn(ipr)


def _ignore(codes: tuple[int, ...], fn: Callable, *args, **kw) -> None:
    try:
        fn(*args, **kw)
    except NetlinkError as e:
        if e.code not in codes:
            raise


def link_index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


# --- the host end ----------------------------------------------------------------

def create_veth(ipr: IPRoute, veth: str, peer: str, hwaddr: str, pid: int) -> None:
    """A veth pair whose peer is born inside the namespace of ``pid``, named
    as the container calls it and left down, for the container's own init
    (or ``configure_inside``) to bring up."""
    ipr.link("add", ifname=veth, kind="veth",
             peer={"ifname": peer, "address": hwaddr, "net_ns_pid": pid})


def create_tap(ipr: IPRoute, tap: str) -> None:
    """A persistent tap device for a VM's netif, for its QEMU to attach to
    (``-netdev tap,ifname=...``); configured on the node as a host veth is."""
    ipr.link("add", ifname=tap, kind="tuntap", mode="tap")


def source_for(ipr: IPRoute, peer: str) -> str:
    """The source address the node's routing gives packets to ``peer``."""
    for r in ipr.route("get", dst=peer):
        src = r.get_attr("RTA_PREFSRC")
        if src:
            return src
    raise NetlinkError(errno.ENETUNREACH, f"no source address towards {peer}")


def delete_link(ipr: IPRoute, name: str) -> None:
    idx = link_index(ipr, name)
    if idx is not None:
        _ignore((errno.ENODEV,), ipr.link, "del", index=idx)


def delete_netif(ipr: IPRoute, veth: str) -> None:
    """The host end (and with it the container's end) and its IFB device."""
    delete_link(ipr, veth)
    delete_link(ipr, ifb_name(veth))


def host_end(name: str) -> str:
    """The host end a link of osctld's belongs to: itself or its IFB's veth."""
    return name.removesuffix(IFB_SUFFIX)


def _ours(name: str, prefix: str) -> bool:
    return name.startswith(prefix) and host_end(name)[len(prefix):].isdigit()


def our_links(ipr: IPRoute, prefix: str) -> set[str]:
    """Links of the node named as osctld names host ends (prefix + index:
    veths and VM taps) and their IFB devices."""
    names = (link.get_attr("IFLA_IFNAME") or "" for link in ipr.get_links())
    return {name for name in names if _ours(name, prefix)}


def _dump(fn: Callable, **kernel_filter) -> list:
    """A dump the kernel filters (on a strict-checking ``IPRoute``): pyroute2
    would otherwise ask for everything and filter it itself, and parsing the
    host routes of a thousand containers takes it most of a second. A link
    that has gone meanwhile has nothing to say."""
    try:
        return list(fn("dump", dump_filter=lambda msg: True, **kernel_filter))
    except NetlinkError as e:
        if e.code != errno.ENODEV:
            raise
        return []


def node_network(ipr: IPRoute, prefix: str) -> list[NodeEntry]:
    """The node's own addresses (every link's) and main-table routes, leaving
    out osctld's: whatever is on its links, and its routes (by protocol).
    Only the node's own links are asked for, each in a small dump (``ipr``
    strict-checking, see ``_dump``)."""
    out = []
    links = {i: name for i, name in socket.if_nameindex() if not _ours(name, prefix)}
    main = {"family": socket.AF_UNSPEC, "table": RT_TABLE_MAIN}
    routes = [r for i in links for r in _dump(ipr.route, oif=i, **main)]
    for kind in ELSEWHERE_TYPES:  # routes of no device
        routes += _dump(ipr.route, type=rt_type[kind], **main)
    # A kernel that does not filter answers each dump in full: what is not
    # asked for is left out here as well.
    for i, dev in links.items():
        for a in _dump(ipr.addr, index=i):
            # IFA_LOCAL: the node's end of a point-to-point link, whose IFA_ADDRESS is the peer
            ip = a.get_attr("IFA_LOCAL") or a.get_attr("IFA_ADDRESS")
            if a["index"] == i:
                out.append(NodeEntry(ipaddress.ip_network(ip), f"address {ip} on {dev}", route=False))
    for r in routes:
        oif = r.get_attr("RTA_OIF")
        if (r["proto"] == RTPROT_OSCTLD or r.get_attr("RTA_TABLE") != RT_TABLE_MAIN
                or (oif is not None and oif not in links)):
            continue
        dev = links.get(oif)
        dst, gw = _route_key(r)
        kind = rt_type.get(r["type"], str(r["type"]))
        elsewhere = (kind in ELSEWHERE_TYPES or gw is not None
                     or any(r.get_attr(k) for k in ("RTA_MULTIPATH", "RTA_VIA", "RTA_NH_ID")))
        what = " ".join(filter(None, ("route" if kind == "unicast" else f"{kind} route", str(dst),
                                      gw and f"via {gw}", dev and f"dev {dev}")))
        out.append(NodeEntry(dst, what, route=True, elsewhere=elsewhere))
    return out


def _route_key(r) -> tuple:
    family = r["family"]
    dst = r.get_attr("RTA_DST") or ("0.0.0.0" if family == socket.AF_INET else "::")
    gw = r.get_attr("RTA_GATEWAY")
    return (ipaddress.ip_network(f"{dst}/{r['dst_len']}"),
            ipaddress.ip_address(gw) if gw else None)


def _next_hops_last(routes) -> list[tuple]:
    """On-link routes before the ones via a next hop: an IPv6 prefix goes
    via the container's address, which only its on-link host route makes
    reachable (the kernel refuses the prefix before it, "No route to host");
    removed the other way round."""
    return sorted(routes, key=lambda r: (r[1] is not None, str(r[0]), str(r[1])))


def _osctld_routes(ipr: IPRoute, idx: int) -> dict:
    """osctld's routes through link ``idx`` (found by protocol), by (destination, next hop)."""
    return {_route_key(r): r for family in (socket.AF_INET, socket.AF_INET6)
            for r in ipr.get_routes(family=family, oif=idx) if r["proto"] == RTPROT_OSCTLD}


def host_differences(ipr: IPRoute, plan: HostPlan) -> list[str]:
    """How the host end differs from ``plan`` (what ``sync_host`` would
    fix), a line each; empty when it matches. Reads only."""
    idx = link_index(ipr, plan.veth)
    if idx is None:
        return [f"no host end {plan.veth}"]
    out = [] if ipr.get_links(idx)[0]["flags"] & 1 else [f"{plan.veth} is down"]  # IFF_UP
    have = _osctld_routes(ipr, idx).keys()
    out += [f"no route to {dst}" + (f" via {via}" if via else "") + f" on {plan.veth}"
            for dst, via in sorted(plan.routes - have, key=str)]
    out += [f"a route to {dst} on {plan.veth} of no address" for dst, _ in sorted(have - plan.routes, key=str)]
    return out


def sync_host(ipr: IPRoute, plan: HostPlan, fresh: bool = False) -> None:
    """Make the host end match ``plan``: bridge or addresses, up, exactly
    the plan's routes (osctld's own, found by protocol), shaping. ``fresh``:
    the veth was just made, so there are no routes or qdiscs to read first."""
    idx = link_index(ipr, plan.veth)
    if idx is None:
        raise NetlinkError(errno.ENODEV, f"no host veth {plan.veth}")
    if plan.bridge:
        br = link_index(ipr, plan.bridge)
        if br is None:
            raise NetlinkError(errno.ENODEV, f"no bridge {plan.bridge} on the node")
        ipr.link("set", index=idx, master=br)
    for a in plan.addresses:
        _ignore((errno.EEXIST,), ipr.addr, "add", index=idx, address=str(a.ip),
                prefixlen=a.network.prefixlen, flags=IFA_F_NODAD if a.version == 6 else 0)
    ipr.link("set", index=idx, state="up")
    have = {} if fresh else _osctld_routes(ipr, idx)
    for key in _next_hops_last(have.keys() - plan.routes)[::-1]:
        _ignore((errno.ESRCH, errno.ENOENT), ipr.route, "del", dst=str(key[0]), oif=idx,
                proto=RTPROT_OSCTLD, **({"gateway": str(key[1])} if key[1] else {}))
    for dst, via in _next_hops_last(plan.routes - have.keys()):
        try:  # "add", never "replace": a route that is not osctld's stays the node's
            ipr.route("add", dst=str(dst), oif=idx, proto=RTPROT_OSCTLD,
                      **({"gateway": str(via)} if via else {}))
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise
            raise OsctlError(CONFLICT, f"the node already has a route to {dst} of its own "
                                       f"(not {plan.veth}'s): osctld leaves it as it is") from None
    if not fresh:
        unshape(ipr, idx, plan.veth)
    shape(ipr, idx, plan.veth, plan.max_tx, plan.max_rx)


def ifb_name(veth: str) -> str:
    """The IFB device that shapes what the container behind ``veth`` sends."""
    return veth + IFB_SUFFIX


def _tbf(ipr: IPRoute, idx: int, rate: int) -> None:
    burst = max(rate // 8 // 10, 16 * 1024)  # a tenth of a second, 16 KiB at least
    ipr.tc("add", "tbf", idx, ROOT_HANDLE, rate=f"{rate}bit", burst=burst, latency=TBF_LATENCY)


def unshape(ipr: IPRoute, idx: int, veth: str) -> None:
    for q in ipr.get_qdiscs(index=idx):
        if q["handle"] in (ROOT_HANDLE, INGRESS) and q.get_attr("TCA_KIND") in ("tbf", "ingress"):
            ipr.tc("del", index=idx, handle=q["handle"], parent=q["parent"])
    delete_link(ipr, ifb_name(veth))


def shape(ipr: IPRoute, idx: int, veth: str, max_tx: int | None, max_rx: int | None) -> None:
    """What the container receives is the host end's egress: a tbf root
    qdisc there. What it sends is the host end's ingress, which cannot
    queue: a filter redirects it to an IFB device of its own, shaped by a
    tbf as well. Both are on the node, out of the tenant's reach."""
    if max_rx:
        _tbf(ipr, idx, max_rx)
    if max_tx:
        ipr.link("add", ifname=ifb_name(veth), kind="ifb")
        ifb = link_index(ipr, ifb_name(veth))
        ipr.link("set", index=ifb, state="up")
        _tbf(ipr, ifb, max_tx)
        ipr.tc("add", "ingress", idx, INGRESS)
        ipr.tc("add-filter", "u32", idx, parent=INGRESS, prio=10, protocol=ETH_P_ALL,
               keys=["0x0/0x0+0"], target=ROOT_HANDLE + 1,
               action=[{"kind": "mirred", "direction": "egress", "action": "redirect",
                        "ifindex": ifb}])


def _inside_view(stats: dict) -> dict:
    """Traffic as the container sees it: what the host end sends, it receives."""
    return {"rx_bytes": stats.get("tx_bytes", 0), "rx_packets": stats.get("tx_packets", 0),
            "tx_bytes": stats.get("rx_bytes", 0), "tx_packets": stats.get("rx_packets", 0)}


def counters(ipr: IPRoute, veth: str) -> dict:
    """One host end's traffic, as the container sees it."""
    idx = link_index(ipr, veth)
    if idx is None:
        return {}
    return _inside_view(ipr.link("get", index=idx)[0].get_attr("IFLA_STATS64") or {})


def all_counters(ipr: IPRoute, prefix: str) -> dict[str, tuple[int, dict]]:
    """Every host end's (ifindex, traffic as its container sees it), from one
    dump: the ifindex tells a veth made anew (counting from zero) from the
    one seen before, since the kernel does not hand an index out again soon."""
    out = {}
    for link in ipr.get_links():
        name = link.get_attr("IFLA_IFNAME") or ""
        if _ours(name, prefix) and host_end(name) == name:
            out[name] = (link["index"], _inside_view(link.get_attr("IFLA_STATS64") or {}))
    return out


def bridge_addresses(ipr: IPRoute, bridge: str) -> list:
    idx = link_index(ipr, bridge)
    if idx is None:
        return []
    return [ipaddress.ip_interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
            for a in ipr.get_addr(index=idx)]


# --- inside the container ------------------------------------------------------------

def configure_inside(ipr: IPRoute, cfg: IfaceConfig, drop: list, rename_from: str | None = None) -> None:
    """Make the interface inside match ``cfg`` at once: used for hot-plug and
    live changes, where the container's init will not run again. Addresses
    in ``drop`` are removed; addresses and routes the tenant added are kept."""
    idx = link_index(ipr, rename_from or cfg.name)
    if idx is None:
        raise NetlinkError(errno.ENODEV, f"no interface {rename_from or cfg.name} inside")
    if rename_from:
        ipr.link("set", index=idx, state="down")
        ipr.link("set", index=idx, ifname=cfg.name)
    for a in drop:
        _ignore((errno.EADDRNOTAVAIL, errno.ENOENT), ipr.addr, "del", index=idx,
                address=str(a.ip), prefixlen=a.network.prefixlen)
    ipr.link("set", index=idx, state="up")
    if cfg.dhcp:
        return
    for a in cfg.addresses:
        _ignore((errno.EEXIST,), ipr.addr, "add", index=idx, address=str(a.ip),
                prefixlen=a.network.prefixlen, flags=IFA_F_NODAD if a.version == 6 else 0)
    for gw, src, default in ((cfg.gateway4, cfg.src4, "0.0.0.0/0"), (cfg.gateway6, cfg.src6, "::/0")):
        if gw is not None:
            ipr.route("replace", dst=default, gateway=str(gw), oif=idx,
                      **({"prefsrc": str(src)} if src else {}))
    for r in cfg.routes:
        ipr.route("replace", dst=str(r.prefix), oif=idx, **({"gateway": str(r.via)} if r.via else {}))
