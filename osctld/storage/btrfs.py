"""btrfs: each dataset a subvolume, a clone a snapshot (instant, shares blocks),
a ``snapshot`` a read-only one (what ``btrfs send`` needs).

A pool is either a directory on a mounted btrfs filesystem, or a loop-file
image that osctld creates at install and mounts when it activates the pool.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from osctl.protocol import CONFLICT, INVALID, OsctlError

from ..undo import Undo
from .base import Backend, Snapshot, remove_if_empty, run


def is_mounted(path: Path) -> bool:
    return os.path.ismount(path)


class BtrfsBackend(Backend):
    name = "btrfs"
    quotas = True  # qgroups
    snapshots = True
    named_snapshots = True
    send_stream = "btrfs"

    async def install(self, size: int | None, undo: Undo) -> None:
        pool = self.pool
        if pool.image is not None:
            await self.new_image(size, undo, "mkfs.btrfs", "-q", "-L", f"osctld-{pool.name}")
        await super().install(size, undo)

    async def activate(self) -> None:
        pool = self.pool
        if pool.image is not None and not is_mounted(pool.path):
            if not pool.image.is_file():
                raise OsctlError(INVALID, f"btrfs image {pool.image} is no file")
            pool.path.mkdir(parents=True, exist_ok=True)
            await run("mount", "-o", "loop", str(pool.image), str(pool.path),
                      what=f"mounting {pool.image}")
        fstype = await run("stat", "-f", "-c", "%T", str(pool.path), what="stat -f")
        if fstype != "btrfs":
            raise OsctlError(INVALID, f"{pool.path} is on {fstype}, not btrfs: "
                                      "give a btrfs path or --image FILE --size SIZE")
        await super().activate()

    async def deactivate(self) -> None:
        if self.pool.image is not None and is_mounted(self.pool.path):
            await run("umount", str(self.pool.path), what=f"unmounting {self.pool.path}")

    async def uninstall(self) -> None:
        """An image pool's data is its image (unmounted when the pool left)."""
        if self.pool.image is None:
            await super().uninstall()
            return
        self.pool.image.unlink(missing_ok=True)
        remove_if_empty(self.pool.path)

    async def create(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        await run("btrfs", "-q", "subvolume", "create", str(path), what=f"creating subvolume {path}")

    async def clone(self, src: Path, dst: Path) -> None:
        await self._snapshot(src, dst)

    async def snapshot(self, src: Path, dst: Path) -> None:
        await self._snapshot(src, dst, "-r")

    async def _snapshot(self, src: Path, dst: Path, *flags: str) -> None:
        dst.parent.mkdir(parents=True, exist_ok=True)
        await run("btrfs", "-q", "subvolume", "snapshot", *flags, str(src), str(dst),
                  what=f"snapshotting {src}")

    async def destroy(self, path: Path) -> None:
        if not path.exists():
            return
        # The root of a subvolume: ``subvolume delete`` also removes a
        # read-only one (a snapshot), where unlinking its files would fail.
        if os.stat(path).st_ino == 256:
            await run("btrfs", "-q", "subvolume", "delete", str(path), what=f"deleting subvolume {path}")
        else:
            await super().destroy(path)

    # --- disk quotas: qgroups, a referenced-bytes limit per subvolume ---------------

    async def qgroup(self, path: Path) -> str:
        return "0/" + await run("btrfs", "inspect-internal", "rootid", str(path), what="btrfs rootid")

    async def snapshot_info(self, path: Path) -> Snapshot:
        """When the subvolume was made (``subvolume show``) and what only it
        holds (its qgroup's exclusive bytes)."""
        out = await run("btrfs", "subvolume", "show", str(path), what=f"btrfs subvolume show {path}")
        fields = dict(line.strip().split(":", 1) for line in out.splitlines()[1:] if ":" in line)
        created = datetime.strptime(fields["Creation time"].strip(), "%Y-%m-%d %H:%M:%S %z")
        await run("btrfs", "filesystem", "sync", str(self.pool.path), what="btrfs filesystem sync")
        return Snapshot(path.name, created.timestamp(), (await self._counts(path))[1],
                        int(fields["Subvolume ID"]))

    async def used(self, path: Path) -> int:
        """Bytes the subvolume refers to (what its quota counts), quotas on."""
        return (await self._counts(path))[0]

    async def _counts(self, path: Path) -> tuple[int, int]:
        """The subvolume's referenced and exclusive bytes; quotas turned on
        (and counted) the first time."""
        qgroup = await self.qgroup(path)
        root = str(self.pool.path)
        try:
            out = await run("btrfs", "qgroup", "show", "--raw", "-r", root, what="btrfs qgroup show")
        except OsctlError:  # quotas are off: turn them on and count what is there
            await run("btrfs", "quota", "enable", root, what="btrfs quota enable")
            await run("btrfs", "quota", "rescan", "-w", root, what="btrfs quota rescan")
            out = await run("btrfs", "qgroup", "show", "--raw", "-r", root, what="btrfs qgroup show")
        for line in out.splitlines():
            cols = line.split()
            if cols and cols[0] == qgroup:
                return int(cols[1]), int(cols[2])
        raise OsctlError(INVALID, f"no qgroup {qgroup} for {path}")

    async def set_quota(self, path: Path, size: int | None) -> None:
        used = await self.used(path)
        if size is not None and size < used:
            raise OsctlError(CONFLICT, f"disk quota {size} is below what {path.parent.name} "
                                       f"holds already ({used} bytes)")
        # Through the pool's root, not the subvolume: a subvolume at its limit
        # cannot pay for the transaction that lifts it (EDQUOT).
        await run("btrfs", "qgroup", "limit", str(size) if size else "none",
                  await self.qgroup(path), str(self.pool.path), what="btrfs qgroup limit")
