"""Pools: install, list, show, export, import."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

from osctl.protocol import CONFLICT, EXISTS, INVALID, OsctlError

from ..locks import ct_key, pool_import_key, pool_key, vm_key
from ..model.container import STOPPED
from ..model.idmap import DEFAULT_BASE, DEFAULT_BLOCK_SIZE, IdRange
from ..model.naming import check_name, check_path
from ..model.pool import Pool
from ..model.units import parse_size
from ..state import PoolState
from ..undo import Undo
from . import Between, Context, Seconds, Target, command


def _public(pstate: PoolState) -> dict:
    p, r = pstate.pool, pstate.idrange
    return {
        "name": p.name, "backend": p.backend, "path": str(p.path),
        "image": str(p.image) if p.image else None, "idmap": p.idmap,
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
                  id_base: Annotated[int, Between(0, (1 << 32) - 1)] = DEFAULT_BASE,
                  id_block_size: Annotated[int, Between(1, 1 << 32)] = DEFAULT_BLOCK_SIZE) -> dict:
    """Create a new pool."""
    d = ctx.daemon
    check_name("pool", name)
    if name in d.registry.pools:
        raise OsctlError(EXISTS, f"pool {name!r} exists")
    if image and backend != "btrfs":
        raise OsctlError(INVALID, "--image is for the btrfs backend")
    _check_paths(path, image)
    pool = Pool(name, backend, Path(path) if path else d.config.state_dir / "pools" / name,
                Path(image) if image else None)
    if (pool.conf_dir / "pool.yml").exists():
        raise OsctlError(EXISTS, f"{pool.path} already holds a pool: use 'osctl pool import'")
    idrange = IdRange(base=id_base, block_size=id_block_size)
    async with d.locks.hold(pool_key(name), "install"), Undo() as undo:
        backend_ = d.backend(pool)
        # Undone newest first: unmount, then the image, then the directory.
        if not pool.path.exists():
            undo.push(shutil.rmtree, pool.path, True)
        if pool.image:
            undo.push(pool.image.unlink, True)
        undo.push(backend_.deactivate)
        await backend_.install(parse_size(size, "pool size") if size is not None else None)
        pool.idmap = d.detect_idmap(pool.path)
        pstate = PoolState(pool, idrange)
        pstate.save_pool()
        undo.push(shutil.rmtree, pool.conf_dir, True)
        d.registry.pools[name] = pstate
        undo.push(d.registry.pools.pop, name)
        d.save_pool_list()
    d.events.publish("add", object="pool", pool=name)
    return _public(pstate)


@command("pool.ls")
async def ls(ctx: Context) -> list:
    """Pools on this node."""
    return [_public(p) for p in ctx.daemon.registry.pools.values()]


@command("pool.show")
async def show(ctx: Context, name: str) -> dict:
    """One pool."""
    return _public(ctx.daemon.registry.pool(name))


@command("pool.export", mutating=True, target=Target("pool", "name"))
async def export(ctx: Context, name: str, force: bool = False, timeout: Seconds = 60) -> dict:
    """Stop managing a pool, so it can be moved; its data and configs stay in it."""
    d = ctx.daemon
    pstate = d.registry.pool(name)
    async with d.locks.hold(pool_key(name), "export"):
        running = [c for c in pstate.cts.values() if c.running or c.state != STOPPED]
        running_vms = [v for v in pstate.vms.values() if v.state != STOPPED]
        if (running or running_vms) and not force:
            ids = [c.id for c in running] + [f"VM {v.id}" for v in running_vms]
            raise OsctlError(CONFLICT, f"pool {name} has running containers or VMs "
                                       f"({', '.join(ids)}): stop them or use --force")
        for ct in running:
            ctx.progress({"step": "stop", "ct": ct.id})
            async with d.locks.hold(ct_key(name, ct.id), "pool export"):
                await d.containers.stop(ct, timeout)
        for vm in running_vms:
            ctx.progress({"step": "stop", "vm": vm.id})
            async with d.locks.hold(vm_key(name, vm.id), "pool export"):
                await d.vms.stop(vm, timeout)
        d.history(name, {"cmd": "pool.export", "args": {"name": name}, "result": "ok"})
        del d.registry.pools[name]
        d.save_pool_list()
        await d.sync_subids()
        for ct in pstate.cts.values():
            d.containers.remove(name, ct.id)
        d.containers.remove_group(name, "/")
        for vm in pstate.vms.values():
            d.vms.remove(vm)
        await d.backend(pstate).deactivate()
    d.events.publish("remove", object="pool", pool=name)
    return {"name": name, "path": str(pstate.pool.path)}


@command("pool.import", mutating=True, target=Target("pool_path", "path"))
async def import_(ctx: Context, path: str, image: str | None = None) -> dict:
    """Take over a pool exported here or on another node."""
    d = ctx.daemon
    _check_paths(path, image)
    entry = {"name": "import", "path": path, **({"image": image} if image else {})}
    async with d.locks.hold(pool_import_key(path), "import"), Undo() as undo:
        if image:
            undo.push(d.backend(Pool("import", "btrfs", Path(path), Path(image))).deactivate)
        try:
            pstate = await d.activate_pool(entry)
        except FileNotFoundError:
            raise OsctlError(INVALID, f"{path} holds no pool (no conf/pool.yml)") from None
        d.registry.check_pool_free(pstate)
        for ct in d.net.admit(pstate):  # its netifs' addresses and indices
            pstate.save_server(ct)
        name = pstate.pool.name
        undo.push(d.sync_subids)  # runs after the pool has left the registry again
        d.registry.pools[name] = pstate
        undo.push(d.registry.pools.pop, name)
        await d.sync_subids(new=pstate.users.values())
        for ct in pstate.cts.values():
            undo.push(d.containers.lxc.remove, name, ct.id)
            d.containers.write_config(pstate, ct)
            await d.containers.refresh(ct)
        for vm in pstate.vms.values():
            await d.vms.adopt(vm)
        d.save_pool_list()
    d.events.publish("add", object="pool", pool=name)
    return _public(pstate)
