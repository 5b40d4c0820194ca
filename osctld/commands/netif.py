"""Network interfaces of containers and VMs, their addresses and routed prefixes.

Every change is checked against all netifs of the node first, reserved in
memory (no await between check and reservation), applied live to a running
container (host end and inside), written into the rootfs by distconfig and
persisted; a failing step rolls back the ones before it.

Each verb is two names, ``ct.netif.*`` and ``vm.netif.*``, for one
handler whose ``vm`` the name binds. A VM's netifs (``osctl vm netif``) come from the same
allocator with the same checks. What differs by kind the instance's driver
answers (runtime/driver.py): a VM's netifs are routed only, and a change to
a running VM applies at its next start (its tap is made then, and the guest
reads its interfaces from the kernel command line), as ``pending_restart``
says.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import Callable

from osctl.protocol import DENIED, EXISTS, INVALID, OsctlError

from ..model.account import ROOT, Perm
from ..model.container import Container
from ..model.netif import (AUTO, BRIDGE, ROUTED, NetIf, NetRoute, check_hwaddr, check_ifname,
                           parse_ip, parse_prefix, random_hwaddr)
from ..model.units import parse_rate
from ..model.vm import VM
from ..net import plan
from ..storage import backend_for
from ..undo import Undo
from . import Context, hold_instance, instance_command

Instance = Container | VM


def _find(ctx: Context, id: str, vm: bool) -> tuple:
    return ctx.node.registry.instance("vm" if vm else "ct", id)


def _restore(netif: NetIf, snapshot: NetIf) -> None:
    netif.__dict__.update(NetIf.from_dict(snapshot.to_dict()).__dict__)


async def _hold(ctx: Context, pstate, ct: Instance, netif: NetIf, prefix, label: str,
                change: Callable[[NetIf], object], route: bool = False) -> dict:
    """Give ``netif`` one more address or prefix: refused if it would take
    the node's own network, if any netif of the node holds it, or if it takes
    the user over an ipv4 / ipv6-64 quota. A bridged netif's address sits
    beside the node's on its bridge (so it must not be one of them); its
    routes are the container's own business, not the node's. An address
    may lie inside a prefix routed to the same netif (a /64 and its ::1)."""
    routed = netif.type == ROUTED
    await ctx.node.net.check_free([(prefix, label)], routed, on_node=routed or not route,
                                  own=netif, route=route)
    probe = _copy(netif)
    change(probe)
    changed = replace(ct, netifs=[probe if n is netif else n for n in ct.netifs])
    pstate.check_quota(changed, backend_for(pstate.pool).quotas)
    return await _commit(ctx, pstate, ct, netif, change)


async def _commit(ctx: Context, pstate, ct: Instance, netif: NetIf,
                  change: Callable[[NetIf], object]) -> dict:
    """``change`` a netif in memory (checked before: no await until it is
    done, so it is a reservation too), then apply, write and persist it."""
    node = ctx.node
    driver = node.driver(ct.kind)
    before = _copy(netif)
    change(netif)
    async with Undo() as undo:
        undo.push(driver.write_netconfig, pstate, ct)  # last, from the restored model
        undo.push(_restore, netif, before)
        undo.push(driver.netif_change, ct, netif, before)
        await driver.netif_change(ct, before, netif)
        await driver.write_netconfig(pstate, ct)
        pstate.save_instance(ct)
    node.events.publish("change", object="netif", pool=ct.pool, id=ct.id, group=ct.group, netif=netif.name)
    return netif.public()


def _netifs(ctx: Context, id: str, name: str | None, vm: bool) -> list[NetIf]:
    _, ct = _find(ctx, id, vm)
    return [ct.netif(name)] if name else ct.netifs


def _copy(netif: NetIf) -> NetIf:
    return NetIf.from_dict(netif.to_dict())


def _rate(value: str | int | None, what: str) -> int | None:
    return parse_rate(value, what) or None if value is not None else None


@instance_command("netif.new", mutating=True, needs=Perm.MANAGER, alias="netif.new")
async def new(ctx: Context, id: str, name: str, type: str = ROUTED, link: str | None = None,
              hwaddr: str | None = None, gateway4: str = AUTO, gateway6: str = AUTO,
              dhcp: bool = False, max_tx: str | int | None = None,
              max_rx: str | int | None = None, vm: bool = False) -> dict:
    """Add a network interface; hot-plugged into a running container."""
    node = ctx.node
    pstate, ct = _find(ctx, id, vm)
    if type != ROUTED and ctx.access is not ROOT:  # it joins a bridge of the host's
        raise OsctlError(DENIED, "a bridged netif is for root only; accounts add routed ones")
    driver = node.driver(ct.kind)
    driver.check_netif_type(type)
    netif = NetIf(name=name, type=type, link=link, gateway4=gateway4, gateway6=gateway6,
                  dhcp=dhcp, max_tx=_rate(max_tx, "max-tx"), max_rx=_rate(max_rx, "max-rx"),
                  hwaddr=check_hwaddr(hwaddr) if hwaddr else random_hwaddr())
    async with hold_instance(ctx, ct, "netif.new"):
        if any(n.name == name for n in ct.netifs):
            raise OsctlError(EXISTS, f"{ct.id} already has netif {name}")
        netif.index = node.net.allocate()
        async with Undo() as undo:
            undo.push(driver.write_netconfig, pstate, ct)
            ct.netifs.append(netif)  # the reservation of the index
            undo.push(ct.netifs.remove, netif)
            await driver.netif_change(ct, None, netif)
            undo.push(driver.netif_change, ct, netif, None)
            await driver.write_netconfig(pstate, ct)
            pstate.save_instance(ct)
    node.events.publish("add", object="netif", pool=ct.pool, id=ct.id, group=ct.group, netif=name)
    return netif.public()


@instance_command("netif.del", mutating=True, needs=Perm.MANAGER, alias="netif.del")
async def delete(ctx: Context, id: str, name: str, vm: bool = False) -> dict:
    """Remove a network interface; unplugged from a running container."""
    node = ctx.node
    pstate, ct = _find(ctx, id, vm)
    async with hold_instance(ctx, ct, "netif.del"):
        netif = ct.netif(name)
        # Config first: a crash after it leaves a veth that reconcile removes.
        async with Undo() as undo:
            undo.push(ct.netifs.insert, ct.netifs.index(netif), netif)
            ct.netifs.remove(netif)
            pstate.save_instance(ct)
        driver = node.driver(ct.kind)
        await driver.netif_change(ct, netif, None)
        await driver.write_netconfig(pstate, ct)
    node.events.publish("remove", object="netif", pool=ct.pool, id=ct.id, group=ct.group, netif=name)
    return {"id": ct.id, "pool": ct.pool, "name": name}


@instance_command("netif.ls", needs=Perm.STATS, alias="netif.ls")
async def ls(ctx: Context, id: str, vm: bool = False) -> list:
    """A container's interfaces, with traffic counters while it runs."""
    node = ctx.node
    _, ct = _find(ctx, id, vm)
    out = []
    for n in ct.netifs:
        row = {"id": ct.id, "pool": ct.pool, **n.public(), "veth": node.net.veth(n),
               "interconnect": node.net.interconnect(n),
               "routes": [f"{r.prefix} via {r.via}" if r.via else r.prefix for r in n.routes],
               "rx_bytes": None, "rx_packets": None, "tx_bytes": None, "tx_packets": None}
        if ct.running:
            row.update(await node.net.counters(n))
        out.append(row)
    return out


