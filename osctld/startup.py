"""What the node does when the daemon starts: its pools activated, what
runs already re-adopted, what should run started.

Containers live under LXC's own monitors and VMs in QEMU processes of their
own; both outlive the daemon. So before its first request the daemon asks
LXC for each container's state and init PID, and reconnects to each VM's QMP
socket. One broken container or VM is logged and left stopped, never keeping
the daemon from starting.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from osctl.protocol import CONFLICT, OsctlError

from . import deletion, orphans, pools
from .locks import instance_key, pool_key
from .model.container import STOPPED, Container
from .model.vm import OUT, VM, VmTransfer
from .storage import backend_for
from .transfer import channel

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger(__name__)


async def load(node: Node) -> None:
    """Pools, what a killed daemon left in them, their users' IDs in
    /etc/subuid, and what runs of them."""
    await pools.activate_all(node)
    # Before any request: nothing is being created or deleted yet.
    orphans.remove_temp_files(node.config.state_dir)
    for pstate in node.registry.pools.values():
        await orphans.clean_pool(pstate, backend_for(pstate.pool), node.containers)
    try:
        await node.sync_subids()
    except OsctlError as e:  # serve anyway: the next user change syncs again
        log.error("cannot bring /etc/subuid and /etc/subgid up to date: %s", e)
    await readopt(node)


async def readopt(node: Node) -> None:
    """Learn each container's state from LXC and each VM's from its QEMU."""
    containers = node.containers
    cts = node.registry.all_cts()
    for pstate in node.registry.pools.values():
        for ct in pstate.cts.values():
            try:
                containers.write_config(pstate, ct)
            except Exception as e:
                log.error("container %s:%s: cannot write its LXC config: %s", ct.pool, ct.id, e)
    states = await asyncio.gather(*(containers.lxc.aquery(c.pool, c.id) for c in cts),
                                  return_exceptions=True)
    for ct, result in zip(cts, states):
        if isinstance(result, BaseException):
            log.error("container %s:%s: cannot ask LXC its state: %s", ct.pool, ct.id, result)
            continue
        try:
            containers.adopt(ct, *result)
        except Exception as e:
            log.error("container %s:%s: cannot adopt it: %s", ct.pool, ct.id, e)
    for lxcpath in {str(containers.lxc.lxcpath(c.pool)) for c in cts}:
        containers.exit_codes.watch(lxcpath)  # the exit codes of what runs now
    running = sum(1 for c in cts if c.running)
    log.info("re-adopted %d containers, %d running", len(cts), running)
    vms = node.registry.all_vms()
    await asyncio.gather(*(node.vms.adopt(v) for v in vms))
    log.info("re-adopted %d VMs, %d running", len(vms), sum(1 for v in vms if v.running))
    await node.net.reconcile()  # after both: it keeps the links of what runs


async def settle_vm_sends(node: Node) -> None:
    """VMs this node was sending to another when the daemon went away: a
    guest already handed over is deleted here; any other send is undone,
    the destination first told to drop what it received (so that it does not
    take the guest when the mirror goes), then the VM runs on, or stays
    stopped, here. A destination that cannot be reached keeps a staged VM
    until it is told."""
    async def dropped(vm: VM, t: VmTransfer) -> bool:
        try:
            await channel.call(node, t.peer, "vm.receive.abort", {"id": vm.id, "token": t.token})
        except OsctlError as e:
            if e.code == CONFLICT:
                return False  # the guest runs there
            log.warning("VM %s:%s: telling %s to drop it: %s", vm.pool, vm.id, t.peer, e)
        return True

    async def one(vm: VM, t: VmTransfer) -> None:
        pstate = node.registry.pools[vm.pool]
        what = "settling the send"
        async with node.locks.hold(pool_key(vm.pool), what, shared=True), \
                node.locks.hold(instance_key("vm", vm.pool, vm.id), what):
            if t.live and (await node.vms.handed_over(vm) or not await dropped(vm, t)):
                log.info("VM %s:%s was handed over to %s: deleting it here", vm.pool, vm.id, t.peer)
                await node.vms.stop(vm, 0, kill=True)
                await node.remove_vm(pstate, vm)
                return
            if not t.live:
                await dropped(vm, t)
            await node.vms.keep(vm)
            vm.transfer = None
            pstate.save_vm(vm)
        log.info("VM %s:%s: its send to %s is undone", vm.pool, vm.id, t.peer)

    sending = [(v, v.transfer) for v in node.registry.all_vms()
               if v.transfer and v.transfer.direction == OUT]
    results = await asyncio.gather(*(one(v, t) for v, t in sending), return_exceptions=True)
    for (vm, _), r in zip(sending, results):
        if isinstance(r, Exception):
            log.error("VM %s:%s: settling its send failed: %s", vm.pool, vm.id, r)


async def recheck_running(node: Node) -> None:
    """Once the hook socket listens: a container that stopped between
    re-adoption and then told nobody, so ask again about those held as running."""
    await asyncio.gather(*(node.containers.refresh(c) for c in node.registry.all_cts() if c.running))


async def catch_up_deletions(node: Node) -> None:
    """Staged deletion stages that fell due while the daemon was away, each
    in its order, before the first request (a name due for recycling is
    free by then, a server due for soft deletion is not started). After the
    hook socket listens: the soft stage stops containers."""
    await deletion.run_due(node)


async def autostart(node: Node) -> None:
    """Start the stopped containers marked autostart (a soft-deleted one
    stays so), by priority, a few at a time."""
    todo = sorted((c for c in node.registry.all_cts() if c.autostart and c.state == STOPPED),
                  key=lambda c: (c.autostart_priority, c.pool, c.id))
    if not todo:
        return
    parallel = node.config.autostart_parallelism
    sem = asyncio.Semaphore(parallel)

    async def one(ct: Container) -> None:
        async with sem:
            await _start(node, ct, "autostart", "autostart of")

    log.info("autostarting %d containers, %d at a time", len(todo), parallel)
    await asyncio.gather(*(one(c) for c in todo))


async def start_online_vms(node: Node) -> None:
    """Start the VMs marked online that do not run (after a node reboot)."""
    await asyncio.gather(*(_start(node, vm, "online", "start of online VM")
                           for vm in node.registry.all_vms() if vm.online and not vm.running))


async def _start(node: Node, inst: Container | VM, what: str, failed: str) -> None:
    """Start a container or VM (its driver's start) under its lock and its
    pool's (shared), unless it runs already or its pool has gone; a failure
    is logged."""
    if node.cluster is not None:  # where it lives may have changed while this node was gone
        await node.cluster.loaded.wait()
        await node.cluster.membership.joined.wait()  # an HA one is claimed first
    pstate = node.registry.pools.get(inst.pool)
    if pstate is None or inst.running:
        return
    try:
        async with node.locks.hold(pool_key(inst.pool), what, shared=True), \
                node.locks.hold(instance_key(inst.kind, inst.pool, inst.id), what):
            await node.check_home(inst)  # recovered elsewhere while this node was gone
            await node.driver(inst.kind).start(pstate, inst)
    except Exception as e:
        log.error("%s %s:%s failed: %s", failed, inst.pool, inst.id, e)
