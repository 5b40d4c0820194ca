"""Users: tenants and their UID/GID maps."""

from __future__ import annotations

from dataclasses import asdict

from osctl.protocol import CONFLICT, EXISTS, INVALID, OsctlError

from ..locks import pool_key, users_key
from ..model.container import Container
from ..model.idmap import MapEntry
from ..model.naming import check_name
from ..model.quota import Quota, Usage, preset
from ..model.user import User
from ..model.vm import VM
from ..undo import Undo
from . import Context, Target, command


def _maps(uid_map: list[str] | None, gid_map: list[str] | None):
    if not uid_map and not gid_map:
        return None
    if not uid_map:
        raise OsctlError(INVALID, "--map-uid is needed with --map-gid (or give --map for both)")
    uids = [MapEntry.parse(m) for m in uid_map]
    gids = [MapEntry.parse(m) for m in gid_map] if gid_map else list(uids)
    return uids, gids


@command("user.new", mutating=True, target=Target("pool", "pool"))
async def new(ctx: Context, name: str, pool: str | None = None,
              uid_map: list[str] | None = None, gid_map: list[str] | None = None) -> dict:
    """Create a user: a block of the pool's id-range, or explicit maps."""
    node = ctx.node
    check_name("user", name)
    pstate = node.registry.pool(pool)
    maps = _maps(uid_map, gid_map)
    async with node.locks.hold(pool_key(pstate.pool.name), "user.new", shared=True), \
            node.locks.hold(users_key(pstate.pool.name), "user.new"), Undo() as undo:
        if name in pstate.users:
            raise OsctlError(EXISTS, f"user {name!r} exists in pool {pstate.pool.name}")
        # Undone last, after the user and its block are gone from memory again.
        undo.push(pstate.save_idrange)
        undo.push(node.sync_subids)
        if maps is None:
            # Around other users' ranges and around the host's own grants
            # (checked again under the files' locks when they are written).
            taken = [(s, e) for _k, s, e, _h in node.registry.taken_ranges()]
            taken += [(g.start, g.end) for grants in node.subids.foreign().values() for g in grants]
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
        node.registry.check_map_free(user)
        user.quota = _default_quota(node.config.default_quota)
        pstate.users[name] = user
        undo.push(pstate.users.pop, name)
        await node.sync_subids(new=[user])
        pstate.save_idrange()
        pstate.save_user(user)
    node.events.publish("add", object="user", pool=pstate.pool.name, id=name)
    return user.public()


def _default_quota(policy: str | dict | None) -> Quota:
    """The node's quota for new users: none, a preset's name, or the values."""
    if policy is None:
        return Quota()
    if isinstance(policy, str):
        return preset(policy)
    return Quota().updated({str(k): v for k, v in policy.items()})


@command("user.set", mutating=True, target=Target("user", "name"))
async def set_(ctx: Context, name: str, quota: dict | None = None,
               quota_preset: str | None = None) -> dict:
    """Change a user's quota: a preset (``staging``), then single values
    (``none`` lifts one). Existing containers are not checked against it;
    it binds from the next change on."""
    node = ctx.node
    pstate, user = node.registry.user(name)
    new_quota = preset(quota_preset) if quota_preset else user.quota
    new_quota = new_quota.updated({str(k): v for k, v in (quota or {}).items()})
    async with node.locks.hold(pool_key(pstate.pool.name), "user.set", shared=True), \
            node.locks.hold(users_key(pstate.pool.name), "user.set"):
        user.quota = new_quota
        pstate.save_user(user)
    return user.public()


@command("user.ls")
async def ls(ctx: Context, pool: str | None = None) -> list:
    """Users of every pool, or of one."""
    pools = [ctx.node.registry.pool(pool)] if pool else ctx.node.registry.pools.values()
    out = []
    for p in pools:
        for u in p.users.values():
            out.append({**u.public(), "containers": sum(1 for c in p.cts.values() if c.user == u.name)})
    return out


@command("user.show")
async def show(ctx: Context, name: str) -> dict:
    """One user."""
    pstate, user = ctx.node.registry.user(name)
    mine = pstate.instances_of(user.name)
    return {**user.public(), "containers": sorted(c.id for c in mine if isinstance(c, Container)),
            "vms": sorted(v.id for v in mine if isinstance(v, VM)),
            # What its containers and VMs hold, counted as its quota counts them.
            "quota_usage": asdict(Usage.of(mine))}


@command("user.del", mutating=True, target=Target("user", "name"))
async def delete(ctx: Context, name: str) -> dict:
    """Delete a user that owns no containers and no VMs; its ID block becomes free."""
    node = ctx.node
    pstate, user = node.registry.user(name)
    async with node.locks.hold(pool_key(pstate.pool.name), "user.del", shared=True), \
            node.locks.hold(users_key(pstate.pool.name), "user.del"):
        owned = sorted(c.id for c in pstate.cts.values() if c.user == user.name)
        owned += sorted(f"VM {v.id}" for v in pstate.vms.values() if v.user == user.name)
        if owned:
            raise OsctlError(CONFLICT, f"user {user.name} still owns containers or VMs: {', '.join(owned)}")
        pstate.store.delete("user", user.name)
        del pstate.users[user.name]
        if user.block is not None:
            pstate.idrange.release(user.block)
            pstate.save_idrange()
        await node.sync_subids()
    node.events.publish("remove", object="user", pool=pstate.pool.name, id=user.name)
    return {"name": user.name, "pool": pstate.pool.name}
