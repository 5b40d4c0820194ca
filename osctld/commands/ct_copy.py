"""Containers as files and copies: export, import, copy, chown.

A copy is read from one moment of the source's tree: a read-only snapshot
where the backend has them (btrfs: the container may run; its lock is held
only while the snapshot is taken), else the rootfs of the stopped container
under its lock, or (``live``) the rootfs of a running one as it changes.

Owners on disk: idmapped pools store a rootfs as the container sees it,
chown pools shifted through its user's map (docs/design-notes.md). Every
copy into another pool or user's map translates them where the two ways
differ (``model.idmap.translator``); between idmapped pools nothing is
rewritten.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

from osctl.protocol import CONFLICT, EXISTS, INVALID, OsctlError
from osctl.units import format_size

from .. import archive
from ..distconfig import for_distribution
from ..model.container import Container
from ..model.group import DEFAULT_GROUP
from ..model.idmap import MapEntry, translator
from ..model.lifecycle import State
from ..model.naming import check_hostname
from ..model.netif import ROUTED, random_hwaddr
from ..model.pool import IDMAP_CHOWN, Pool
from ..model.user import User
from ..net import alloc
from ..runtime.idmapped import remap_tree
from ..storage import backend_for
from ..storage.base import Backend
from ..undo import Undo
from . import Context, Target, command, hold_instance, user_ref
from . import user as user_commands
from .instance import creating

# Where a container may be read from with the backend's help or its lock.
READABLE = (State.STOPPED, State.SOFT_DELETED, State.RUNNING, State.FROZEN,
            State.STARTING, State.STOPPING)
Maps = tuple[list[MapEntry] | None, list[MapEntry] | None]


def stored_maps(pool: Pool, user: User) -> Maps:
    """How the owners of a rootfs of ``user`` are stored in ``pool``: shifted
    through the user's maps (chown pools), or as the container sees them (None)."""
    if pool.idmap == IDMAP_CHOWN:
        return list(user.uid_map), list(user.gid_map)
    return None, None


async def restore_owners(ctx: Context, rootfs: Path, src: Maps, dst: Maps) -> None:
    """Owners of a tree stored as ``src`` says, stored as ``dst`` says."""
    uid, gid = translator(src[0], dst[0]), translator(src[1], dst[1])
    if uid or gid:
        ctx.progress({"step": "owners", "message": "shifting owners to the new map"})
        await asyncio.to_thread(remap_tree, rootfs, uid or _same, gid or _same)


def _same(i: int) -> int:
    return i


def _snapshot_path(pool: Pool, ct_id: str) -> Path:
    """Beside the datasets, named like no container (start-up removes what
    a killed daemon left: ``orphans.SNAPSHOT_GLOB``)."""
    return pool.path / "ct" / f".{ct_id}.snap-{secrets.token_hex(4)}"


@contextlib.asynccontextmanager
async def readable(ctx: Context, pstate, ct: Container, backend: Backend, live: bool,
                   what: str) -> AsyncIterator[Path]:
    """The tree to copy ``ct``'s rootfs from, as of one moment (see the
    module's docstring); a snapshot is destroyed afterwards."""
    rootfs = pstate.pool.rootfs(ct.id)
    snap = None
    async with hold_instance(ctx, ct, what):
        await ctx.node.containers.refresh(ct)
        if ct.state not in READABLE:
            raise OsctlError(CONFLICT, f"container {ct.id} is {ct.state}: it cannot be copied now")
        stopped = ct.state in (State.STOPPED, State.SOFT_DELETED)
        if backend.snapshots:
            snap = _snapshot_path(pstate.pool, ct.id)
            ctx.progress({"step": "snapshot", "message": f"snapshotting {ct.id}"})
            await backend.snapshot(rootfs, snap)
        elif stopped:  # copied under its lock: nothing starts it meanwhile
            yield rootfs
            return
        elif not live:
            raise OsctlError(CONFLICT, f"container {ct.id} is {ct.state} and pool {ct.pool} is a "
                                       f"{backend.name} pool, which has no snapshots: stop it, or "
                                       "copy it as it runs with --live (files it writes "
                                       "meanwhile may be copied half written)")
    try:
        yield snap or rootfs
    finally:
        if snap is not None:
            await asyncio.shield(backend.destroy(snap))


