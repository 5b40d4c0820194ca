"""The cluster as commands see it (osctld/cluster/): its members and
instances, server groups, and creation on the node the leader places an
instance on (``ct new --node auto``).

A node without ``cluster:`` answers these with ``unsupported``. Server
groups are the cluster's, not a pool's: their verbs write no pool history
(a state-changing verb's history is its pool's), and are root's alone.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from osctl.protocol import BUSY, CONFLICT, EXISTS, NOT_FOUND, UNSUPPORTED, OsctlError

from ..cluster import decide, tasks
from ..cluster.errors import EtcdError, EtcdUnavailable
from ..cluster.tasks import Progress, task
from ..model.cluster import POLICIES, InstanceRecord, ServerGroup, Size
from ..model.naming import check_name
from . import REGISTRY, Context, command

if TYPE_CHECKING:
    from ..cluster.agent import ClusterAgent
    from ..node import Node

NOUN = {"ct": "container", "vm": "VM"}


def agent(node: Node) -> ClusterAgent:
    """The node's cluster membership: ``unsupported`` on a node alone."""
    if node.cluster is None:
        raise OsctlError(UNSUPPORTED, "this node is not in a cluster (osctld.yml has no "
                                      "cluster: section)")
    return node.cluster


async def via_etcd(coro: Any) -> Any:
    """``coro``'s value; etcd out of reach is ``busy``, with why."""
    try:
        return await coro
    except (EtcdUnavailable, EtcdError) as e:
        raise OsctlError(BUSY, f"the cluster's etcd: {e}") from None


@command("cluster.node.ls")
async def node_ls(ctx: Context) -> list:
    """The cluster's nodes: address, state, capacity used and free, instances, leader."""
    view = await via_etcd(agent(ctx.node).store.view())
    out = []
    for name, n in sorted(view.nodes.items()):
        used = view.used(name)
        out.append({"name": name, "address": n.address, "state": n.state, "since": n.since,
                    "leader": name == view.leader, "instances": len(view.on(name)),
                    "capacity": asdict(n.capacity), "used": asdict(used),
                    "free": asdict(n.capacity - used)})
    return out


@command("cluster.ls")
async def ls(ctx: Context) -> list:
    """Every instance of the cluster and the node it lives on."""
    records = await via_etcd(agent(ctx.node).store.instances())
    return [{**asdict(r), "size": asdict(r.size)} for _, r in sorted(records.items())]


@command("servergroup.new")
async def group_new(ctx: Context, name: str, policy: str) -> dict:
    """A server group: its instances kept together (affinity) or apart
    (anti-affinity), as a rule or (soft-) as a preference."""
    check_name("server group", name)
    if policy not in POLICIES:
        raise OsctlError("invalid", f"policy must be one of {', '.join(POLICIES)}")
    group = ServerGroup(name, policy)
    if not await via_etcd(agent(ctx.node).store.create_group(group)):
        raise OsctlError(EXISTS, f"server group {name} exists")
    return asdict(group)


@command("servergroup.ls")
async def group_ls(ctx: Context) -> list:
    """The server groups, with their members."""
    view = await via_etcd(agent(ctx.node).store.view())
    return [{**asdict(g), "members": [r.key for r in view.members(g.name)]}
            for _, g in sorted(view.groups.items())]


@command("servergroup.del")
async def group_del(ctx: Context, name: str) -> dict:
    """Delete a server group no instance is in."""
    store = agent(ctx.node).store
    view = await via_etcd(store.view())
    if name not in view.groups:
        raise OsctlError(NOT_FOUND, f"no server group {name}")
    members = [r.key for r in view.members(name)]
    if members:
        raise OsctlError(CONFLICT, f"server group {name} has {', '.join(members)}: "
                                   "delete them first")
    await via_etcd(store.delete_group(name))
    return asdict(view.groups[name])


# --- creation on a chosen node ----------------------------------------------------

def check_free(ctx: Context, kind: str, id: str) -> None:
    """A new instance's id must not be one another member holds."""
    there = ctx.node.cluster.where(kind, id) if ctx.node.cluster else None
    if there is not None:
        raise OsctlError(EXISTS, f"{NOUN[kind]} {id} exists on node {there}")


async def create_on(ctx: Context, kind: str, id: str, size: Size, where: str | None,
                    group: str | None, args: dict) -> dict:
    """Create ``kind`` ``id`` (``args``: its ``<kind>.new`` arguments) on
    the node the leader places it on: ``where`` "auto" (or None) for the
    best node for ``size`` and server group ``group``, else that node,
    which must be allowed. The leader writes its record (which reserves
    the id cluster-wide) before the node creates it; a creation that fails
    takes the record back."""
    cluster = agent(ctx.node)
    store = cluster.store
    leader = await via_etcd(store.leader())
    if leader is None:
        raise OsctlError(BUSY, "the cluster has no leader at the moment: try again in a few seconds")
    ctx.progress({"step": "place", "message": f"asking the leader, node {leader}, where"})
    placed = await via_etcd(tasks.call(store, leader, "cluster.place", {
        "kind": kind, "id": id, "size": asdict(size), "server_group": group,
        "node": None if where in (None, "auto") else where}, by=cluster.name))
    target, note = placed["node"], placed.get("note")
    ctx.progress({"step": "place", "message": f"on node {target}" + (f" ({note})" if note else "")})
    try:
        value = await via_etcd(tasks.call(
            store, target, f"{kind}.new", args, by=cluster.name,
            progress=lambda text: ctx.progress({"step": "create", "message": f"{target}: {text}"})))
    except BaseException:
        await asyncio.shield(via_etcd(store.update_instance(
            f"{kind}/{id}", lambda r: None if r is not None and r.node == target else r)))
        raise
    return {**value, "node": target, "note": note}


# --- tasks --------------------------------------------------------------------------

_placing = asyncio.Lock()  # one placement at a time: each sees the one before


@task("cluster.place")
async def place_task(node: Node, args: dict, progress: Progress) -> dict:
    """(Leader) the node for a new instance, its record written there."""
    cluster = agent(node)
    if not cluster.leader.is_leader:
        raise OsctlError(BUSY, f"node {cluster.name} is not the leader now: try again")
    kind, id, group = args["kind"], args["id"], args.get("server_group")
    async with _placing:
        view = await cluster.store.view()
        if group is not None and group not in view.groups:
            raise OsctlError(NOT_FOUND, f"no server group {group}")
        want = args.get("node")
        if want is not None and want not in view.nodes:
            raise OsctlError(NOT_FOUND, f"no node {want} in the cluster")
        exclude = [n for n in view.nodes if want is not None and n != want]
        size = Size(**args["size"])
        placed = decide.place(view, size, group, exclude, key=f"{kind}/{id}")
        rec = InstanceRecord(kind=kind, id=id, node=placed.node, size=size, server_group=group)
        there = await cluster.store.create_instance(rec)
        if there is not None:
            raise OsctlError(EXISTS, f"{NOUN[kind]} {id} exists on node {there.node}")
    return {"node": placed.node, "note": placed.note}


def task_context(node: Node, what: str, progress: Progress) -> Context:
    """A command's context in a task another node asked for: its progress
    lines go to the task's record."""
    return Context(node=node, op=f"task:{what}", progress=lambda d: progress(str(d.get("message") or d)))


def _creating(verb: str):
    async def create(node: Node, args: dict, progress: Progress) -> Any:
        """Create the instance here (its record was written by the leader)."""
        return await REGISTRY[verb].run(task_context(node, verb, progress), args)
    return create


for _verb in ("ct.new", "vm.new"):
    task(_verb)(_creating(_verb))
