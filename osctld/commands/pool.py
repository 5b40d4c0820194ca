"""Pools: install, list, show, export, import, uninstall."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

from osctl.protocol import CONFLICT, EXISTS, INVALID, OsctlError

from .. import pools
from ..locks import ct_key, pool_import_key, pool_key, vm_key
from ..model.container import STOPPED
from ..model.idmap import DEFAULT_BASE, DEFAULT_BLOCK_SIZE, IdRange
from ..model.naming import check_name, check_path
from ..model.pool import Pool, check_dataset
from ..model.units import parse_size
from ..state import PoolState
from ..storage import backend_for
from ..undo import Undo
from . import Between, Context, Seconds, Target, command


def _public(pstate: PoolState) -> dict:
    p, r = pstate.pool, pstate.idrange
    return {
        "name": p.name, "backend": p.backend, "path": str(p.path),
        "image": str(p.image) if p.image else None, "dataset": p.dataset, "idmap": p.idmap,
        "attrs": dict(p.attrs),
        "users": len(pstate.users), "containers": len(pstate.cts), "vms": len(pstate.vms),
        "running": sum(1 for c in pstate.cts.values() if c.running),
        "id_range": {"base": r.base, "block_size": r.block_size, "blocks": r.block_count,
                     "allocated": len(r.allocated)},
    }


def _check_paths(path: str | None, image: str | None) -> None:
    for what, value in (("pool path", path), ("pool image", image)):
        if value:
            check_path(what, value)


@command("pool.install", mutating=True, target=Target("pool", "name"))
async def install(ctx: Context, name: str, backend: str = "dir", path: str | None = None,
                  image: str | None = None, size: str | int | None = None,
                  dataset: str | None = None,
                  id_base: Annotated[int, Between(0, (1 << 32) - 1)] = DEFAULT_BASE,
                  id_block_size: Annotated[int, Between(1, 1 << 32)] = DEFAULT_BLOCK_SIZE) -> dict:
    """Create a new pool. zfs: on ``dataset`` (POOL/PATH of an existing
    zpool; made if missing), or on a new zpool on file ``image`` (named by
    ``dataset``, default ``osctld-<name>``)."""
    node = ctx.node
    check_name("pool", name)
    if name in node.registry.pools:
        raise OsctlError(EXISTS, f"pool {name!r} exists")
    if image and backend not in ("btrfs", "zfs"):
        raise OsctlError(INVALID, "--image is for the btrfs and zfs backends")
    if dataset and backend != "zfs":
        raise OsctlError(INVALID, "--dataset is for the zfs backend")
    if backend == "zfs" and not (dataset or image):
        raise OsctlError(INVALID, "a zfs pool needs --dataset POOL/PATH or --image FILE --size SIZE")
    _check_paths(path, image)
    pool = Pool(name, backend, Path(path) if path else node.config.state_dir / "pools" / name,
                Path(image) if image else None,
                dataset=dataset or (f"osctld-{name}" if backend == "zfs" else None))
    if (pool.conf_dir / "pool.yml").exists():
        raise OsctlError(EXISTS, f"{pool.path} already holds a pool: use 'osctl pool import'")
    idrange = IdRange(base=id_base, block_size=id_block_size)
    async with node.locks.hold(pool_key(name), "install"), Undo() as undo:
        # Each step's undo is pushed by the step (the backend's: what it made).
        pstate = await pools.install(pool, idrange, parse_size(size, "pool size") if size is not None else None,
                                     undo)
        node.registry.pools[name] = pstate
        undo.push(node.registry.pools.pop, name)
        node.pools.save()
    node.events.publish("add", object="pool", pool=name)
    return _public(pstate)


@command("pool.ls")
async def ls(ctx: Context) -> list:
    """Pools on this node."""
    return [_public(p) for p in ctx.node.registry.pools.values()]


@command("pool.show")
async def show(ctx: Context, name: str) -> dict:
    """One pool, with the space of the filesystem it is on (its image's,
    for an image pool): what the pool's servers can still grow into."""
    pstate = ctx.node.registry.pool(name)
    st = await asyncio.to_thread(os.statvfs, pstate.pool.path)
    return {**_public(pstate), **backend_for(pstate.pool).describe(), "size": st.f_blocks * st.f_frsize,
            "used": (st.f_blocks - st.f_bfree) * st.f_frsize, "free": st.f_bavail * st.f_frsize}


@command("pool.export", mutating=True, target=Target("pool", "name"))
async def export(ctx: Context, name: str, force: bool = False, timeout: Seconds = 60) -> dict:
    """Stop managing a pool, so it can be moved; its data and configs stay in it."""
    node = ctx.node
    pstate = node.registry.pool(name)
    async with node.locks.hold(pool_key(name), "export"):
        running = [c for c in pstate.cts.values() if c.running or c.state != STOPPED]
        running_vms = [v for v in pstate.vms.values() if v.state != STOPPED]
        if (running or running_vms) and not force:
            ids = [c.id for c in running] + [f"VM {v.id}" for v in running_vms]
            raise OsctlError(CONFLICT, f"pool {name} has running containers or VMs "
                                       f"({', '.join(ids)}): stop them or use --force")
        for ct in running:
            ctx.progress({"step": "stop", "ct": ct.id})
            async with node.locks.hold(ct_key(name, ct.id), "pool export"):
                await node.containers.stop(ct, timeout)
        for vm in running_vms:
            ctx.progress({"step": "stop", "vm": vm.id})
            async with node.locks.hold(vm_key(name, vm.id), "pool export"):
                await node.vms.stop(vm, timeout)
        node.history.write(name, {"cmd": "pool.export", "args": {"name": name}, "result": "ok"})
        await pools.leave(node, pstate)
    node.events.publish("remove", object="pool", pool=name)
    return {"name": name, "path": str(pstate.pool.path)}


@command("pool.uninstall", mutating=True, target=Target("pool", "name"))
async def uninstall(ctx: Context, name: str) -> dict:
    """Take a pool off the node and remove it: its users (and their
    /etc/subuid lines), templates, configs and logs, its image. Refused while
    it holds containers or VMs: those are deleted (or the pool exported) first."""
    node = ctx.node
    pstate = node.registry.pool(name)
    async with node.locks.hold(pool_key(name), "uninstall"):
        held = sorted(pstate.cts) + [f"VM {v}" for v in sorted(pstate.vms)]
        if held:
            raise OsctlError(CONFLICT, f"pool {name} holds containers or VMs ({', '.join(held)}): "
                                       "delete them first, or export the pool")
        await pools.leave(node, pstate)
        await backend_for(pstate.pool).uninstall()
    node.events.publish("remove", object="pool", pool=name)
    return {"name": name, "path": str(pstate.pool.path)}


@command("pool.import", mutating=True, target=Target("pool_path", "path"))
async def import_(ctx: Context, path: str, image: str | None = None,
                  dataset: str | None = None) -> dict:
    """Take over a pool exported here or on another node; a zfs pool by its
    ``dataset`` (its zpool imported first if need be: from ``image``), mounted at ``path``."""
    node = ctx.node
    _check_paths(path, image)
    if dataset is not None:
        check_dataset(dataset)
    async with node.locks.hold(pool_import_key(path), "import"), Undo() as undo:
        pstate = await pools.open_import(node, path, image, dataset, undo)
        name = pstate.pool.name
        await pools.join(node, pstate, undo)
    node.events.publish("add", object="pool", pool=name)
    return _public(pstate)
