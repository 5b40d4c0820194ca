"""What a killed daemon leaves on disk, removed when the next one starts.

A kill -9 can land between any two steps of ``ct new``, ``ct del``,
``vm new`` or ``vm del``: a dataset whose config was never written (new) or
already removed (del), and a temporary file of an atomic write
(``.<name>.<8 characters>``, see ``store.atomic_write``). Both are only
ever taken for what they are at start, before the daemon takes any
request, so nothing removed here can be half way through being made:

- a dataset is an entry of ``<pool>/ct`` or ``<pool>/vm`` (root's own
  directories) named like a container or VM that has no config;
- an LXC directory in the run directory of a container that has no config;
- the config a ``ct rename`` left (``interrupted_renames``), before the
  datasets are looked at: the one whose directory is not there;
- a ``rootfs.new`` or ``rootfs.old`` beside a container's rootfs, left by
  ``ct reinstall`` (the old one is put back where the rootfs is missing);
- a read-only snapshot a ``ct copy`` or ``ct export`` read from
  (``<pool>/ct/.<id>.snap-<hex>``);
- the passes of a VM's replica (``<pool>/vm/.<id>.send``, ``.<id>.recv``
  and its tar swap's ``.new``, ``.old``) whose VM has no config here,
  neither as a VM nor as a staged replica (a delete, or a replica's cancel,
  was interrupted; a container's are in its directory, removed with it);
- a temporary file is one in a directory only osctld writes (a pool's
  ``conf`` tree, the state directory's top level, the LXC directories).

Each removal is logged.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from osctl.protocol import OsctlError

from .model.naming import check_name
from .model.pool import vm_of_passes
from .store import TEMP_NAME

log = logging.getLogger(__name__)
# Read-only snapshots ``ct copy`` and ``ct export`` read from (commands/ct_copy.py).
SNAPSHOT_GLOB = ".*.snap-*"


def _ids(directory: Path) -> list[str]:
    """Entries of ``directory`` whose names osctld could have given."""
    out = []
    for p in sorted(directory.iterdir()) if directory.is_dir() else []:
        try:
            out.append(check_name("id", p.name))
        except OsctlError:
            pass
    return out


def remove_temp_files(directory: Path, recursive: bool = False) -> None:
    if not directory.is_dir():
        return
    for p in directory.rglob(".*") if recursive else directory.glob(".*"):
        if p.is_file() and not p.is_symlink() and TEMP_NAME.match(p.name):
            log.warning("removing %s, a temporary file of an interrupted write", p)
            p.unlink(missing_ok=True)


def interrupted_renames(pstate) -> list[tuple[str, str]]:
    """(stale, kept) ids of a container that has two configs: ``ct rename``
    writes the one under the new id first and removes the old one last, so a
    kill in between leaves both, one without its directory in the pool. The
    two are one container by its user and its creation time."""
    pool, cts = pstate.pool, pstate.cts
    out = []
    for ct in cts.values():
        if pool.ct_dir(ct.id).exists():
            continue
        twin = next((o for o in cts.values() if o is not ct and (o.user, o.created) ==
                     (ct.user, ct.created) and pool.ct_dir(o.id).exists()), None)
        if twin is not None:
            out.append((ct.id, twin.id))
    return out


async def clean_pool(pstate, backend, containers) -> None:
    """Remove one pool's orphaned datasets, LXC directories and temporary
    files; what cannot be removed is logged and left."""
    pool, lxc = pstate.pool, containers.lxc
    remove_temp_files(pool.conf_dir, recursive=True)
    for stale, kept in interrupted_renames(pstate):
        log.warning("removing the config of container %s of pool %s: its rename to or from %s "
                    "was interrupted, and %s has its data", stale, pool.name, kept, kept)
        pstate.store.delete("ct", stale)
        del pstate.cts[stale]
        for m in pstate.maintenances.values():
            if m.kind == "ct" and m.machine == stale:
                m.machine = kept
                pstate.save_maintenance(m)
    why = "has no config (a create or delete was interrupted)"

    async def remove_ct(ct_id: str) -> None:
        log.warning("removing %s: container %s of pool %s %s", pool.ct_dir(ct_id), ct_id, pool.name, why)
        await backend.destroy_ct(pool.rootfs(ct_id))
        await backend.destroy_passes("ct", ct_id)
        shutil.rmtree(pool.ct_dir(ct_id))

    async def remove_vm(vm_id: str) -> None:
        log.warning("removing %s: VM %s of pool %s %s", pool.vm_dir(vm_id), vm_id, pool.name, why)
        await backend.destroy(pool.vm_dir(vm_id))

    async def remove_lxc(ct_id: str) -> None:
        state, _pid = await lxc.aquery(pool.name, ct_id)
        if state != "stopped":
            log.warning("killing container %s of pool %s: it runs and has no config", ct_id, pool.name)
            await lxc.stop(pool.name, ct_id, 0, kill=True)
        log.warning("removing the LXC directory of container %s of pool %s: it has no config",
                    ct_id, pool.name)
        containers.remove(pool.name, ct_id)

    for remove, directory, known in ((remove_ct, pool.path / "ct", pstate.cts),
                                     (remove_vm, pool.path / "vm", pstate.vms),
                                     (remove_lxc, lxc.lxcpath(pool.name), pstate.cts)):
        for name in _ids(directory):
            if name in known:
                continue
            try:
                await remove(name)
            except Exception as e:
                log.error("cannot remove what %s of pool %s left: %s", name, pool.name, e)
    for ct_id in pstate.cts:
        remove_temp_files(lxc.ct_dir(pool.name, ct_id))
        await _reinstall_left(backend, pool.rootfs(ct_id))
    await _replica_passes_left(pstate, backend)
    for snap in sorted((pool.path / "ct").glob(SNAPSHOT_GLOB)):
        log.warning("removing %s, a snapshot an interrupted copy or export left", snap)
        try:
            await backend.destroy(snap)
        except Exception as e:
            log.error("cannot remove %s: %s", snap, e)


async def _replica_passes_left(pstate, backend) -> None:
    """A VM's replica passes whose VM this pool has no config of: a staged
    replica is a VM here (its destination send log), so it keeps its own."""
    directory = pstate.pool.path / "vm"
    for p in sorted(directory.iterdir()) if directory.is_dir() else ():
        vm_id = vm_of_passes(p.name)
        if vm_id is None or vm_id in pstate.vms:
            continue
        log.warning("removing %s: the passes of a replica of VM %s, which pool %s has no config "
                    "of (a delete or cancel was interrupted)", p, vm_id, pstate.pool.name)
        try:
            await backend.destroy_all(p)
        except Exception as e:
            log.error("cannot remove %s: %s", p, e)


async def _reinstall_left(backend, rootfs: Path) -> None:
    """What an interrupted ``ct reinstall`` left beside a rootfs: the old one
    put back if the new one was not in place yet, the other removed."""
    fresh, old = rootfs.with_name("rootfs.new"), rootfs.with_name("rootfs.old")
    try:
        if old.exists() and not rootfs.exists():
            log.warning("putting %s back: a reinstall was interrupted", old)
            await backend.rename(old, rootfs)
        for left in (fresh, old):
            if left.exists():
                log.warning("removing %s, left by an interrupted reinstall", left)
                await backend.destroy(left)
    except Exception as e:
        log.error("cannot clean up after the reinstall of %s: %s", rootfs.parent, e)