@instance_command("netif.rename", mutating=True, needs=Perm.MANAGER, alias="netif.rename")
async def rename(ctx: Context, id: str, name: str, new_name: str, vm: bool = False) -> dict:
    """Rename an interface (as the container sees it); live on a running one."""
    pstate, ct = _find(ctx, id, vm)
    check_ifname(new_name)
    async with hold_instance(ctx, ct, "netif.rename"):
        netif = ct.netif(name)
        if any(n.name == new_name for n in ct.netifs):
            raise OsctlError(EXISTS, f"{ct.id} already has netif {new_name}")
        return await _commit(ctx, pstate, ct, netif, lambda n: setattr(n, "name", new_name))


@instance_command("netif.set", mutating=True, alias="netif.set")
async def set_(ctx: Context, id: str, name: str, max_tx: str | int | None = None,
               max_rx: str | int | None = None, gateway4: str | None = None,
               gateway6: str | None = None, dhcp: bool | None = None, vm: bool = False) -> dict:
    """Change shaping (0 removes a limit) and, on a bridged netif, gateways and DHCP."""
    pstate, ct = _find(ctx, id, vm)
    async with hold_instance(ctx, ct, "netif.set"):
        netif = ct.netif(name)
        if netif.type != BRIDGE and (gateway4, gateway6, dhcp) != (None, None, None):
            raise OsctlError(INVALID, "gateways and DHCP are set on bridged netifs only")
        changes = {"max_tx": _rate(max_tx, "max-tx") if max_tx is not None else netif.max_tx,
                   "max_rx": _rate(max_rx, "max-rx") if max_rx is not None else netif.max_rx,
                   "gateway4": gateway4 or netif.gateway4, "gateway6": gateway6 or netif.gateway6,
                   "dhcp": netif.dhcp if dhcp is None else dhcp}
        NetIf.from_dict({**netif.to_dict(), **changes})  # validates before anything changes
        return await _commit(ctx, pstate, ct, netif, lambda n: n.__dict__.update(changes))


