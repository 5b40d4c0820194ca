"""Flavors: named sizes that containers and VMs are created from (``--flavor``)
and changed to (``ct set ID flavor F``)."""

from __future__ import annotations

import contextlib

from osctl.protocol import CONFLICT, EXISTS, OsctlError

from ..locks import flavor_key, pool_key
from ..model.flavor import Flavor
from ..model.units import parse_size
from . import Context, Target, command
from .vm import Cores, memory_size, vm_policy


@contextlib.asynccontextmanager
async def _lock(ctx: Context, pstate, name: str):
    locks = ctx.node.locks
    async with locks.hold(pool_key(pstate.pool.name), "flavor", shared=True), \
            locks.hold(flavor_key(pstate.pool.name, name), "flavor"):
        yield


@command("flavor.new", mutating=True, target=Target("pool", "pool"))
async def new(ctx: Context, name: str, cores: Cores, memory: int | str, disk: int | str,
              swap: int | str | None = None, pool: str | None = None) -> dict:
    """A flavor, within the node's VM policy (it sizes VMs and containers alike)."""
    pstate = ctx.node.registry.pool(pool)
    flavor = Flavor(name=name, pool=pstate.pool.name, cores=cores, memory=memory_size(memory),
                    disk=parse_size(disk, "disk"),
                    swap=None if swap is None else parse_size(swap, "swap"))
    vm_policy(ctx).check(flavor.cores, flavor.memory, flavor.disk)
    async with _lock(ctx, pstate, name):
        if name in pstate.flavors:
            raise OsctlError(EXISTS, f"flavor {name!r} exists in pool {pstate.pool.name}")
        pstate.save_flavor(flavor)
        pstate.flavors[name] = flavor
    ctx.node.events.publish("add", object="flavor", pool=flavor.pool, id=name)
    return flavor.public()


@command("flavor.ls")
async def ls(ctx: Context, pool: str | None = None) -> list:
    """Flavors, of one pool or all."""
    pools = [ctx.node.registry.pool(pool)] if pool else ctx.node.registry.pools.values()
    return [f.public() for p in pools for f in sorted(p.flavors.values(), key=lambda f: f.name)]


def _users(pstate, name: str) -> list[str]:
    """The containers and VMs last given flavor ``name``."""
    return ([f"container {c.id}" for c in pstate.cts.values() if c.flavor == name]
            + [f"VM {v.id}" for v in pstate.vms.values() if v.flavor == name])


@command("flavor.show")
async def show(ctx: Context, name: str, pool: str | None = None) -> dict:
    """One flavor and the servers that have it."""
    pstate = ctx.node.registry.pool(pool)
    return {**pstate.flavor(name).public(), "used_by": _users(pstate, name)}


@command("flavor.del", mutating=True, target=Target("pool", "pool"))
async def delete(ctx: Context, name: str, pool: str | None = None) -> dict:
    """Delete a flavor no container or VM has."""
    pstate = ctx.node.registry.pool(pool)
    pstate.flavor(name)
    async with _lock(ctx, pstate, name):
        flavor = pstate.flavor(name)  # deleted while we waited?
        users = _users(pstate, name)
        if users:
            raise OsctlError(CONFLICT, f"flavor {name} is used by {', '.join(users)}: "
                                       "give them another first")
        pstate.store.delete("flavor", name)
        pstate.flavors.pop(name, None)
    ctx.node.events.publish("remove", object="flavor", pool=flavor.pool, id=name)
    return flavor.public()
