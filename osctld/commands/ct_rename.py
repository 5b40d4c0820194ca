"""Rename a stopped container: everything keyed by its id moves.

Its config (``conf/ct/<id>.yml``), its directory in the pool with the rootfs
dataset in it, its LXC directory (config, log, why it last stopped), its
planned maintenances; the history follows it (``history.read``: the lines
before the rename are found by the new id too). Its hostname, addresses and
everything else are kept. A running container is refused: LXC, its cgroups
and its monitor know it by its id.

Crash-safe in this order: the config under the new id is written first, so
that the dataset is never without a config naming it (a dataset without one
is an orphan the next daemon removes); the old config goes last. A kill
in between leaves both: the next daemon keeps the one whose directory is
there (``orphans.interrupted_renames``).
"""

from __future__ import annotations

from osctl.protocol import CONFLICT, EXISTS, NOT_FOUND, OsctlError

from ..locks import ct_key, pool_key
from ..model.account import Perm
from ..model.container import STOPPED
from ..model.naming import check_name
from ..storage import backend_for
from ..undo import Undo
from . import Context, Target, cluster, command


@command("ct.rename", mutating=True, target=Target("ct", "id"), needs=Perm.MANAGER)
async def rename(ctx: Context, id: str, new_id: str) -> dict:
    """Container ``id`` is ``new_id`` from now on (stopped containers only)."""
    node = ctx.node
    check_name("container", new_id)
    cluster.check_free(ctx, "ct", new_id)  # in a cluster, an id is taken once
    pstate, ct = node.registry.ct(id)
    old = ct.id
    pool = pstate.pool
    locks = node.locks
    first, second = sorted((old, new_id))  # two renames crossing each other wait, not deadlock
    async with locks.hold(pool_key(ct.pool), "ct.rename", shared=True), \
            locks.hold(ct_key(ct.pool, first), "ct.rename"), \
            locks.hold(ct_key(ct.pool, second), "ct.rename"):
        current = node.registry.pools.get(ct.pool)  # the pool exported, it deleted while we waited?
        if current is None or current.cts.get(old) is not ct:
            raise OsctlError(NOT_FOUND, f"container {ct.pool}:{old} is gone")
        if new_id == old:
            return ct.public()
        if new_id in pstate.cts:
            raise OsctlError(EXISTS, f"container {new_id!r} exists in pool {pool.name}")
        pstate.check_name_free("ct", "container", new_id)
        if pool.ct_dir(new_id).exists():
            raise OsctlError(CONFLICT, f"{pool.ct_dir(new_id)} is in the way (no container has "
                                       "it: the daemon removes it at its next start)")
        if ct.state != STOPPED:
            how = ("stop it to rename it (LXC and its cgroups know a running one by its id)"
                   if ct.running else "only a stopped container is renamed")
            raise OsctlError(CONFLICT, f"container {old} is {ct.state}: {how}")
        backend = backend_for(pool)
        plans = [m for m in pstate.maintenances.values() if m.kind == "ct" and m.machine == old]
        async with Undo() as undo:
            undo.push(node.containers.write_config, pstate, ct)  # last: as it was, under its old id
            undo.push(setattr, ct, "id", old)
            ct.id = new_id
            pstate.save_ct(ct)
            undo.push(pstate.store.delete, "ct", new_id)
            await backend.rename(pool.ct_dir(old), pool.ct_dir(new_id))
            undo.push(backend.rename, pool.ct_dir(new_id), pool.ct_dir(old))
            node.containers.rename(ct.pool, old, new_id)
            undo.push(node.containers.rename, ct.pool, new_id, old)
            node.containers.write_config(pstate, ct)
            for m in plans:
                m.machine = new_id
                pstate.save_maintenance(m)
                undo.push(_machine, pstate, m, old)
            pstate.store.delete("ct", old)
        pstate.cts[new_id] = pstate.cts.pop(old)
    node.events.publish("remove", object="ct", pool=ct.pool, id=old, group=ct.group,
                        renamed_to=new_id)
    node.events.publish("add", object="ct", pool=ct.pool, id=new_id, group=ct.group, renamed_from=old)
    return {**ct.public(), "renamed_from": old}


def _machine(pstate, m, machine: str) -> None:
    m.machine = machine
    pstate.save_maintenance(m)
