"""Resource groups: cgroup subtrees whose limits bind every container and VM
below, and the platform's settings (maintenance window, timezone, ...) they
pass down."""

from __future__ import annotations

import contextlib
import time
from datetime import datetime, timezone

from osctl.protocol import CONFLICT, EXISTS, INVALID, OsctlError

from ..locks import groups_key, pool_key
from ..model.account import Perm
from ..model.group import (DEFAULT_GROUP, ROOT_GROUP, Group, check_group_path, effective_settings,
                           parse_settings, parent_of)
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
           "settings": dict(g.settings), "effective_settings": effective_settings(pstate.groups, g.path),
           "containers": len(cts), "vms": len(vms), "attrs": dict(g.attrs)}
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


@command("group.ls", needs=Perm.STATS)
async def ls(ctx: Context, pool: str | None = None) -> list:
    """Groups of every pool, or of one, parents before children (an
    account's: those it has a permission in)."""
    pools = [ctx.node.registry.pool(pool)] if pool else ctx.node.registry.pools.values()
    return [_public(ctx, p, g) for p in pools for _, g in sorted(p.groups.items())
            if ctx.access.may(Perm.STATS, p.pool.name, g.path)]


@command("group.show", target=Target("group", "path", pool_arg="pool"), needs=Perm.STATS)
async def show(ctx: Context, path: str, pool: str | None = None) -> dict:
    """One group: its own limits, the effective ones, what is in force, its members."""
    pstate, g = _find(ctx, path, pool)
    return _public(ctx, pstate, g, detail=True)


def _settings(ctx: Context, g: Group, changes: dict) -> tuple[dict, float | None]:
    """The group's own settings with ``changes`` (checked), and when its
    in_maintenance was set (now, if this sets it)."""
    unit = ctx.node.config.maintenance.unit
    changed = parse_settings(changes, unit, datetime.now(timezone.utc))
    out = {**g.settings, **changed}
    for name, value in changed.items():
        if value is None:
            del out[name]
    since = g.in_maintenance_since
    if "in_maintenance" in changed:
        since = time.time() if changed["in_maintenance"] else None
    return out, since


def _put(g: Group, limits: Limits, settings: dict, since: float | None) -> None:
    g.limits, g.settings, g.in_maintenance_since = limits, settings, since


@command("group.set", mutating=True, target=Target("pool", "pool"))
async def set_(ctx: Context, path: str, limits: dict | None = None, settings: dict | None = None,
               pool: str | None = None) -> dict:
    """Change a group's limits (``none`` lifts one; live on its cgroup) and
    settings (``inherit`` drops its own value)."""
    node = ctx.node
    pstate, g = _find(ctx, path, pool)
    if not limits and not settings:
        raise OsctlError(INVALID, "group.set: give limits or settings to change")
    new_limits = _limits(ctx, g.limits, limits)
    new_settings, since = _settings(ctx, g, settings or {})
    async with _lock(ctx, pstate), Undo() as undo:
        undo.push(node.containers.cgroups.apply_groups, pstate, g.path)
        undo.push(_put, g, g.limits, g.settings, g.in_maintenance_since)
        _put(g, new_limits, new_settings, since)
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
