"""The node's pools: its list of them, activation, install, import and export.

The list (``<state_dir>/pools.yml``) names every pool of the node and where
it is; a pool that fails to activate at start stays in it (a disk missing at
boot must not make the node forget its pools). Commands lock and roll back;
the steps that bring a pool onto the node and take it off again are here.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from osctl.protocol import EXISTS, INVALID, OsctlError

from .model.idmap import IdRange
from .model.pool import IDMAP_CHOWN, IDMAP_MOUNT, Pool
from .runtime.idmapped import supports_idmapped_mounts
from .state import PoolState, Registry
from .storage import backend_for
from .store import atomic_write
from .undo import Undo

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger(__name__)


class PoolList:
    """Which pools the node has and where: the active ones (in the registry)
    and those that failed to activate."""

    def __init__(self, state_dir: Path, registry: Registry):
        self.file = state_dir / "pools.yml"
        self.registry = registry
        self.inactive: list[dict] = []  # node pool entries that failed to activate

    def save(self) -> None:
        entries = [p.pool.node_entry() for p in self.registry.pools.values()] + self.inactive
        atomic_write(self.file, yaml.safe_dump({"pools": entries}).encode())

    def load(self) -> list[dict]:
        try:
            return (yaml.safe_load(self.file.read_text()) or {}).get("pools") or []
        except FileNotFoundError:
            return []


def mounted_first(entry: dict) -> Pool | None:
    """The pool as far as the node's list knows it, where its configs are
    on what must be mounted first: a btrfs image, a zfs dataset."""
    path = Path(entry["path"])
    image = Path(entry["image"]) if entry.get("image") else None
    if entry.get("dataset"):
        return Pool(entry["name"], "zfs", path, image, dataset=entry["dataset"])
    return Pool(entry["name"], "btrfs", path, image) if image is not None else None


async def activate(entry: dict) -> PoolState:
    """A pool of the list (or one being imported): mounted, its configs read."""
    first = mounted_first(entry)
    if first is not None:
        await backend_for(first).activate()
    pstate = PoolState.load(Path(entry["path"]), first.image if first else None,
                            entry.get("dataset"))
    await backend_for(pstate.pool).activate()
    return pstate


async def install(pool: Pool, idrange: IdRange, size: int | None, undo: Undo) -> PoolState:
    """A new pool at ``pool.path``: its backend's filesystem, the ID-mapping
    method that filesystem allows, its config; ``undo`` takes each step back."""
    await backend_for(pool).install(size, undo)
    pool.idmap = IDMAP_MOUNT if supports_idmapped_mounts(pool.path) else IDMAP_CHOWN
    pstate = PoolState(pool, idrange)
    undo.push(shutil.rmtree, pool.conf_dir, True)
    pstate.save_pool()
    return pstate


async def activate_all(node: Node) -> None:
    """At start: every pool of the list, or the default pool on a node with none."""
    entries = node.pools.load()
    for entry in entries:
        try:
            pstate = await activate(entry)
            for ct in node.net.admit(pstate):
                pstate.save_instance(ct)
        except Exception as e:
            log.error("pool %s at %s cannot be activated (kept in the pool list): %s",
                      entry.get("name"), entry.get("path"), e)
            node.pools.inactive.append(entry)
            continue
        node.registry.pools[pstate.pool.name] = pstate
    if not entries and node.config.default_pool is not None:
        await _install_default(node)


async def _install_default(node: Node) -> None:
    dp = node.config.default_pool
    assert dp is not None
    path = Path(dp.path) if dp.path else node.config.state_dir / "pools" / dp.name
    entry = {"name": dp.name, "path": str(path), **({"dataset": dp.dataset} if dp.dataset else {})}
    if (path / "conf" / "pool.yml").exists():
        pstate = await activate(entry)
    else:
        log.info("installing the default pool %s (%s) at %s", dp.name, dp.backend, path)
        try:
            async with Undo() as undo:
                pstate = await install(Pool(dp.name, dp.backend, path, dataset=dp.dataset),
                                       IdRange(base=dp.id_base, block_size=dp.id_block_size), None, undo)
        except OsctlError as e:
            if e.code != EXISTS:  # the daemon stops on it: say which pool, from the config
                raise OsctlError(e.code, f"the default pool {dp.name} ({dp.backend}, config "
                                         f"default_pool) cannot be installed: {e.message}") from None
            # Its dataset holds it (the pool exported, or the node's list
            # lost): taken back, as a dir pool's pool.yml is above.
            pstate = await activate(entry)
    node.registry.pools[pstate.pool.name] = pstate
    node.pools.save()


async def open_import(node: Node, path: str, image: str | None, dataset: str | None,
                      undo: Undo) -> PoolState:
    """A pool exported here or elsewhere, activated and checked against the
    node's (names, ID maps, addresses), not yet part of it."""
    entry = {"name": "import", "path": path, **({"image": image} if image else {}),
             **({"dataset": dataset} if dataset else {})}
    first = mounted_first(entry)
    if first is not None:
        undo.push(backend_for(first).deactivate)
    try:
        pstate = await activate(entry)
    except FileNotFoundError:
        raise OsctlError(INVALID, f"{path} holds no pool (no conf/pool.yml)") from None
    node.registry.check_pool_free(pstate)
    for ct in node.net.admit(pstate):  # its netifs' addresses and indices
        pstate.save_instance(ct)
    return pstate


async def join(node: Node, pstate: PoolState, undo: Undo) -> None:
    """An opened pool becomes the node's: its users' IDs granted, its
    containers' LXC configs written and their states asked, its VMs adopted."""
    name = pstate.pool.name
    undo.push(node.sync_subids)  # runs after the pool has left the registry again
    node.registry.pools[name] = pstate
    undo.push(node.registry.pools.pop, name)
    await node.sync_subids(new=pstate.users.values())
    for ct in pstate.cts.values():
        undo.push(node.containers.lxc.remove, name, ct.id)
        node.containers.write_config(pstate, ct)
        await node.containers.refresh(ct)
    for vm in pstate.vms.values():
        await node.vms.adopt(vm)
    node.pools.save()


async def leave(node: Node, pstate: PoolState) -> None:
    """A pool whose containers and VMs are stopped stops being the node's:
    out of the list, its IDs given back, its runtime files removed, unmounted."""
    name = pstate.pool.name
    del node.registry.pools[name]
    node.pools.save()
    await node.sync_subids()
    for ct in pstate.cts.values():
        node.containers.remove(name, ct.id)
    node.containers.remove_group(name, "/")
    for vm in pstate.vms.values():
        node.vms.remove(vm)
    await backend_for(pstate.pool).deactivate()
