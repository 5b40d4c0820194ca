"""Resource groups: cgroup subtrees whose limits bind every container and VM below."""

from __future__ import annotations

import contextlib

from osctl.protocol import CONFLICT, EXISTS, INVALID, OsctlError

from ..locks import groups_key, pool_key
from ..model.group import DEFAULT_GROUP, ROOT_GROUP, Group, check_group_path, parent_of
from ..model.limits import Limits
from ..undo import Undo
from . import Context, Target, command


def _find(ctx: Context, path: str, pool: str | None):
    pstate = ctx.node.registry.pool(pool)
    return pstate, pstate.group(check_group_path(path))


@contextlib.asynccontextmanager
async def _lock(ctx: Context, pstate):
    # One lock for a pool's group tree: a new child and its parent's deletion
    # must not cross. The pool's, shared: no export while groups change.
    locks = ctx.node.locks
    async with locks.hold(pool_key(pstate.pool.name), "group", shared=True), \
            locks.hold(groups_key(pstate.pool.name), "group"):
        yield


def _limits(ctx: Context, base: Limits, changes: dict | None) -> Limits:
    out = base.updated(changes or {}, ctx.node.config.max_cpu_limit)
    ctx.node.containers.cgroups.check(out)
    return out


def _below(pstate, path: str) -> tuple[list[str], list[str], list[str]]:
    """Groups below ``path`` (not itself), containers and VMs in it or below."""
    prefix = path.rstrip("/") + "/"

    def inside(inst) -> bool:
        return inst.group == path or inst.group.startswith(prefix)

    groups = sorted(p for p in pstate.groups if p.startswith(prefix))
    cts = sorted(c.id for c in pstate.cts.values() if inside(c))
    vms = sorted(v.id for v in pstate.vms.values() if inside(v))
    return groups, cts, vms


def _public(ctx: Context, pstate, g: Group, detail: bool = False) -> dict:
    tree = ctx.node.containers.cgroups
    groups, cts, vms = _below(pstate, g.path)
    out = {"pool": pstate.pool.name, "path": g.path, "limits": g.limits.to_dict(),
           "effective_limits": pstate.effective_limits(g.path).to_dict(),
           "containers": len(cts), "vms": len(vms)}
    if detail:
        rel = tree.group(pstate.pool.name, g.path)
        in_force = tree.read(rel)
        out.update(groups=groups, container_ids=cts, vm_ids=vms,
                   limits_in_force=None if in_force is None else in_force.to_dict(),
                   usage=tree.usage(rel) if in_force is not None else None)
    return out


@command("group.new", mutating=True, target=Target("pool", "pool"))
async def new(ctx: Context, path: str, pool: str | None = None, limits: dict | None = None) -> dict:
    """Create a group below an existing one, with optional limits."""
    node = ctx.node
    pstate = node.registry.pool(pool)
    path = check_group_path(path)
    group = Group(path, pstate.pool.name, _limits(ctx, Limits(), limits))
    async with _lock(ctx, pstate), Undo() as undo:
        if path in pstate.groups:
            raise OsctlError(EXISTS, f"group {path} exists in pool {pstate.pool.name}")
        parent = parent_of(path)
        assert parent is not None  # the root group always exists: refused above
        pstate.group(parent)
        pstate.groups[path] = group
        undo.push(pstate.groups.pop, path)
        undo.push(node.containers.remove_group, pstate.pool.name, path)
        node.containers.cgroups.apply_groups(pstate, path)
        pstate.save_group(group)
    node.events.publish("add", object="group", pool=pstate.pool.name, id=path)
    return _public(ctx, pstate, group)


@command("group.ls")
async def ls(ctx: Context, pool: str | None = None) -> list:
    """Groups of every pool, or of one, parents before children."""
    pools = [ctx.node.registry.pool(pool)] if pool else ctx.node.registry.pools.values()
    return [_public(ctx, p, g) for p in pools for _, g in sorted(p.groups.items())]


@command("group.show")
async def show(ctx: Context, path: str, pool: str | None = None) -> dict:
    """One group: its own limits, the effective ones, what is in force, its members."""
    pstate, g = _find(ctx, path, pool)
    return _public(ctx, pstate, g, detail=True)


@command("group.set", mutating=True, target=Target("pool", "pool"))
async def set_(ctx: Context, path: str, limits: dict, pool: str | None = None) -> dict:
    """Change a group's limits (``none`` lifts one); live on its cgroup."""
    node = ctx.node
    pstate, g = _find(ctx, path, pool)
    new_limits = _limits(ctx, g.limits, limits)
    async with _lock(ctx, pstate), Undo() as undo:
        old = g.limits
        undo.push(node.containers.cgroups.apply_groups, pstate, g.path)
        undo.push(setattr, g, "limits", old)
        g.limits = new_limits
        node.containers.cgroups.apply_groups(pstate, g.path)
        pstate.save_group(g)
    return _public(ctx, pstate, g)


@command("group.del", mutating=True, target=Target("pool", "pool"))
async def delete(ctx: Context, path: str, pool: str | None = None) -> dict:
    """Delete a group that holds no containers, VMs or groups."""
    node = ctx.node
    pstate, g = _find(ctx, path, pool)
    if g.path in (ROOT_GROUP, DEFAULT_GROUP):
        raise OsctlError(INVALID, f"group {g.path} is built in and cannot be deleted")
    async with _lock(ctx, pstate):
        groups, cts, vms = _below(pstate, g.path)
        if cts or vms or groups:
            raise OsctlError(CONFLICT, f"group {g.path} is not empty: "
                                       + "; ".join(x for x in (
                                           cts and f"containers {', '.join(cts)}",
                                           vms and f"VMs {', '.join(vms)}",
                                           groups and f"groups {', '.join(groups)}") if x))
        pstate.delete_group(g)
        del pstate.groups[g.path]
        node.containers.remove_group(pstate.pool.name, g.path)
    node.events.publish("remove", object="group", pool=pstate.pool.name, id=g.path)
    return {"pool": pstate.pool.name, "path": g.path}
