"""Bind mounts of the node's directories (or files) in a container: list,
add, delete. Root's alone: they open the node's files to a tenant.

A mount is kept in the container's config and is put in at every start,
before its init runs, mapped as the rootfs is (by the container's user
namespace on an idmapped pool whose source's filesystem takes it), a
read-only one locked so (``runtime/binds.py``). On a running container
``add`` mounts it at once and ``del`` unmounts it; where that fails, the
change waits for the next start (``restart_pending``), and the reply says
why.
"""

from __future__ import annotations

import asyncio
import logging
import os
import posixpath
from pathlib import Path
from typing import Awaitable, Callable

from osctl.protocol import EXISTS, INVALID, NOT_FOUND, OsctlError

from ..model.account import Perm
from ..model.mount import MAX_MOUNTS, Mount, check_paths
from ..model.pool import IDMAP_MOUNT
from ..runtime import binds
from ..runtime.idmapped import supports_idmapped_mounts
from ..undo import Undo
from . import Context, Target, command, hold_instance
from .ct import find

log = logging.getLogger(__name__)


def _row(m: Mount, live: set[str] | None) -> dict:
    return {**m.to_dict(), "mounted": None if live is None else m.dst in live}


@command("ct.mount.ls", target=Target("ct", "id"), needs=Perm.STATS)
async def ls(ctx: Context, id: str) -> list:
    """The container's bind mounts; ``mounted``: whether each is mounted
    inside now (None while it is stopped)."""
    _, ct = find(ctx, id)
    live = binds.mount_points(ct.init_pid) if ct.running and ct.init_pid else None
    return [_row(m, live) for m in ct.mounts]


async def _staged(ctx: Context, pstate, ct, work: Callable[[], Awaitable], what: str) -> str | None:
    """``work`` (a live mount or unmount) on a running container; if it
    fails, the change waits for its next start: the reason, or None."""
    if not (ct.running and ct.init_pid):
        return None
    try:
        await work()
        return None
    except OsctlError as e:
        log.warning("%s:%s: %s live failed, staged: %s", ct.pool, ct.id, what, e.message)
        ct.restart_pending = True
        pstate.save_ct(ct)
        return f"{e.message}; in force at its next start"


async def _put(ctx: Context, pstate, ct, mounts: list[Mount]) -> None:
    """The container's mounts as ``mounts``, saved and in its LXC config;
    as they were if either fails."""
    async with Undo() as undo:
        undo.push(_write, ctx, pstate, ct, ct.mounts)
        _write(ctx, pstate, ct, mounts)


def _write(ctx: Context, pstate, ct, mounts: list[Mount]) -> None:
    ct.mounts = mounts
    pstate.save_ct(ct)
    ctx.node.containers.write_config(pstate, ct)


@command("ct.mount.add", mutating=True, target=Target("ct", "id"))
async def add(ctx: Context, id: str, src: str, dst: str, ro: bool = False) -> dict:
    """Bind node path ``src`` (a directory or file that exists) on ``dst``
    inside the container (``ro``: read-only); at once if it runs."""
    src, dst = check_paths(src, dst)
    pstate, ct = find(ctx, id)
    if not (os.path.isdir(src) or os.path.isfile(src)):
        raise OsctlError(NOT_FOUND, f"{src}: no such directory or file on the node")
    idmapped = pstate.pool.idmap == IDMAP_MOUNT and await asyncio.to_thread(supports_idmapped_mounts, Path(src))
    m = Mount(src=src, dst=dst, ro=ro, idmapped=idmapped)
    async with hold_instance(ctx, ct, "ct.mount.add"):
        note = await mount_in(ctx, pstate, ct, m)
    return {"id": ct.id, "pool": ct.pool, **m.to_dict(), "staged": note}


def check_free(ct, dst: str) -> None:
    """Refuse a new mount on ``dst`` where there is one, or too many."""
    if any(x.dst == dst for x in ct.mounts):
        raise OsctlError(EXISTS, f"container {ct.id} has a mount on {dst} already")
    if len(ct.mounts) >= MAX_MOUNTS:
        raise OsctlError(INVALID, f"container {ct.id} has {MAX_MOUNTS} mounts, the most it may have")


async def mount_in(ctx: Context, pstate, ct, m: Mount) -> str | None:
    """Under the container's lock: ``m`` one of its mounts, mounted at once
    if it runs; why it waits for the next start (None: it does not)."""
    check_free(ct, m.dst)
    await _put(ctx, pstate, ct, [*ct.mounts, m])
    return await _staged(ctx, pstate, ct, lambda: binds.mount_live(ct.id, ct.init_pid, m),
                         f"mount on {m.dst}")


async def unmount_from(ctx: Context, pstate, ct, dst: str) -> tuple[Mount, str | None]:
    """Under the container's lock: its mount on ``dst`` gone, unmounted at
    once if it runs; the mount, and why it waits (None: it does not)."""
    gone = [m for m in ct.mounts if m.dst == dst]
    if not gone:
        raise OsctlError(NOT_FOUND, f"container {ct.id} has no mount on {dst!r}")
    await _put(ctx, pstate, ct, [m for m in ct.mounts if m.dst != dst])
    return gone[0], await _staged(ctx, pstate, ct, lambda: binds.umount_live(ct, dst),
                                  f"unmount of {dst}")


@command("ct.mount.del", mutating=True, target=Target("ct", "id"))
async def delete(ctx: Context, id: str, dst: str) -> dict:
    """Remove the mount on ``dst``; unmounted at once if the container runs."""
    dst = posixpath.normpath(dst) if dst.startswith("/") else dst
    pstate, ct = find(ctx, id)
    async with hold_instance(ctx, ct, "ct.mount.del"):
        gone, note = await unmount_from(ctx, pstate, ct, dst)
    return {"id": ct.id, "pool": ct.pool, **gone.to_dict(), "staged": note}
