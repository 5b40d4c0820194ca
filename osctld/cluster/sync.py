"""What this node tells the cluster, and takes from it.

Records: each local container and VM has ``instances/<kind>/<id>`` naming
this node, with its size. The events of the node say when (created,
received: ``add``; deleted, sent away: ``remove``; renamed: both, the
record taken over under the new id), and every
RECONCILE seconds the local instances are compared with the records, so
that one missed (etcd down at the time) is written later. A record naming
another node is never written back from here: that instance lives there now
(moved, or recovered there while this node was dead), and the copy here is
a stale one. A move (``ct send``, ``vm migrate``) hands its record over to
the member at the destination address as the source deletes its copy.

Keys: this node's public send key is put at ``keys/<node>``, and every other
member's is authorized here as ``cluster-<node>`` (from the member's
address only), so that the members send to each other without anyone
trusting each key by hand; a member's key that changed is replaced.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from osctl.protocol import OsctlError

from ..events import Filter
from ..model.cluster import InstanceRecord, NodeRecord, Size
from ..model.limits import Limits
from ..transfer.channel import public_key, split_dest
from ..transfer.keychain import AuthorizedKey
from .errors import EtcdError, EtcdUnavailable
from .store import ClusterStore, Conflict

if TYPE_CHECKING:
    from ..node import Node

log = logging.getLogger(__name__)

RECONCILE = 5.0
KEY_PREFIX = "cluster-"


def ct_size(limits: Limits, disk: int | None) -> Size:
    """What a container takes of a node: its CPU limit (whole CPUs), memory
    limit and disk quota; what is unlimited counts 0."""
    cpu = limits.cpu_limit
    return Size(math.ceil(cpu) if cpu else 0, limits.memory or 0, disk or 0)


def size_of(inst: Any) -> Size:
    """What a container or a VM (its cores, memory and disk) takes of a node."""
    if inst.kind == "vm":
        return Size(inst.cores, inst.memory, inst.disk)
    return ct_size(inst.limits, inst.disk)


def capacity(node: Node) -> Size:
    """The node's CPUs, memory, and the total size of its pools' file
    systems (each file system once)."""
    with open("/proc/meminfo") as f:
        mem = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemTotal:"))
    disks: dict[int, int] = {}
    for pstate in node.registry.pools.values():
        try:
            st = os.statvfs(pstate.pool.path)
            disks[os.stat(pstate.pool.path).st_dev] = st.f_blocks * st.f_frsize
        except OSError:
            continue
    return Size(os.cpu_count() or 1, mem, sum(disks.values()))


def node_record(node: Node) -> NodeRecord:
    cfg = node.config.cluster
    assert cfg is not None
    cap = capacity(node)
    return NodeRecord(cfg.node, cfg.address, "online", cap.cpus, cap.memory, cap.disk, time.time())


class RecordSync:
    def __init__(self, store: ClusterStore, node: Node):
        self.store = store
        self.node = node
        assert node.config.cluster is not None
        self.name = node.config.cluster.node

    def _local(self) -> dict[str, Any]:
        insts: list[Any] = [*self.node.registry.all_cts(), *self.node.registry.all_vms()]
        return {f"{i.kind}/{i.id}": i for i in insts}

    def _mine(self, inst: Any):
        """The record update of a local instance: created if missing, its
        size kept current while it names this node, left alone otherwise."""
        size = size_of(inst)

        def fn(rec: InstanceRecord | None) -> InstanceRecord | None:
            if rec is None:
                return InstanceRecord(kind=inst.kind, id=inst.id, node=self.name, size=size)
            if rec.node == self.name and rec.size != size:
                return replace(rec, size=size)
            return rec
        return fn

    async def reconcile(self) -> None:
        local = self._local()  # before the records: what changes meanwhile, events say
        records = await self.store.instances()
        for ikey, inst in local.items():
            rec = records.get(ikey)
            if rec is None or (rec.node == self.name and rec.size != size_of(inst)):
                await self.store.update_instance(ikey, self._mine(inst))
            elif rec.node != self.name:
                log.debug("cluster: %s is here but lives on node %s", ikey, rec.node)

    async def on_event(self, ev: dict) -> None:
        ikey = f"{ev['object']}/{ev['id']}"
        if ev["type"] == "add":
            inst = self._local().get(ikey)
            if inst is not None:
                await self.store.update_instance(ikey, self._mine(inst))
            return
        renamed_to = ev.get("renamed_to")
        if renamed_to:  # its record goes along, server group and HA settings kept
            rec = await self.store.instance(ikey)
            if rec is not None and rec.node == self.name:
                # Over one a reconcile may have written meanwhile, without them.
                await self.store.update_instance(
                    f"{ev['object']}/{renamed_to}",
                    lambda r: replace(rec, id=renamed_to) if r is None or r.node == self.name else r)
        moved_to = ev.get("moved_to")
        target = None
        if moved_to and ev.get("as_id") == ev["id"]:
            host = split_dest(moved_to)[0]
            view = await self.store.view()
            target = next((n.name for n in view.nodes.values()
                           if n.address == host and n.name != self.name), None)

        def fn(rec: InstanceRecord | None) -> InstanceRecord | None:
            if rec is None or rec.node != self.name:
                return rec
            return None if target is None else replace(rec, node=target)
        await self.store.update_instance(ikey, fn)

    async def run(self) -> None:
        """Follow the node's events and reconcile, until cancelled."""
        sub = self.node.events.subscribe(lambda: log.error("cluster: record sync fell behind"),
                                         Filter.of(types=("add", "remove"), objects=("ct", "vm")))
        last = 0.0
        try:
            while True:
                try:
                    ev = await asyncio.wait_for(sub.queue.get(), RECONCILE)
                except asyncio.TimeoutError:
                    ev = None
                try:
                    if ev is not None:
                        await self.on_event(ev)
                    if time.monotonic() - last >= RECONCILE:
                        await self.reconcile()
                        await self.keys()
                        last = time.monotonic()
                except (EtcdUnavailable, EtcdError, Conflict, OsctlError) as e:
                    log.warning("cluster: record sync: %s", e)
                    last = 0.0  # reconcile at the next chance
                if sub.closed:  # fell behind: start over from a full reconcile
                    sub = self.node.events.subscribe(
                        lambda: None, Filter.of(types=("add", "remove"), objects=("ct", "vm")))
        finally:
            sub.close()

    async def keys(self) -> None:
        """Publish this node's send key; authorize the other members' here."""
        try:
            mine = public_key(self.node)
        except OsctlError:
            mine = None  # no send key yet (osctl send key gen)
        keys = await self.store.send_keys()
        if mine is not None and keys.get(self.name) != mine:
            await self.store.put_send_key(self.name, mine)
        view = await self.store.view()
        chain = self.node.keychain
        for name, pub in keys.items():
            member = view.nodes.get(name)
            if name == self.name or member is None or not member.address:
                continue
            kname = KEY_PREFIX + name
            key = AuthorizedKey(name=kname, pubkey=pub, from_patterns=[member.address])
            have = chain.keys.get(kname)
            if have is not None and (have.pubkey, have.from_patterns) == (key.pubkey,
                                                                          key.from_patterns):
                continue
            try:
                (chain.replace if have is not None else chain.add)(key)
                log.info("cluster: authorized node %s's send key as %s", name, kname)
            except OsctlError as e:
                log.warning("cluster: node %s's send key: %s", name, e.message)
