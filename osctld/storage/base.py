"""What every storage backend provides to the commands."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from osctl.protocol import INTERNAL, INVALID, UNSUPPORTED, OsctlError

from ..proc import run_tool
from ..undo import Undo

log = logging.getLogger(__name__)


# Where tenants' data and configs (ids, names, maps, limits) live, below the pool's path.
PRIVATE_DIRS = ("ct", "tpl", "vm", "conf")
SUBDATASETS = "datasets"  # beside a container's rootfs: where its own datasets are mounted (zfs)


async def run(*argv: str, what: str) -> str:
    rc, out = await run_tool(*argv)
    text = out.strip()
    if rc != 0:
        raise OsctlError(INTERNAL, f"{what} failed: {text or f'exit {rc}'}")
    return text


@dataclass(frozen=True)
class Snapshot:
    """A container's named snapshot (``ct snapshot``)."""

    name: str
    created: float  # seconds since the epoch
    used: int | None  # bytes only it holds: what deleting it frees (None: unknown)
    order: int = 0  # which came first within one second of ``created`` (btrfs: subvolume id)

    def public(self) -> dict:
        return {"name": self.name, "created": self.created, "used": self.used}


class Backend:
    """A pool's datasets: a dataset is a directory tree a container or template owns."""

    name = "base"
    quotas = False  # whether datasets can have a disk quota
    snapshots = False  # whether ``snapshot`` works: instant, read-only, while the dataset is in use
    # Whether a container's rootfs has named snapshots (``ct snapshot``): on
    # btrfs read-only ``snapshot``s kept beside it, on zfs its dataset's own.
    named_snapshots = False
    subdatasets = False  # whether a container can have datasets of its own (ct dataset): zfs
    # How ``ct send`` streams a rootfs to a pool of the same backend (to any
    # other: rsync): btrfs or zfs send/receive (transfer/streams.py).
    send_stream = "rsync"

    def __init__(self, pool):
        self.pool = pool

    async def install(self, size: int | None, undo: Undo) -> None:
        """Prepare a new pool at its path (create an image, a filesystem,
        ...), pushing on ``undo`` what takes each step back: a failed
        install (here or in a later step of the command) leaves the node
        as it was."""
        self.new_path(undo)
        undo.push(self.deactivate)
        await self.activate()

    def new_path(self, undo: Undo) -> None:
        """The pool's directory, made if missing, and then removed by ``undo``."""
        if not self.pool.path.exists():
            undo.push(remove_unless_mounted, self.pool.path)
        self.pool.path.mkdir(parents=True, exist_ok=True)

    async def new_image(self, size: int | None, undo: Undo, *mkfs: str) -> None:
        """A sparse file of ``size`` bytes at the pool's image, a filesystem
        made on it by ``mkfs`` (its path last); no file if that fails, and
        ``undo`` removes it."""
        image = self.pool.image
        assert image is not None
        if image.exists():
            raise OsctlError(INVALID, f"image {image} already exists")
        if not size:
            raise OsctlError(INVALID, f"a {self.name} image needs --size")
        image.parent.mkdir(parents=True, exist_ok=True)
        with open(image, "wb") as f:
            f.truncate(size)
        try:
            await run(*mkfs, str(image), what=mkfs[0])
        except BaseException:
            image.unlink(missing_ok=True)
            raise
        undo.push(image.unlink, True)

    async def activate(self) -> None:
        """Make an installed pool usable on this node (mount it); idempotent.

        Root filesystems are stored unshifted: a tenant's setuid file is
        setuid root on the host. So the directories above them are root's
        alone (0700), as LXC keeps /var/lib/lxc; so is ``conf``."""
        if not self.pool.path.is_dir():
            raise OsctlError(INTERNAL, f"pool {self.pool.name}: {self.pool.path} is missing")
        for sub in PRIVATE_DIRS:
            d = self.pool.path / sub
            d.mkdir(mode=0o700, exist_ok=True)
            os.chown(d, 0, 0)
            os.chmod(d, 0o700)

    async def deactivate(self) -> None:
        """Undo ``activate`` when the pool is exported."""

    async def uninstall(self) -> None:
        """Remove a pool that holds no containers or VMs and has left the
        node (deactivated): its templates' datasets and what osctld keeps
        at its path, and the path itself when nothing else is left there."""
        tpl = self.pool.path / "tpl"
        for dataset in sorted(tpl.iterdir()) if tpl.is_dir() else ():
            await self.destroy(dataset)
        for sub in (*PRIVATE_DIRS, "log"):
            await asyncio.to_thread(shutil.rmtree, self.pool.path / sub, True)
        remove_if_empty(self.pool.path)

    async def create(self, path: Path) -> None:
        """An empty dataset at ``path``."""
        path.mkdir(parents=True)

    async def clone(self, src: Path, dst: Path) -> None:
        """``dst`` becomes a copy of dataset ``src`` (a snapshot where the backend can)."""
        dst.parent.mkdir(parents=True, exist_ok=True)
        await run("cp", "-a", "--reflink=auto", str(src), str(dst), what=f"copying {src}")

    async def rename(self, src: Path, dst: Path) -> None:
        """Dataset (or the directory holding one) ``src`` is now at ``dst``,
        in one step: rename(2), which moves a btrfs subvolume as it is."""
        os.rename(src, dst)

    async def send_drop(self, rootfs: Path, name: str | None = None) -> None:
        """A send's snapshots kept by the pool itself (zfs: of the container's
        datasets); elsewhere they are in the send's own directory."""

    async def snapshot(self, src: Path, dst: Path) -> None:
        """A read-only point-in-time copy of dataset ``src`` at ``dst``, taken
        while ``src`` is in use (a running container's rootfs): what an export
        or a transfer reads from, so that it sees one moment of the tree.
        ``destroy(dst)`` removes it. Only where ``snapshots`` is true."""
        raise self._unsupported("snapshots")

    # --- a container's named snapshots (ct snapshot) ------------------------------------
    # Here for backends whose ``snapshot`` makes a path: read-only snapshots
    # in ``snapshots/`` beside the rootfs (zfs has its own).

    def need_snapshots(self) -> None:
        """Refuse early where the backend has no named snapshots."""
        if not self.named_snapshots:
            raise self._unsupported("snapshots")

    def snapshot_dir(self, rootfs: Path) -> Path:
        return rootfs.parent / "snapshots"

    async def snap_new(self, rootfs: Path, name: str) -> None:
        self.need_snapshots()
        await self.snapshot(rootfs, self.snapshot_dir(rootfs) / name)

    async def snap_list(self, rootfs: Path) -> list[Snapshot]:
        """The container's snapshots, oldest first."""
        self.need_snapshots()
        d = self.snapshot_dir(rootfs)
        snaps = [await self.snapshot_info(p) for p in (d.iterdir() if d.is_dir() else ())]
        return sorted(snaps, key=lambda s: (s.created, s.order))

    async def snapshot_info(self, path: Path) -> Snapshot:
        raise self._unsupported("snapshots")

    async def snap_del(self, rootfs: Path, name: str) -> None:
        self.need_snapshots()
        await self.destroy(self.snapshot_dir(rootfs) / name)

    async def snap_rollback(self, rootfs: Path, name: str) -> None:
        """The rootfs as snapshot ``name`` holds it (a writable clone of it in
        its place; the snapshot stays); as it was if that fails. The old one
        is ``rootfs.old`` on the way, which start-up puts back if a crash
        leaves no rootfs (``orphans``, as after ``ct reinstall``)."""
        self.need_snapshots()
        old = rootfs.with_name("rootfs.old")
        await self.destroy(old)
        await self.rename(rootfs, old)
        try:
            await self.clone(self.snapshot_dir(rootfs) / name, rootfs)
        except BaseException:
            await self.destroy(rootfs)
            await self.rename(old, rootfs)
            raise
        await self.destroy(old)

    async def destroy_ct(self, rootfs: Path) -> None:
        """A container's rootfs and all its snapshots (``ct del``, orphans)."""
        d = self.snapshot_dir(rootfs)
        for p in sorted(d.iterdir()) if d.is_dir() else ():
            await self.destroy(p)
        await self.destroy(rootfs)

    # --- a container's subdatasets (ct dataset): zfs --------------------------------------

    def need_subdatasets(self) -> None:
        if not self.subdatasets:
            raise OsctlError(UNSUPPORTED, f"pool {self.pool.name} is a {self.name} pool: "
                                          "container datasets are on zfs pools only")

    def subdataset_path(self, rootfs: Path, name: str) -> Path:
        """Where a container's dataset is mounted on the node: beside its rootfs."""
        return rootfs.parent / SUBDATASETS / name

    async def subdataset_new(self, rootfs: Path, name: str, quota: int | None) -> Path:
        """A dataset of the container's, ``quota`` bytes at most; where it is mounted on the node."""
        raise OsctlError(UNSUPPORTED, "no subdatasets")  # need_subdatasets says why first

    async def subdataset_list(self, rootfs: Path) -> list[dict]:
        """Its datasets: name, used, quota, path (on the node)."""
        raise OsctlError(UNSUPPORTED, "no subdatasets")

    async def subdataset_del(self, rootfs: Path, name: str) -> None:
        raise OsctlError(UNSUPPORTED, "no subdatasets")

    def describe(self) -> dict:
        """What ``pool show`` says about the backend beyond the pool's config."""
        return {}

    def _unsupported(self, what: str) -> OsctlError:
        return OsctlError(UNSUPPORTED, f"pool {self.pool.name} is a {self.name} pool, which has no "
                                       f"{what}: use a btrfs or zfs pool")

    async def destroy(self, path: Path) -> None:
        """Remove dataset ``path`` (or a snapshot of one); nothing if it is not there."""
        if path.exists() or path.is_symlink():
            await asyncio.to_thread(shutil.rmtree, path)

    async def destroy_all(self, directory: Path) -> None:
        """Every dataset (snapshot) in ``directory``, then the directory: a
        send's or a replica's passes. Read-only snapshots are deleted as
        such (unlinking their files would fail); ``directory`` may be a
        dataset of files itself (a VM's tar pass)."""
        if directory.is_dir():
            for p in sorted(directory.iterdir()):
                if p.is_dir() and not p.is_symlink():
                    await self.destroy(p)
            await self.destroy(directory)

    async def destroy_passes(self, kind: str, id: str) -> None:
        """What a send or replica of instance ``id`` keeps in this pool, at
        either end (``Pool.passes``): with the instance, or an orphan's."""
        for directory in self.pool.passes(kind, id):
            await self.destroy_all(directory)

    async def set_quota(self, path: Path, size: int | None) -> None:
        """Limit what dataset ``path`` may hold to ``size`` bytes (None: no limit)."""
        self.need_quotas()

    def need_quotas(self) -> None:
        """Refuse early where the backend has no disk quotas."""
        if not self.quotas:
            raise self._unsupported("disk quotas")


def remove_unless_mounted(path: Path) -> None:
    """A directory osctld made, with what is in it; never through a mount
    still on it (an unmount that failed in a rollback), which would remove
    what the filesystem holds."""
    if os.path.ismount(path):
        log.error("%s is still mounted: left as it is", path)
        return
    shutil.rmtree(path, ignore_errors=True)


def remove_if_empty(path: Path) -> None:
    """The directory goes if it is empty; what someone else keeps there stays."""
    try:
        path.rmdir()
    except FileNotFoundError:
        pass
    except OSError as e:
        if e.errno != errno.ENOTEMPTY:
            raise
