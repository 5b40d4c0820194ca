"""Cluster maintenance and high availability as commands (issue 15): the
verbs (``cluster.node.maintenance``, ``cluster.instance.set``), the task
entry points other nodes call, and ``attach``, which hooks the mechanism
into the node's cluster member.

The mechanism lives in ``cluster/`` (``evacuate.py``, ``fencing.py``,
``replication.py``, ``recovery.py``; the decisions ``decide.py``'s) and
does its work through ``Actions`` (``cluster/actions.py``), which this
module implements over the verbs: ``ct send``, ``vm migrate``,
``ct replicate``, ``ct recover`` and the lifecycle verbs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

from osctl.protocol import BUSY, INVALID, NOT_FOUND, OsctlError

from ..cluster import decide, evacuate, fencing, recovery, replication, tasks
from ..cluster.decide import Move
from ..cluster.tasks import Progress, task
from ..model.cluster import EVACUATE, KINDS, InstanceRecord
from . import Context, command
from .cluster import NOUN, agent, task_context, via_etcd
from . import ct_replica, vm_replica
from .ct_send import STOP_TIMEOUT, send
from .instance import lifecycle
from .vm_migrate import migrate

if TYPE_CHECKING:
    from ..node import Node


@dataclass
class CommandActions:
    """``cluster.actions.Actions`` done by this node's verbs, on ``ctx``."""

    ctx: Context

    async def start(self, kind: str, id: str) -> dict:
        return await lifecycle(self.ctx, kind, id, "start")

    async def stop(self, kind: str, id: str) -> dict:
        return await lifecycle(self.ctx, kind, id, "stop", STOP_TIMEOUT)

    async def move(self, kind: str, id: str, dest: str) -> dict:
        await self.drop(kind, id)  # a send or a migration cannot begin while it has one
        if kind == "ct":
            return await send(self.ctx, id, dest)
        return await migrate(self.ctx, id, dest)

    async def replicate(self, kind: str, id: str, dest: str) -> dict:
        if kind == "ct":
            return await ct_replica.replicate(self.ctx, id, dest)
        # Into the standby's pool of the same name: a running VM's replica
        # needs a btrfs pool there, which its default one may not be.
        _, vm = self.ctx.node.registry.vm(id)
        return await vm_replica.replicate(self.ctx, id, dest, vm.pool)

    async def drop(self, kind: str, id: str) -> None:
        if kind == "ct":
            await ct_replica.drop(self.ctx, id)
        else:
            await vm_replica.drop(self.ctx, id)

    def unrecoverable(self, kind: str, id: str) -> str | None:
        try:
            return ct_replica.unrecoverable(self.ctx.node.registry.instance(kind, id)[1])
        except OsctlError as e:
            return e.message

    async def recover(self, kind: str, id: str) -> dict:
        if kind == "ct":
            return await ct_replica.recover(self.ctx, id)
        return await vm_replica.recover(self.ctx, id)


def _actions(node: Node, what: str, progress: Progress) -> CommandActions:
    return CommandActions(task_context(node, what, progress))


# --- the tasks: what a node does when another asks -------------------------------

@task("move")
async def move_task(node: Node, args: dict, progress: Progress) -> str:
    """(The instance's node) one step of an evacuation or restore."""
    m = Move(**args["move"])
    return await evacuate.move_step(node, m, args["address"],
                                    _actions(node, f"move {m.instance_key}", progress), progress)


@task("instance.start")
async def start_task(node: Node, args: dict, progress: Progress) -> dict:
    """Start an instance here (a VM that came by a cold move)."""
    return await _actions(node, "start", progress).start(args["kind"], args["id"])


@task("ha.recover")
async def recover_task(node: Node, args: dict, progress: Progress) -> dict:
    """(The standby) start a dead node's HA container from the replica here."""
    step = decide.Recover(**args["recover"])
    return await recovery.recover_here(agent(node), step,
                                       _actions(node, f"recover {step.instance_key}", progress))


@task("maintenance")
async def maintenance_task(node: Node, args: dict, progress: Progress) -> dict:
    """(Leader) node ``node`` into maintenance and emptied, or back online."""
    return await evacuate.maintain(agent(node), args["node"], args["enable"] is True, progress)


