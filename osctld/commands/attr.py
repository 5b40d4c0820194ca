"""Free-form metadata (``vendor:key`` attributes) on containers, VMs, users,
groups and pools: set and unset. ``show`` and ``ls`` of each carry them as
``attrs``; the model is ``model/attrs.py``.

Setting one is root's alone: attributes tie an object to a frontend's
billing records, which a tenant's own account must not rewrite.
"""

from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator, Callable

from ..locks import pool_key, users_key
from ..model.attrs import updated
from ..model.group import check_group_path
from . import Context, Target, command, hold_instance, instance_command
from .group import _lock as groups_lock


async def _change(obj: Any, key: str, value: str | None, hold: contextlib.AbstractAsyncContextManager,
                  save: Callable[[], None]) -> dict:
    """``obj``'s attribute ``key`` set (None: unset) under ``hold`` and saved;
    checked before anything changes, put back if the save fails."""
    updated(obj.attrs, key, value)  # refused before waiting for the lock
    async with hold:
        before = obj.attrs
        obj.attrs = updated(before, key, value)
        try:
            save()
        except BaseException:
            obj.attrs = before
            raise
    return {"attrs": dict(obj.attrs)}


async def _instance(ctx: Context, vm: bool, id: str, key: str, value: str | None) -> dict:
    kind = "vm" if vm else "ct"
    pstate, inst = getattr(ctx.node.registry, kind)(id)
    out = await _change(inst, key, value, hold_instance(ctx, inst, f"{kind}.attr"),
                        lambda: pstate.save_instance(inst))
    ctx.node.events.publish("change", object=kind, pool=inst.pool, id=inst.id, group=inst.group,
                            settings=["attrs"])
    return {"id": inst.id, "pool": inst.pool, **out}


@instance_command("attr.set", mutating=True)
async def instance_set(ctx: Context, vm: bool, id: str, key: str, value: str) -> dict:
    """Set attribute ``key`` (``vendor:key``) of a container or VM to ``value``."""
    return await _instance(ctx, vm, id, key, value)


@instance_command("attr.unset", mutating=True)
async def instance_unset(ctx: Context, vm: bool, id: str, key: str) -> dict:
    """Remove attribute ``key`` of a container or VM (one it does not have: no change)."""
    return await _instance(ctx, vm, id, key, None)


@contextlib.asynccontextmanager
async def _users_lock(ctx: Context, pool: str) -> AsyncIterator[None]:
    locks = ctx.node.locks
    async with locks.hold(pool_key(pool), "user.attr", shared=True), \
            locks.hold(users_key(pool), "user.attr"):
        yield


async def _user(ctx: Context, name: str, key: str, value: str | None) -> dict:
    pstate, user = ctx.node.registry.user(name)
    out = await _change(user, key, value, _users_lock(ctx, pstate.pool.name),
                        lambda: pstate.save_user(user))
    return {"name": user.name, "pool": user.pool, **out}


async def _group(ctx: Context, path: str, pool: str | None, key: str, value: str | None) -> dict:
    pstate = ctx.node.registry.pool(pool)
    g = pstate.group(check_group_path(path))
    out = await _change(g, key, value, groups_lock(ctx, pstate), lambda: pstate.save_group(g))
    return {"path": g.path, "pool": g.pool, **out}


@command("group.attr.set", mutating=True, target=Target("pool", "pool"))
async def group_set(ctx: Context, path: str, key: str, value: str, pool: str | None = None) -> dict:
    """Set attribute ``key`` (``vendor:key``) of a group to ``value``."""
    return await _group(ctx, path, pool, key, value)


@command("group.attr.unset", mutating=True, target=Target("pool", "pool"))
async def group_unset(ctx: Context, path: str, key: str, pool: str | None = None) -> dict:
    """Remove attribute ``key`` of a group."""
    return await _group(ctx, path, pool, key, None)


async def _pool(ctx: Context, name: str, key: str, value: str | None) -> dict:
    pstate = ctx.node.registry.pool(name)
    # Shared: the pool's own commands go on; pool.yml is written whole and at once.
    hold = ctx.node.locks.hold(pool_key(pstate.pool.name), "pool.attr", shared=True)
    out = await _change(pstate.pool, key, value, hold, pstate.save_pool)
    return {"name": pstate.pool.name, **out}


# The kinds named by a ``name`` argument: how each is changed, and its target.
NAMED = {"user": (_user, Target("user", "name")), "pool": (_pool, Target("pool", "name"))}


async def named_set(ctx: Context, kind: str, name: str, key: str, value: str) -> dict:
    """Set attribute ``key`` (``vendor:key``) of a user or pool to ``value``."""
    return await NAMED[kind][0](ctx, name, key, value)


async def named_unset(ctx: Context, kind: str, name: str, key: str) -> dict:
    """Remove attribute ``key`` of a user or pool."""
    return await NAMED[kind][0](ctx, name, key, None)


for _kind, (_, _target) in NAMED.items():
    command(f"{_kind}.attr.set", mutating=True, target=_target, bound={"kind": _kind})(named_set)
    command(f"{_kind}.attr.unset", mutating=True, target=_target, bound={"kind": _kind})(named_unset)