def _one_fd(ctx: Context, verb: str) -> int:
    if len(ctx.fds) != 1:
        raise OsctlError(INVALID, f"ct.{verb} needs one descriptor: the file")
    return ctx.fds[0]


# --- export and import ---------------------------------------------------------------


@command("ct.export")
async def export(ctx: Context, id: str, compression: str = "zstd", live: bool = False) -> dict:
    """Write a container, its config and rootfs, to the file passed as the
    one descriptor (osctld/archive.py says the format). A running container
    is read from a snapshot where its pool has them; elsewhere it is
    refused unless ``live`` (copied as it runs)."""
    pstate, ct = ctx.node.registry.ct(id)
    compression = archive.compression_of(compression)
    out = _one_fd(ctx, "export")
    backend = backend_for(pstate.pool)
    user = pstate.users[ct.user]
    shifted = stored_maps(pstate.pool, user)
    meta = {"format": archive.FORMAT, "kind": "ct", "created": time.time(),
            "pool": {"name": pstate.pool.name, "backend": pstate.pool.backend,
                     "idmap": pstate.pool.idmap},
            "container": ct.to_dict(), "user": user.to_dict(),
            "rootfs": {"shifted": None if shifted[0] is None else
                       {"uid_map": [str(e) for e in shifted[0]],
                        "gid_map": [str(e) for e in shifted[1] or ()]},
                       "live": live and not backend.snapshots}}
    async with readable(ctx, pstate, ct, backend, live, "ct.export") as tree:
        ctx.progress({"step": "rootfs", "message": f"writing {ct.id} ({compression})"})
        size = await archive.write(out, meta, tree, compression, ctx.progress, live)
    return {"id": ct.id, "pool": ct.pool, "bytes": size, "compression": compression,
            "snapshot": backend.snapshots}


def _incoming(config: dict, id: str, pool: str, user: str, group: str) -> Container:
    """A container as ``config`` (another's, or an export's) has it, made
    anew: stopped, no staged deletion or restart, its netifs without their
    node's indices (allocated when it is made)."""
    d = {**config, "id": id, "user": user, "group": group, "deletion": None,
         "restart_pending": False, "created": time.time()}
    try:
        ct = Container.from_dict(d, pool)
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise OsctlError(INVALID, f"the container's config is not usable: {e}") from None
    for n in ct.netifs:
        n.index = -1
    return ct


async def _check_addresses(ctx: Context, ct: Container) -> None:
    """Refuse ``ct`` if any netif's address or routed prefix is taken on
    this node (by the node itself or another netif)."""
    for n in ct.netifs:
        routed = n.type == ROUTED
        await ctx.node.net.check_free([(ipaddress.ip_network(a.ip), f"address {a.ip}")
                                       for a in n.ips], routed)
        await ctx.node.net.check_free([(r.network, f"route {r.prefix}") for r in n.routes],
                                      routed, on_node=routed, route=True)


def _reserve_netifs(ctx: Context, ct: Container) -> None:
    """In ``creating``'s body, once ``ct`` is in its table: its addresses
    checked again against every other netif (no await since: a reservation)
    and an index for each netif."""
    net = ctx.node.net
    others = [(c, n) for c, n in net.holders() if c is not ct]
    for n in ct.netifs:
        alloc.check_free(others, n.held())
    for n in ct.netifs:
        n.index = net.allocate()


async def _owner(ctx: Context, pstate, name: str, undo: Undo, notes: list[str]) -> User:
    """User ``name`` of the pool, made (a block of the pool's id-range) if it
    is not there; the undo stack deletes a user made here."""
    user = pstate.users.get(name)
    if user is not None:
        return user
    await user_commands.new(ctx, name, pool=pstate.pool.name)
    undo.push(user_commands.delete, ctx, f"{pstate.pool.name}:{name}")
    notes.append(f"user {name} made in pool {pstate.pool.name}")
    return pstate.users[name]


def _settle(pstate, ct: Container, backend: Backend, notes: list[str]) -> None:
    """What of a container's config this pool cannot keep: a group it does
    not have (the default group instead), a disk quota where there are none."""
    if ct.group not in pstate.groups:
        notes.append(f"group {ct.group} is not in pool {pstate.pool.name}: put in {DEFAULT_GROUP}")
        ct.group = DEFAULT_GROUP
    if ct.disk is not None and not backend.quotas:
        notes.append(f"pool {pstate.pool.name} has no disk quotas: the quota is dropped")
        ct.disk = None