# --- addresses ---------------------------------------------------------------------

@instance_command("netif.ip.add", mutating=True, needs=Perm.MANAGER, alias="netif.ip_add")
async def ip_add(ctx: Context, id: str, name: str, address: str, vm: bool = False) -> dict:
    """Give an address to an interface: routed to it at once on a running container."""
    pstate, ct = _find(ctx, id, vm)
    async with hold_instance(ctx, ct, "netif.ip.add"):
        netif = ct.netif(name)
        ip = netif.parse_address(address)
        return await _hold(ctx, pstate, ct, netif, ipaddress.ip_network(ip.ip), f"address {ip.ip}",
                           lambda n: n.addresses.append(str(ip)))


@instance_command("netif.ip.del", mutating=True, needs=Perm.MANAGER, alias="netif.ip_del")
async def ip_del(ctx: Context, id: str, name: str, address: str, vm: bool = False) -> dict:
    """Take an address from an interface; it stops answering at once."""
    pstate, ct = _find(ctx, id, vm)
    async with hold_instance(ctx, ct, "netif.ip.del"):
        netif = ct.netif(name)
        ip = parse_ip(address.split("/")[0])
        held = [a for a in netif.addresses if a.split("/")[0] == str(ip)]
        if not held:
            raise OsctlError(INVALID, f"netif {name} of {ct.id} has no address {ip}")
        if (netif.type == ROUTED and ip == plan.v6_next_hop(netif)
                and any(r.network.version == 6 and not r.via for r in netif.routes)):
            raise OsctlError(INVALID, f"IPv6 routes of {name} go via {ip}: delete them first")
        return await _commit(ctx, pstate, ct, netif, lambda n: n.addresses.remove(held[0]))


@instance_command("netif.ip.ls", needs=Perm.STATS, alias="netif.ip_ls")
async def ip_ls(ctx: Context, id: str, name: str | None = None, vm: bool = False) -> list:
    """Addresses of a container's interfaces."""
    return [{"netif": n.name, "address": str(a), "version": a.version}
            for n in _netifs(ctx, id, name, vm) for a in n.ips]


# --- routed prefixes -------------------------------------------------------------------

@instance_command("netif.route.add", mutating=True, needs=Perm.MANAGER, alias="netif.route_add")
async def route_add(ctx: Context, id: str, name: str, prefix: str, via: str | None = None, vm: bool = False) -> dict:
    """Route a prefix to an interface without assigning it there."""
    pstate, ct = _find(ctx, id, vm)
    net = parse_prefix(prefix)
    route = NetRoute(prefix=str(net), via=str(parse_ip(via)) if via else None)
    if route.gateway and route.gateway.version != net.version:
        raise OsctlError(INVALID, f"{via} and {prefix} are not of one IP version")
    async with hold_instance(ctx, ct, "netif.route.add"):
        netif = ct.netif(name)
        if netif.type == ROUTED and net.version == 6 and not via and not netif.ips_of(6):
            raise OsctlError(INVALID, f"an IPv6 prefix is routed via the netif's first IPv6 "
                                      f"address: add one to {name} first, or give --via")
        return await _hold(ctx, pstate, ct, netif, net, f"route {net}",
                           lambda n: n.routes.append(route), route=True)


@instance_command("netif.route.del", mutating=True, needs=Perm.MANAGER, alias="netif.route_del")
async def route_del(ctx: Context, id: str, name: str, prefix: str, vm: bool = False) -> dict:
    """Stop routing a prefix to an interface."""
    pstate, ct = _find(ctx, id, vm)
    async with hold_instance(ctx, ct, "netif.route.del"):
        netif = ct.netif(name)
        net = parse_prefix(prefix)
        gone = [r for r in netif.routes if r.network == net]
        if not gone:
            raise OsctlError(INVALID, f"netif {name} of {ct.id} has no route {prefix}")
        return await _commit(ctx, pstate, ct, netif, lambda n: n.routes.remove(gone[0]))


@instance_command("netif.route.ls", needs=Perm.STATS, alias="netif.route_ls")
async def route_ls(ctx: Context, id: str, name: str | None = None, vm: bool = False) -> list:
    """Prefixes routed to a container's interfaces."""
    return [{"netif": n.name, **r.to_dict()} for n in _netifs(ctx, id, name, vm) for r in n.routes]
