"""What every storage backend provides to the commands."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
from pathlib import Path

from osctl.protocol import INTERNAL, UNSUPPORTED, OsctlError

from ..proc import run_tool


# Where tenants' data and configs (ids, names, maps, limits) live, below the pool's path.
PRIVATE_DIRS = ("ct", "tpl", "vm", "conf")


async def run(*argv: str, what: str) -> str:
    rc, out = await run_tool(*argv)
    text = out.strip()
    if rc != 0:
        raise OsctlError(INTERNAL, f"{what} failed: {text or f'exit {rc}'}")
    return text


class Backend:
    """A pool's datasets: a dataset is a directory tree a container or template owns."""

    name = "base"
    quotas = False  # whether datasets can have a disk quota
    snapshots = False  # whether ``snapshot`` works: instant, read-only, while the dataset is in use

    def __init__(self, pool):
        self.pool = pool

    async def install(self, size: int | None = None) -> None:
        """Prepare a new pool at its path (create an image, a filesystem, ...)."""
        self.pool.path.mkdir(parents=True, exist_ok=True)
        await self.activate()

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

    async def snapshot(self, src: Path, dst: Path) -> None:
        """A read-only point-in-time copy of dataset ``src`` at ``dst``, taken
        while ``src`` is in use (a running container's rootfs): what an export
        or a transfer reads from, so that it sees one moment of the tree.
        ``destroy(dst)`` removes it. Only where ``snapshots`` is true."""
        raise OsctlError(UNSUPPORTED, f"pool {self.pool.name} is a {self.name} pool, which has no "
                                      "snapshots: use a btrfs pool")

    async def destroy(self, path: Path) -> None:
        """Remove dataset ``path`` (or a snapshot of one); nothing if it is not there."""
        if path.exists() or path.is_symlink():
            await asyncio.to_thread(shutil.rmtree, path)

    async def set_quota(self, path: Path, size: int | None) -> None:
        """Limit what dataset ``path`` may hold to ``size`` bytes (None: no limit)."""
        self.need_quotas()

    def need_quotas(self) -> None:
        """Refuse early where the backend has no disk quotas."""
        if self.quotas:
            return
        raise OsctlError(UNSUPPORTED, f"pool {self.pool.name} is a {self.name} pool, which has no "
                                      "disk quotas: use a btrfs pool")


def remove_if_empty(path: Path) -> None:
    """The directory goes if it is empty; what someone else keeps there stays."""
    try:
        path.rmdir()
    except FileNotFoundError:
        pass
    except OSError as e:
        if e.errno != errno.ENOTEMPTY:
            raise
