"""btrfs: each dataset a subvolume, a clone a snapshot (instant, shares blocks).

A pool is either a directory on a mounted btrfs filesystem, or a loop-file
image that osctld creates at install and mounts when it activates the pool.
"""

from __future__ import annotations

import os
from pathlib import Path

from osctl.protocol import INVALID, OsctlError

from .base import Backend, run


def is_mounted(path: Path) -> bool:
    return os.path.ismount(path)


class BtrfsBackend(Backend):
    name = "btrfs"

    async def install(self, size: int | None = None) -> None:
        pool = self.pool
        if pool.image is not None:
            if pool.image.exists():
                raise OsctlError(INVALID, f"image {pool.image} already exists")
            if not size:
                raise OsctlError(INVALID, "a btrfs image needs --size")
            pool.image.parent.mkdir(parents=True, exist_ok=True)
            with open(pool.image, "wb") as f:
                f.truncate(size)
            try:
                await run("mkfs.btrfs", "-q", "-L", f"osctld-{pool.name}", str(pool.image),
                          what="mkfs.btrfs")
            except BaseException:
                pool.image.unlink(missing_ok=True)
                raise
        pool.path.mkdir(parents=True, exist_ok=True)
        await self.activate()

    async def activate(self) -> None:
        pool = self.pool
        if pool.image is not None and not is_mounted(pool.path):
            pool.path.mkdir(parents=True, exist_ok=True)
            await run("mount", "-o", "loop", str(pool.image), str(pool.path),
                      what=f"mounting {pool.image}")
        fstype = await run("stat", "-f", "-c", "%T", str(pool.path), what="stat -f")
        if fstype != "btrfs":
            raise OsctlError(INVALID, f"{pool.path} is on {fstype}, not btrfs: "
                                      "give a btrfs path or --image FILE --size SIZE")

    async def deactivate(self) -> None:
        if self.pool.image is not None and is_mounted(self.pool.path):
            await run("umount", str(self.pool.path), what=f"unmounting {self.pool.path}")

    async def create(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        await run("btrfs", "-q", "subvolume", "create", str(path), what=f"creating subvolume {path}")

    async def clone(self, src: Path, dst: Path) -> None:
        dst.parent.mkdir(parents=True, exist_ok=True)
        await run("btrfs", "-q", "subvolume", "snapshot", str(src), str(dst),
                  what=f"snapshotting {src}")

    async def destroy(self, path: Path) -> None:
        if not path.exists():
            return
        if os.stat(path).st_ino == 256:  # the root of a subvolume
            await run("btrfs", "-q", "subvolume", "delete", str(path), what=f"deleting subvolume {path}")
        else:
            await super().destroy(path)
