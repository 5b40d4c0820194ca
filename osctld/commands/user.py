"""Users: tenants and their UID/GID maps."""

from __future__ import annotations

from osctl.protocol import CONFLICT, EXISTS, INVALID, OsctlError

from ..model.idmap import MapEntry
from ..model.naming import check_name
from ..model.user import User
from ..undo import Undo
from . import Context, command


def _maps(uid_map: list[str] | None, gid_map: list[str] | None):
    if not uid_map and not gid_map:
        return None
    if not uid_map:
        raise OsctlError(INVALID, "--map-uid is needed with --map-gid (or give --map for both)")
    uids = [MapEntry.parse(m) for m in uid_map]
    gids = [MapEntry.parse(m) for m in gid_map] if gid_map else list(uids)
    return uids, gids


@command("user.new", mutating=True)
async def new(ctx: Context, name: str, pool: str | None = None,
              uid_map: list[str] | None = None, gid_map: list[str] | None = None) -> dict:
    """Create a user: a block of the pool's id-range, or explicit maps."""
    d = ctx.daemon
    check_name("user", name)
    pstate = d.registry.pool(pool)
    ctx.pool = pstate.pool.name
    maps = _maps(uid_map, gid_map)
    async with d.locks.hold(("pool", pstate.pool.name, "ids"), "user.new"), Undo() as undo:
        if name in pstate.users:
            raise OsctlError(EXISTS, f"user {name!r} exists in pool {pstate.pool.name}")
        # Rollback runs newest first: these two rewrite the files once the
        # in-memory steps pushed after them have been undone.
        undo.push(pstate.save_idrange)
        undo.push(d.sync_subids)
        if maps is None:
            taken = [(s, e) for _k, s, e, _h in d.registry.taken_ranges()]
            block = pstate.idrange.allocate(f"user:{name}", taken)
            undo.push(pstate.idrange.release, block)
            start, end = pstate.idrange.block(block)
            entry = MapEntry(0, start, end - start)
            user = User(name, pstate.pool.name, [entry], [entry], block)
        else:
            user = User(name, pstate.pool.name, maps[0], maps[1])
            for kind, s, e in user.host_ranges():
                for i, holder in pstate.idrange.allocated.items():
                    bs, be = pstate.idrange.block(i)
                    if s < be and bs < e:
                        raise OsctlError(CONFLICT, f"{kind.upper()} range {s}-{e - 1} overlaps "
                                                   f"id-range block {i}, held by {holder}")
        d.registry.check_map_free(user)
        pstate.users[name] = user
        undo.push(pstate.users.pop, name)
        d.sync_subids()
        pstate.save_idrange()
        pstate.save_user(user)
    d.events.publish("add", object="user", pool=pstate.pool.name, id=name)
    return user.public()


@command("user.ls")
async def ls(ctx: Context, pool: str | None = None) -> list:
    """Users of every pool, or of one."""
    pools = [ctx.daemon.registry.pool(pool)] if pool else ctx.daemon.registry.pools.values()
    out = []
    for p in pools:
        for u in p.users.values():
            out.append({**u.public(), "containers": sum(1 for c in p.cts.values() if c.user == u.name)})
    return out


@command("user.show")
async def show(ctx: Context, name: str) -> dict:
    """One user."""
    pstate, user = ctx.daemon.registry.user(name)
    return {**user.public(), "containers": sorted(c.id for c in pstate.cts.values() if c.user == user.name)}


@command("user.del", mutating=True)
async def delete(ctx: Context, name: str) -> dict:
    """Delete a user that owns no containers; its ID block becomes free."""
    d = ctx.daemon
    pstate, user = d.registry.user(name)
    ctx.pool = pstate.pool.name
    async with d.locks.hold(("pool", pstate.pool.name, "ids"), "user.del"):
        owned = sorted(c.id for c in pstate.cts.values() if c.user == user.name)
        if owned:
            raise OsctlError(CONFLICT, f"user {user.name} still owns containers: {', '.join(owned)}")
        pstate.store.delete("user", user.name)
        del pstate.users[user.name]
        if user.block is not None:
            pstate.idrange.release(user.block)
            pstate.save_idrange()
        d.sync_subids()
    d.events.publish("remove", object="user", pool=pstate.pool.name, id=user.name)
    return {"name": user.name, "pool": pstate.pool.name}
