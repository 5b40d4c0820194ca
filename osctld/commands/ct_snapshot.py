"""A container's named snapshots: new, list, delete, roll back.

A snapshot holds the rootfs as it was at one moment (on zfs also its
subdatasets: ``ct dataset``), taken while the container runs. Where they
live is the backend's business (``storage``: btrfs read-only subvolumes
beside the rootfs, zfs snapshots of the container's dataset); dir pools
have none (``unsupported``). A rollback puts a stopped container's rootfs
back as a snapshot holds it; a running one is refused unless ``restart``
(stopped, rolled back, started). ``ct del`` refuses a container with
snapshots unless ``force``. They are the basis of incremental sends and of
backups.
"""

from __future__ import annotations

import time

from osctl.protocol import CONFLICT, EXISTS, NOT_FOUND, OsctlError

from ..model.account import Perm
from ..model.container import STOPPED
from ..model.naming import check_name
from ..storage import backend_for
from ..storage.base import Backend, Snapshot
from ..undo import Undo
from . import Context, Seconds, Target, command, hold_instance
from .ct import STOP_TIMEOUT, find


async def _find(backend: Backend, rootfs, ct_id: str, name: str) -> Snapshot:
    for s in await backend.snap_list(rootfs):
        if s.name == name:
            return s
    raise OsctlError(NOT_FOUND, f"container {ct_id} has no snapshot {name!r}")


@command("ct.snapshot.ls", target=Target("ct", "id"), needs=Perm.STATS)
async def ls(ctx: Context, id: str) -> list:
    """The container's snapshots, oldest first: name, when made, and the
    space only each holds (what deleting it frees)."""
    pstate, ct = find(ctx, id)
    snaps = await backend_for(pstate.pool).snap_list(pstate.pool.rootfs(ct.id))
    return [s.public() for s in snaps]


@command("ct.snapshot.new", mutating=True, target=Target("ct", "id"), needs=Perm.MANAGER)
async def new(ctx: Context, id: str, name: str | None = None) -> dict:
    """Snapshot the container's rootfs now (it may run); ``name`` defaults
    to the time (UTC), e.g. ``20261130-071502``."""
    pstate, ct = find(ctx, id)
    name = check_name("snapshot", name or time.strftime("%Y%m%d-%H%M%S", time.gmtime()))
    backend = backend_for(pstate.pool)
    backend.need_snapshots()
    rootfs = pstate.pool.rootfs(ct.id)
    async with hold_instance(ctx, ct, "ct.snapshot.new"):
        if any(s.name == name for s in await backend.snap_list(rootfs)):
            raise OsctlError(EXISTS, f"container {ct.id} has a snapshot {name!r} already")
        await backend.snap_new(rootfs, name)
        snap = await _find(backend, rootfs, ct.id, name)
    return {"id": ct.id, "pool": ct.pool, **snap.public()}


@command("ct.snapshot.del", mutating=True, target=Target("ct", "id"), needs=Perm.MANAGER)
async def delete(ctx: Context, id: str, name: str) -> dict:
    """Delete one snapshot; the container and its other snapshots stay."""
    pstate, ct = find(ctx, id)
    backend = backend_for(pstate.pool)
    rootfs = pstate.pool.rootfs(ct.id)
    async with hold_instance(ctx, ct, "ct.snapshot.del"):
        await _find(backend, rootfs, ct.id, check_name("snapshot", name))
        await backend.snap_del(rootfs, name)
    return {"id": ct.id, "pool": ct.pool, "name": name}


@command("ct.snapshot.rollback", mutating=True, target=Target("ct", "id"), needs=Perm.MANAGER)
async def rollback(ctx: Context, id: str, name: str, restart: bool = False,
                   timeout: Seconds = STOP_TIMEOUT) -> dict:
    """The container's rootfs as snapshot ``name`` holds it (the snapshot
    stays; what was written since is gone). A running container is refused
    unless ``restart``: stopped (killed after ``timeout`` s), rolled back,
    started; if the rollback fails it starts again as it was."""
    node = ctx.node
    pstate, ct = find(ctx, id)
    backend = backend_for(pstate.pool)
    rootfs = pstate.pool.rootfs(ct.id)
    async with hold_instance(ctx, ct, "ct.snapshot.rollback"), Undo() as undo:
        await _find(backend, rootfs, ct.id, check_name("snapshot", name))
        was_running = ct.running
        if ct.state != STOPPED and not (was_running and restart):
            how = ("stop it, or roll back with --restart (stopped, rolled back, started again)"
                   if was_running else "only a stopped or running container is rolled back")
            raise OsctlError(CONFLICT, f"container {ct.id} is {ct.state}: {how}")
        if was_running:
            await node.containers.stop(ct, timeout)
            undo.push(node.containers.start, pstate, ct)
        await backend.snap_rollback(rootfs, name)
        if ct.disk is not None:  # btrfs: the new subvolume has a qgroup of its own
            await backend.set_quota(rootfs, ct.disk)
        undo.commit()
        if was_running:
            await node.containers.start(pstate, ct)
    node.events.publish("change", object="ct", pool=ct.pool, id=ct.id, group=ct.group,
                        settings=["rootfs"])
    return {**ct.public(), "snapshot": name}
