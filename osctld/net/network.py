"""The node's container networking: what the commands and hooks call.

The daemon creates every veth itself (LXC's own config says ``empty``):
at the start-host hook, when the container's namespaces exist and its init
has not run yet, each netif's veth is created with its peer born inside the
container's network namespace, named and left down for the container's own
init to configure from what distconfig wrote; the host end gets its
addresses, routes and shaping. A hot-plugged netif and a live change are
configured inside at once as well. When the container stops, its network
namespace and with it every veth pair go; the post-stop hook removes what
the kernel has not yet, and ``reconcile`` at daemon start removes host veths
that belong to no running netif and restores the ones that are missing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import ipaddress
import logging
import os
from typing import Iterator, cast

from pyroute2.netlink.exceptions import NetlinkError

from osctl.protocol import CONFLICT, INTERNAL, NOT_FOUND, OsctlError

from ..config import NetConfig
from ..distconfig.netconfig import IfaceConfig
from ..model.container import Container
from ..model.netif import BRIDGE, IPInterface, IPNetwork, NetIf
from ..model.vm import VM
from . import alloc, netlink, plan

log = logging.getLogger(__name__)


# What a netlink error means to the client: a missing bridge, a name taken.
ERRNO_CODES = {errno.ENODEV: NOT_FOUND, errno.EEXIST: CONFLICT, errno.EADDRINUSE: CONFLICT}


def _error(where: str, e: Exception) -> OsctlError:
    code = getattr(e, "code", None) or getattr(e, "errno", None)
    return OsctlError(ERRNO_CODES.get(code, INTERNAL), f"netlink {where}: {e}")


class Network:
    def __init__(self, cfg: NetConfig, registry):
        self.cfg = cfg
        self.range = ipaddress.IPv4Network(cfg.interconnect)
        self.registry = registry

    # --- allocation and conflicts ----------------------------------------------------

    def holders(self) -> Iterator[tuple[Container | VM, NetIf]]:
        """Every netif of the node, containers' and VMs' alike."""
        for inst in (*self.registry.all_cts(), *self.registry.all_vms()):
            for n in inst.netifs:
                yield inst, n

    def allocate(self, taken: set[int] = frozenset()) -> int:
        """A free netif index: no netif of the node's has it, nor one in ``taken``."""
        return alloc.free_index({n.index for _, n in self.holders()} | taken,
                                plan.capacity(self.range))

    async def check_free(self, wanted: list[tuple[IPNetwork, str]], routed: bool,
                         on_node: bool = True, own: NetIf | None = None,
                         route: bool = False) -> None:
        """Refuse what may never be a container's; what would take the node's
        own addresses (``on_node``) or routes (and ``routed``), read from the
        kernel now (``alloc.check_node`` says what overlaps); what another
        netif holds (or ``own``, the netif to hold ``wanted``, but for an
        address inside its own routed prefix: ``alloc.check_free``). The last
        check has no await after it, so the caller can reserve at once."""
        for prefix, _ in wanted:
            alloc.check_usable(prefix, self.range)
        if on_node:
            node = await self._host(lambda ipr: netlink.node_network(ipr, self.cfg.veth_prefix),
                                    strict_check=True)
            alloc.check_node(node, wanted, routed)
        alloc.check_free(self.holders(), wanted, own, route)

    def admit(self, pstate) -> list[Container]:
        """Before a pool joins the node (daemon start, import): refuse it if its
        netifs hold what another pool's hold; give its netifs indices no other
        netif of the node has. Returns the containers whose indices changed,
        for the caller to save."""
        holders = list(self.holders())
        instances = [*pstate.cts.values(), *pstate.vms.values()]
        for ct in instances:
            for n in ct.netifs:
                alloc.check_free(holders, n.held())
        used = {n.index for _, n in holders}
        changed = []
        for ct in instances:
            for n in ct.netifs:
                if n.index in used or not 0 <= n.index < plan.capacity(self.range):
                    n.index = alloc.free_index(used, plan.capacity(self.range))
                    changed.append(ct)
                used.add(n.index)
        return changed

    def veth(self, netif: NetIf) -> str:
        return f"{self.cfg.veth_prefix}{netif.index}"

    def host_plan(self, netif: NetIf) -> plan.HostPlan:
        return plan.host_plan(self.range, self.veth(netif), netif)

    def interconnect(self, netif: NetIf) -> str | None:
        if netif.type == BRIDGE:
            return None
        return str(plan.interconnect(self.range, netif.index))

    async def _bridge_ips(self, netif: NetIf) -> list[IPInterface]:
        if netif.type != BRIDGE:
            return []
        return await asyncio.to_thread(netlink.on_host, lambda ipr: netlink.bridge_addresses(ipr, netif.link))

    async def inside(self, netif: NetIf) -> IfaceConfig:
        return plan.inside(self.range, netif, await self._bridge_ips(netif))

    async def iface_configs(self, ct: Container) -> list[IfaceConfig]:
        """What distconfig writes inside the rootfs."""
        return [await self.inside(n) for n in ct.netifs]

    # --- netlink, off the event loop --------------------------------------------------

    @staticmethod
    async def _host(fn, strict_check: bool = False) -> object:
        try:
            return await asyncio.to_thread(netlink.on_host, fn, strict_check)
        except NetlinkError as e:
            raise _error("on the node", e) from None

    @staticmethod
    async def _inside(pid: int, fn) -> object:
        try:
            return await asyncio.to_thread(netlink.in_netns, pid, fn)
        except (NetlinkError, OSError) as e:
            if not os.path.exists(f"/proc/{pid}"):
                # It stopped by itself under us: its namespace is gone with its init.
                raise OsctlError(CONFLICT, f"the container's init ({pid}) is gone: "
                                           "it is not running") from None
            raise _error("inside the container", e) from None

    async def _create(self, netif: NetIf, pid: int) -> None:
        hp = self.host_plan(netif)

        def work(ipr) -> None:
            netlink.delete_netif(ipr, hp.veth)  # a stale one from a crash
            netlink.create_veth(ipr, hp.veth, netif.name, netif.hwaddr, pid)
            try:
                netlink.sync_host(ipr, hp, fresh=True)
            except Exception:
                netlink.delete_netif(ipr, hp.veth)
                raise

        await self._host(work)

    async def _delete(self, names: list[str]) -> None:
        def work(ipr) -> None:
            for name in names:
                netlink.delete_netif(ipr, name)

        await self._host(work)

    # --- container life ----------------------------------------------------------------

    async def up(self, ct: Container, pid: int) -> None:
        """At the start-host hook: every netif's veth, left down inside."""
        done: list[str] = []
        try:
            for n in ct.netifs:
                await self._create(n, pid)
                done.append(self.veth(n))
        except Exception:
            await self._delete(done)
            raise

    async def down(self, ct: Container) -> None:
        await self._delete([self.veth(n) for n in ct.netifs])

    async def plug(self, ct: Container, netif: NetIf) -> None:
        """Hot-plug into a running container: created and configured inside."""
        await self._create(netif, ct.init_pid)
        try:
            cfg = await self.inside(netif)
            await self._inside(ct.init_pid, lambda ipr: netlink.configure_inside(ipr, cfg, []))
        except Exception:
            await self._delete([self.veth(netif)])
            raise

    async def unplug(self, netif: NetIf) -> None:
        await self._delete([self.veth(netif)])

    async def apply(self, ct: Container, netif: NetIf, drop: list[IPInterface],
                    rename_from: str | None = None) -> None:
        """A live change: host end and inside to ``netif`` at once."""
        hp = self.host_plan(netif)
        cfg = await self.inside(netif)
        await self._host(lambda ipr: netlink.sync_host(ipr, hp))
        await self._inside(ct.init_pid,
                           lambda ipr: netlink.configure_inside(ipr, cfg, drop, rename_from))

    # --- VM taps ---------------------------------------------------------------------------

    async def vm_up(self, vm: VM, routed: bool = True) -> list[str]:
        """Before a VM's QEMU starts: a tap per netif, its host end configured
        as a container's veth is (addresses, routes, shaping). Returns the taps.
        Not ``routed``: without the routes to its addresses, for a VM that
        still runs on another node (``vm_route`` adds them when it arrives)."""
        done: list[str] = []
        try:
            for n in vm.netifs:
                hp = self._vm_plan(n, routed)

                def work(ipr, hp=hp) -> None:
                    netlink.delete_netif(ipr, hp.veth)  # a stale one from a crash
                    netlink.create_tap(ipr, hp.veth)
                    netlink.sync_host(ipr, hp, fresh=True)

                await self._host(work)
                done.append(hp.veth)
        except Exception:
            await self._delete(done)
            raise
        return done

    async def vm_route(self, vm: VM, routed: bool = True) -> None:
        """Route a VM's addresses to its taps (made by ``vm_up`` unrouted), or
        (not ``routed``) take its routes away: it runs elsewhere now."""
        for n in vm.netifs:
            hp = self._vm_plan(n, routed)
            await self._host(lambda ipr, hp=hp: netlink.sync_host(ipr, hp))

    def _vm_plan(self, netif: NetIf, routed: bool) -> plan.HostPlan:
        hp = self.host_plan(netif)
        return hp if routed else dataclasses.replace(hp, routes=frozenset())

    async def own_address(self, peer: str) -> str:
        """The node's address that ``peer`` is reached from (the kernel's
        choice of source address): where the node listens for that peer."""
        return await self._host(lambda ipr: netlink.source_for(ipr, peer))

    async def vm_down(self, taps: list[str]) -> None:
        """After a VM's QEMU has gone: its taps and their routes."""
        await self._delete(taps)

    def vm_inside(self, vm: VM) -> list[IfaceConfig]:
        """What the guest configures, handed to it on its kernel command line."""
        return [plan.inside(self.range, n) for n in vm.netifs]

    async def counters(self, netif: NetIf) -> dict:
        return await self._host(lambda ipr: netlink.counters(ipr, self.veth(netif)))

    async def all_counters(self) -> dict[str, tuple[int, dict]]:
        """Every host end's ifindex and traffic, by name (``veth``)."""
        return await self._host(lambda ipr: netlink.all_counters(ipr, self.cfg.veth_prefix))

    # --- reconciliation ---------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Host veths of the node match the netifs of running containers: the
        ones of no running netif go (their routes with them), missing ones of
        a running container are plugged in, the others re-synced."""
        wanted = {self.veth(n): (ct, n) for ct, n in self.holders()
                  if ct.running and (isinstance(ct, VM) or ct.init_pid)}
        # The taps of a VM being received live: its QEMU waits on them, unrouted.
        incoming = {self.veth(n) for ct, n in self.holders()
                    if isinstance(ct, VM) and ct.transfer and ct.transfer.live and not ct.running}
        present = await self._host(lambda ipr: netlink.our_links(ipr, self.cfg.veth_prefix))
        stale = sorted(n for n in present if netlink.host_end(n) not in wanted.keys() | incoming)
        if stale:
            log.info("removing links of no running netif: %s", ", ".join(stale))
            await self._host(lambda ipr: [netlink.delete_link(ipr, n) for n in stale])
        for name, (ct, n) in sorted(wanted.items()):
            try:
                await self.restore(ct, n, name in present)
            except Exception as e:
                log.error("cannot restore netif %s of %s:%s: %s", n.name, ct.pool, ct.id, e)

    async def restore(self, inst: Container | VM, n: NetIf, present: bool) -> None:
        """A running instance's netif as it should be on the node: its host end
        (``present``: there) re-synced, or a container's plugged in anew."""
        if present:
            hp = self.host_plan(n)
            await self._host(lambda ipr: netlink.sync_host(ipr, hp))
        elif isinstance(inst, VM):  # added while it ran: its tap comes at its next start
            log.info("VM %s:%s has no tap for netif %s yet", inst.pool, inst.id, n.name)
        else:
            log.info("plugging in missing netif %s of %s:%s", n.name, inst.pool, inst.id)
            await self.plug(inst, n)

    async def differences(self, n: NetIf) -> list[str]:
        """How a running netif's host end differs from what it should be (empty: as it should)."""
        hp = self.host_plan(n)
        return cast(list[str], await self._host(lambda ipr: netlink.host_differences(ipr, hp)))