def attach(node: Node) -> None:
    """Hook the mechanism into the node's cluster member (the daemon calls
    this once it made ``node.cluster``): fencing, recovery, replicas."""
    cluster = agent(node)
    fenced = fencing.Fenced()
    unfence = CommandActions(Context(node=node, op="cluster:unfence"))
    cluster.membership.on_lease_lost.append(
        lambda deadline: fencing.on_lease_lost(node, fenced, deadline))
    cluster.membership.on_lease_regained.append(
        lambda: fencing.on_lease_regained(node, fenced, unfence))
    cluster.leader.on_node_lost.append(
        lambda name, since: recovery.on_node_lost(cluster, name, since))
    cluster.run(replication.replication(node, CommandActions(Context(node=node, op="cluster:replicate"))))
    cluster.run(fencing.on_lease_regained(node, fenced, unfence))  # the first join, after a restart
    cluster.run(fencing.on_start(node))  # copies recovered elsewhere while the daemon was away


# --- the verbs ---------------------------------------------------------------------

@command("cluster.node.maintenance")
async def maintenance(ctx: Context, node: str, enable: bool) -> dict:
    """Node ``node`` into maintenance (``enable``: it receives nothing new,
    and the leader moves its instances away, a few at a time, each line of
    progress said), or out of it (online; what left it comes back)."""
    cluster = agent(ctx.node)
    leader = await via_etcd(cluster.store.leader())
    if leader is None:
        raise OsctlError(BUSY, "the cluster has no leader at the moment: try again in a few seconds")
    return await via_etcd(tasks.call(
        cluster.store, leader, "maintenance", {"node": node, "enable": enable}, by=cluster.name,
        progress=lambda text: ctx.progress({"step": "maintenance", "message": text})))


@command("cluster.instance.set")
async def instance_set(ctx: Context, kind: str, id: str, ha: bool | None = None,
                       standby: str | None = None, evacuate: str | None = None) -> dict:
    """An instance's cluster settings: ``ha`` (replicated to ``standby``
    every replication interval, started there if its node dies; off: its
    replica goes) and ``evacuate`` (what maintenance does
    with it: migrate, live-migrate or stop)."""
    cluster = agent(ctx.node)
    if kind not in KINDS:
        raise OsctlError(INVALID, f"kind must be one of {', '.join(KINDS)}")
    if evacuate is not None and evacuate not in EVACUATE:
        raise OsctlError(INVALID, f"evacuate must be one of {', '.join(EVACUATE)}")
    if ha and standby is None:
        raise OsctlError(INVALID, "ha needs a standby node (--standby NODE)")
    if standby is not None and not ha:
        raise OsctlError(INVALID, "a standby node goes with ha on")
    view = await via_etcd(cluster.store.view())
    ikey = f"{kind}/{id}"
    rec = view.instances.get(ikey)
    if rec is None:
        raise OsctlError(NOT_FOUND, f"no {NOUN[kind]} {id} in the cluster")
    if standby is not None and standby not in view.nodes:
        raise OsctlError(NOT_FOUND, f"no node {standby} in the cluster")
    if standby is not None and standby == rec.node:
        raise OsctlError(INVALID, f"{NOUN[kind]} {id} lives on {standby}: its standby is another node")

    def fn(r: InstanceRecord | None) -> InstanceRecord:
        if r is None:
            raise OsctlError(NOT_FOUND, f"no {NOUN[kind]} {id} in the cluster")
        if standby is not None and r.node == standby:
            raise OsctlError(INVALID, f"{NOUN[kind]} {id} lives on {standby} now")
        changes: dict = {} if evacuate is None else {"evacuate": evacuate}
        if ha is not None:
            changes.update(ha=ha, standby=standby if ha else None,
                           replica_at=r.replica_at if ha and r.standby == standby else None)
        return replace(r, **changes)
    new = await via_etcd(cluster.store.update_instance(ikey, fn))
    assert new is not None
    return {**asdict(new), "size": asdict(new.size)}
