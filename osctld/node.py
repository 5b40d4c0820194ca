"""The node as commands see it: one typed object with what they use.

``Daemon`` (daemon.py) builds a ``Node``, runs the servers around it and
shuts down; commands receive it as ``ctx.node``. A node holds its parts
(config, registry, locks, event bus, pools, the container and VM drivers,
network, templates, history, the consumption sampler, the receive keychain,
operations in flight, its cluster membership if it has one) and the little that joins two of them: a state change becomes an
event, a container's network follows its hooks.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from osctl.protocol import CONFLICT, INTERNAL, OsctlError

from . import __version__
from .accounts import Accounts
from .config import Config
from .consumption import Consumption
from .cpumeter import CpuMeter
from .events import EventBus
from .history import History
from .locks import Locks
from .model.container import Container
from .model.user import User
from .model.vm import VM
from .net.network import Network
from .ops import Ops
from .pools import PoolList
from .runtime.cgroup.layout import CgroupLayout
from .runtime.container import Containers
from .runtime.driver import Driver
from .runtime.vm import Vms
from .state import PoolState, Registry
from .storage import backend_for
from .subid import SubIds
from .sysctls import Sysctl
from .template import Templates
from .transfer.keychain import Keychain

if TYPE_CHECKING:  # imported only where configured: a lone node never loads etcd3gw
    from .cluster.agent import ClusterAgent

log = logging.getLogger(__name__)


@dataclass(eq=False, repr=False)
class Node:
    config: Config
    registry: Registry
    locks: Locks
    events: EventBus
    pools: PoolList
    containers: Containers
    vms: Vms
    net: Network
    templates: Templates
    history: History
    subids: SubIds
    cgroup_layout: CgroupLayout
    accounts: Accounts  # who may use the account socket, with their permissions
    consumption: Consumption  # the sampler of consumption records
    keychain: Keychain  # the keys other nodes may send servers here with
    started: float = field(default_factory=time.time)
    # Requests running, by "<connection>:<request id>" (what op.cancel names).
    ops: Ops = field(default_factory=Ops)
    # VMs whose serial console someone is attached to (QEMU takes one client).
    vm_consoles: set[tuple[str, str]] = field(default_factory=set)
    sysctls: list[Sysctl] = field(default_factory=list)  # the kernel limits raised at start
    cpu: CpuMeter = field(default_factory=CpuMeter)  # CPU % of each running server
    _subid_turn: asyncio.Lock = field(default_factory=asyncio.Lock)
    # The node as a cluster member (config ``cluster:``); None: it runs alone.
    cluster: ClusterAgent | None = None
    # Set to stop the daemon (a signal, or ``osctl shutdown``).
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)

    def running_cgroups(self) -> list[str]:
        """The cgroup of every running container and VM (what the CPU meter reads)."""
        tree = self.containers.cgroups
        return ([tree.ct(c.pool, c.group, c.id) for c in self.registry.all_cts() if c.running]
                + [self.vms.cgroup(vm) for vm in self.registry.all_vms() if vm.running])

    # --- what the runtimes report ----------------------------------------------

    def on_ct_state(self, ct: Container) -> None:
        log.info("container %s:%s is %s", ct.pool, ct.id, ct.state)
        extra = {"last_stop": ct.last_stop} if ct.state == "stopped" else {}
        self.events.publish("state", object="ct", pool=ct.pool, id=ct.id, group=ct.group,
                            state=ct.state, init_pid=ct.init_pid, **extra)

    def on_vm_state(self, vm: VM) -> None:
        log.info("VM %s:%s is %s", vm.pool, vm.id, vm.state)
        self.events.publish("state", object="vm", pool=vm.pool, id=vm.id, group=vm.group, state=vm.state, pid=vm.pid)

    async def on_ct_hook(self, ct: Container, hook: str, pid: int | None) -> None:
        """A container's host-side network follows its LXC hooks."""
        if not ct.netifs:
            return
        if hook == "start-host":
            if pid is None:
                raise OsctlError(INTERNAL, f"start-host hook of {ct.id} without the init's PID")
            await self.net.up(ct, pid)
        elif hook == "post-stop":
            await self.net.down(ct)
        else:
            return
        state = "up" if hook == "start-host" else "down"
        for n in ct.netifs:
            self.events.publish(state, object="netif", pool=ct.pool, id=ct.id, group=ct.group,
                                netif=n.name)

    # --- what commands and start-up share ----------------------------------------

    async def check_home(self, inst: Container | VM) -> None:
        """Refuse to start an instance the cluster says lives on another
        node now: two copies of one server must never run. An HA one whose
        record names this node is claimed first (``ClusterAgent.claim_to_start``;
        under the instance's lock: the callers hold it)."""
        if self.cluster is None:
            return
        await self.cluster.claim_to_start(inst.kind, inst.id, inst.noun)
        other = self.cluster.where(inst.kind, inst.id)
        if other is not None:
            raise OsctlError(CONFLICT, f"{inst.noun} {inst.id} lives on node {other} now: "
                                       "this copy stays stopped (delete it with del)")

    def driver(self, kind: str) -> Driver[Any]:
        """The driver of containers (``kind`` "ct") or VMs ("vm")."""
        drivers: dict[str, Driver[Any]] = {"ct": self.containers, "vm": self.vms}
        return drivers[kind]

    async def sync_subids(self, new: Iterable[User] = ()) -> None:
        """Bring /etc/subuid and /etc/subgid in line with the users (``new``
        ones are checked against every other line there). In a thread: the
        files' locks may be held by useradd or an admin for a while, and no
        other request may wait for that. One at a time, each to its end
        (also when its caller is cancelled), so the last one wins."""
        async with self._subid_turn:
            work = asyncio.ensure_future(asyncio.to_thread(
                self.subids.sync, self.registry.all_users(), list(new)))
            try:
                await asyncio.shield(work)
            except asyncio.CancelledError:
                await asyncio.wait([work])
                raise

    async def remove_ct(self, pstate: PoolState, ct: Container) -> None:
        """Delete a stopped container's config, LXC directory and rootfs (and
        the passes of a send or replica kept here): what ``ct del`` and the
        hard stage of a staged deletion free. Config first: a crash after it
        leaves an orphan dataset (removed at start), never a config that
        points at a half-deleted rootfs."""
        pstate.store.delete("ct", ct.id)
        del pstate.cts[ct.id]
        self.containers.remove(ct.pool, ct.id)
        backend = backend_for(pstate.pool)
        await backend.destroy_ct(pstate.pool.rootfs(ct.id))
        await backend.destroy_passes("ct", ct.id)
        shutil.rmtree(pstate.pool.ct_dir(ct.id), ignore_errors=True)

    async def remove_vm(self, pstate: PoolState, vm: VM) -> None:
        """Delete a stopped VM's config, run directory, cgroup and disk (and
        its replica's passes kept here, at either end): what ``vm del`` and
        the hard stage free, config first as for containers."""
        pstate.store.delete("vm", vm.id)
        del pstate.vms[vm.id]
        self.vms.remove(vm)
        backend = backend_for(pstate.pool)
        await backend.destroy(pstate.pool.vm_dir(vm.id))
        await backend.destroy_passes("vm", vm.id)

    def status(self) -> dict:
        rss = 0
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
        except OSError:
            pass
        cts = self.registry.all_cts()
        vms = self.registry.all_vms()
        return {
            "version": __version__, "pid": os.getpid(), "uptime": time.time() - self.started,
            "pools": len(self.registry.pools), "users": len(self.registry.all_users()),
            "containers": len(cts), "running": sum(1 for c in cts if c.running),
            "vms": len(vms), "vms_running": sum(1 for v in vms if v.running),
            "rss": rss, "ops": self.ops.names(),
            # How many servers a bulk action (osctl ct stop --all) works on at once.
            "parallelism": self.config.autostart_parallelism,
            "cgroups": self.cgroup_layout.mode, "lxcfs": self.containers.lxcfs.public(),
            "statfs_proxy": self.containers.statfs.public(),
            "sysctls": {s.key: s.public() for s in self.sysctls},
        }
