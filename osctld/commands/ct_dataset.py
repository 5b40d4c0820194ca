"""A container's own datasets on a zfs pool (as vpsAdminOS offers): new,
list, delete.

A subdataset ``D/ct/<id>/<name>`` has a quota of its own (``refquota``),
is in the container's snapshots (``ct snapshot``: one atomic snapshot of
all) and goes with the container. It is mounted on the node beside the
rootfs (``storage/zfs.py``) and bound inside at its mount point as a ``ct
mount`` is (idmapped, so its root is the container's root; at once where
the container runs, and at every start): ``ct mount ls`` shows it too.
Other backends answer ``unsupported`` (a btrfs subvolume with a qgroup
would do, but is not done).
"""

from __future__ import annotations

from osctl.protocol import CONFLICT, OsctlError

from ..model.account import Perm
from ..model.mount import Mount, check_paths
from ..model.naming import check_name
from ..model.pool import IDMAP_MOUNT
from ..model.units import parse_size
from ..storage import backend_for
from ..undo import Undo
from . import Context, Target, command, hold_instance
from .ct import find
from .ct_mount import check_free, mount_in, unmount_from


def _mountpoints(ct) -> dict[str, str]:
    """Where each path on the node is bound inside."""
    return {m.src: m.dst for m in ct.mounts}


@command("ct.dataset.ls", target=Target("ct", "id"), needs=Perm.STATS)
async def ls(ctx: Context, id: str) -> list:
    """The container's datasets: name, where inside, used and quota (bytes)."""
    pstate, ct = find(ctx, id)
    backend = backend_for(pstate.pool)
    backend.need_subdatasets()
    inside = _mountpoints(ct)
    return [{**row, "mountpoint": inside.get(row["path"])}
            for row in await backend.subdataset_list(pstate.pool.rootfs(ct.id))]


@command("ct.dataset.new", mutating=True, target=Target("ct", "id"), needs=Perm.MANAGER)
async def new(ctx: Context, id: str, name: str, mountpoint: str | None = None,
              quota: str | int | None = None) -> dict:
    """A new dataset of the container's, ``quota`` at most, mounted inside
    at ``mountpoint`` (default ``/<name>``); at once if it runs."""
    check_name("dataset", name)
    size = None if quota is None else parse_size(quota, "dataset quota")
    pstate, ct = find(ctx, id)
    backend = backend_for(pstate.pool)
    backend.need_subdatasets()
    rootfs = pstate.pool.rootfs(ct.id)
    async with hold_instance(ctx, ct, "ct.dataset.new"), Undo() as undo:
        src, dst = check_paths(str(backend.subdataset_path(rootfs, name)), mountpoint or f"/{name}")
        check_free(ct, dst)
        path = await backend.subdataset_new(rootfs, name, size)
        undo.push(backend.subdataset_del, rootfs, name)
        note = await mount_in(ctx, pstate, ct, Mount(src=str(path), dst=dst,
                                                     idmapped=pstate.pool.idmap == IDMAP_MOUNT))
    return {"id": ct.id, "pool": ct.pool, "name": name, "mountpoint": dst, "quota": size,
            "path": src, "staged": note}


@command("ct.dataset.del", mutating=True, target=Target("ct", "id"), needs=Perm.MANAGER)
async def delete(ctx: Context, id: str, name: str) -> dict:
    """Delete a dataset of the container's with its data (and its part of
    the container's snapshots); unmounted inside first where it runs."""
    check_name("dataset", name)
    pstate, ct = find(ctx, id)
    backend = backend_for(pstate.pool)
    backend.need_subdatasets()
    rootfs = pstate.pool.rootfs(ct.id)
    async with hold_instance(ctx, ct, "ct.dataset.del"):
        path = str(backend.subdataset_path(rootfs, name))
        dst = _mountpoints(ct).get(path)
        if dst is not None:
            _, note = await unmount_from(ctx, pstate, ct, dst)
            if note is not None:
                raise OsctlError(CONFLICT, f"dataset {name} is in use in {ct.id} ({note}): "
                                           "stop the container to delete it")
        await backend.subdataset_del(rootfs, name)
    return {"id": ct.id, "pool": ct.pool, "name": name}