async def admit(ctx: Context, pstate, ct: Container) -> tuple[Backend, list[str]]:
    """What an incoming container (an export's, an OpenVZ one) goes through
    before anything is made: settled into the pool, its id and addresses
    free. The pool's backend and the notes on what was settled."""
    backend = backend_for(pstate.pool)
    notes: list[str] = []
    _settle(pstate, ct, backend, notes)
    if ct.id in pstate.cts:
        raise OsctlError(EXISTS, f"container {ct.id!r} exists in pool {pstate.pool.name}: "
                         "give another id with --as-id")
    await _check_addresses(ctx, ct)
    return backend, notes


@command("ct.import", mutating=True, target=Target("pool", "pool"))
async def import_(ctx: Context, as_id: str | None = None, user: str | None = None,
                  pool: str | None = None) -> dict:
    """Make a container from an export, the file passed as the one
    descriptor: as ``as_id`` (default its own id), owned by ``user`` (default
    its own user, made if the pool has none of that name), in ``pool``. All is
    checked first (format, id, user, addresses); a failure leaves nothing."""
    node = ctx.node
    pstate = node.registry.pool(pool)
    fd = _one_fd(ctx, "import")
    compression, size = archive.input_file(fd)
    meta = await archive.read_metadata(fd, compression)
    owner = meta["user"].get("name")
    if user:  # a bare name is the target pool's
        upstate, found = node.registry.user(user_ref(user, pstate.pool.name))
        if upstate is not pstate:
            raise OsctlError(INVALID, f"user {user} is not in pool {pstate.pool.name}: give "
                                      f"--pool {upstate.pool.name}")
        owner = found.name
    if not isinstance(owner, str):
        raise OsctlError(INVALID, "the export names no user: give --user")
    ct = _incoming(meta["container"], as_id or meta["container"].get("id"), pstate.pool.name,
                   owner, meta["container"].get("group") or DEFAULT_GROUP)
    try:
        shifted = meta["rootfs"]["shifted"]
        src: Maps = (None, None) if shifted is None else (
            [MapEntry.parse(e) for e in shifted["uid_map"]],
            [MapEntry.parse(e) for e in shifted["gid_map"]])
    except (KeyError, TypeError, AttributeError):
        raise OsctlError(INVALID, "the export's metadata does not say how its owners are "
                                  "stored") from None
    backend, notes = await admit(ctx, pstate, ct)
    async with Undo() as undo:
        u = await _owner(ctx, pstate, owner, undo, notes)
        async with creating(ctx, pstate, ct, u, backend.quotas) as made:
            _reserve_netifs(ctx, ct)
            rootfs = await _new_dataset(pstate, ct, backend, made, backend.create)
            ctx.progress({"step": "rootfs", "message": f"unpacking {format_size(size)}"})
            await archive.unpack(fd, compression, size, rootfs, ctx.progress)
            await restore_owners(ctx, rootfs, src, stored_maps(pstate.pool, u))
            await _finish(ctx, pstate, ct, backend, made)
    return {**ct.public(), "notes": notes}


async def _new_dataset(pstate, ct: Container, backend: Backend, undo: Undo,
                       make: Callable[[Path], Awaitable[None]]) -> Path:
    """``ct``'s rootfs, which ``make`` makes; the undo stack removes it."""
    rootfs = pstate.pool.rootfs(ct.id)
    if rootfs.exists():  # no config holds this id: a crash or a failed delete left it
        await backend.destroy(rootfs)
    undo.push(shutil.rmtree, pstate.pool.ct_dir(ct.id), True)
    undo.push(backend.destroy, rootfs)
    await make(rootfs)
    return rootfs


async def _finish(ctx: Context, pstate, ct: Container, backend: Backend, undo: Undo) -> None:
    """A new container's disk quota and LXC config, once its rootfs is there."""
    if ct.disk is not None:
        await backend.set_quota(pstate.pool.rootfs(ct.id), ct.disk)
    undo.push(ctx.node.containers.lxc.remove, ct.pool, ct.id)
    ctx.node.containers.write_config(pstate, ct)


# --- copy and chown ---------------------------------------------------------------------


@command("ct.copy", mutating=True, target=Target("ct", "id"))
async def copy(ctx: Context, id: str, new_id: str, pool: str | None = None,
               live: bool = False) -> dict:
    """Copy a container as ``new_id`` (into ``pool``, default its own, where
    its user is made if missing): stopped, its netifs without addresses or
    routed prefixes (those stay the source's), with new MACs and
    interconnects. Within a btrfs pool a snapshot (instant, shares blocks);
    else a copy of the files, read as ``ct.export`` reads them."""
    node = ctx.node
    src_pstate, src = node.registry.ct(id)
    pstate = node.registry.pool(pool) if pool else src_pstate
    src_backend, backend = backend_for(src_pstate.pool), backend_for(pstate.pool)
    ct = _incoming(src.to_dict(), new_id, pstate.pool.name, src.user, src.group)
    if src.hostname == src.id:  # named after its id: the copy after its own
        with contextlib.suppress(OsctlError):
            ct.hostname = check_hostname(new_id)
    for n in ct.netifs:
        n.addresses, n.routes, n.hwaddr = [], [], random_hwaddr()
    notes: list[str] = []
    _settle(pstate, ct, backend, notes)
    if ct.id in pstate.cts:
        raise OsctlError(EXISTS, f"container {ct.id!r} exists in pool {pstate.pool.name}")
    src_maps = stored_maps(src_pstate.pool, src_pstate.users[src.user])
    async with Undo() as undo:
        u = await _owner(ctx, pstate, src.user, undo, notes)
        async with creating(ctx, pstate, ct, u, backend.quotas) as made, \
                readable(ctx, src_pstate, src, src_backend, live, "ct.copy") as tree:
            _reserve_netifs(ctx, ct)

            async def files(rootfs: Path) -> None:
                ctx.progress({"step": "rootfs", "message": f"copying the files of {src.id}"})
                await backend.create(rootfs)
                await archive.copy_tree(tree, rootfs, ctx.progress, live)

            async def snapshot(rootfs: Path) -> None:
                await backend.clone(tree, rootfs)

            instant = pstate is src_pstate and backend.snapshots
            rootfs = await _new_dataset(pstate, ct, backend, made, snapshot if instant else files)
            await restore_owners(ctx, rootfs, src_maps, stored_maps(pstate.pool, u))
            if ct.hostname != src.hostname and ct.hostname:
                for_distribution(ct.distribution)(rootfs).set_hostname(ct.hostname)
            await _finish(ctx, pstate, ct, backend, made)
    return {**ct.public(), "notes": notes, "snapshot": instant}


@command("ct.chown", mutating=True, target=Target("ct", "id"))
async def chown(ctx: Context, id: str, user: str) -> dict:
    """Give a stopped container to another user of its pool: it runs in
    that user's ID map from its next start. On idmapped pools only the map
    changes (the rootfs is stored as the container sees it); on chown pools
    every file is shifted into the new map."""
    node = ctx.node
    pstate, ct = node.registry.ct(id)
    upstate, new = node.registry.user(user_ref(user, ct.pool))
    if upstate is not pstate:
        raise OsctlError(INVALID, f"user {new.name} is in pool {new.pool}, container {ct.id} in "
                                  f"{ct.pool}: copy it there with ct copy --to-pool")
    backend = backend_for(pstate.pool)
    async with hold_instance(ctx, ct, "ct.chown"):
        await node.containers.refresh(ct)
        if ct.state != State.STOPPED:
            raise OsctlError(CONFLICT, f"container {ct.id} is {ct.state}: stop it first (its "
                                       "processes run in its user's ID map)")
        old = pstate.users[ct.user]
        if old is new:
            return {**ct.public(), "notes": [f"container {ct.id} is {new.name}'s already"]}
        pstate.check_quota(replace(ct, user=new.name), backend.quotas)
        rootfs = pstate.pool.rootfs(ct.id)
        async with Undo() as undo:
            undo.push(restore_owners, ctx, rootfs, stored_maps(pstate.pool, new),
                      stored_maps(pstate.pool, old))
            await restore_owners(ctx, rootfs, stored_maps(pstate.pool, old),
                                 stored_maps(pstate.pool, new))
            undo.push(node.containers.write_config, pstate, ct)
            undo.push(pstate.save_ct, ct)
            undo.push(setattr, ct, "user", old.name)
            ct.user = new.name
            pstate.save_ct(ct)
            node.containers.write_config(pstate, ct)
    node.events.publish("change", object="ct", pool=ct.pool, id=ct.id, group=ct.group,
                        settings=["user"])
    return {**ct.public(), "notes": []}
