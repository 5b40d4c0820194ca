"""A VM's files in its pool: kernel, initramfs, command line and disk.

A VM boots its kernel directly (QEMU ``-kernel``), so the template's kernel
and initramfs are copied into ``<pool>/vm/<id>/`` beside the disk: the pool
alone is enough to run the VM, on this node or after an import elsewhere.
The disk is a sparse raw file; a template with a root filesystem gets an
ext4 made from it (``mkfs.ext4 -d``: no loop device, no mount).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..storage.base import run

KERNEL, INITRD, CMDLINE, ROOTFS = "vmlinuz", "initrd.img", "cmdline", "rootfs"


@dataclass
class VmFiles:
    dir: Path

    @property
    def disk(self) -> Path:
        return self.dir / "disk.raw"

    @property
    def kernel(self) -> Path:
        return self.dir / KERNEL

    @property
    def initrd(self) -> Path:
        return self.dir / INITRD

    @property
    def cmdline(self) -> str:
        return (self.dir / CMDLINE).read_text().strip()

    def grow_offline(self, size: int) -> None:
        """Grow the sparse disk file of a stopped VM."""
        os.truncate(self.disk, size)

    async def install(self, image: Path, size: int,
                      customize: Callable[[Path], None]) -> None:
        """Copy the built template ``image`` in and make the disk of ``size`` bytes.

        ``customize`` gets a staging copy of the template's root filesystem
        (hostname, DNS, network) before the filesystem is made from it.
        """
        for name in (KERNEL, INITRD, CMDLINE):
            await asyncio.to_thread(shutil.copyfile, image / name, self.dir / name)
        with open(self.disk, "wb") as f:
            f.truncate(size)
        if not (image / ROOTFS).is_dir():
            return
        staging = self.dir / ".rootfs"
        try:
            await run("cp", "-a", "--reflink=auto", str(image / ROOTFS), str(staging),
                      what="staging the VM's root filesystem")
            customize(staging)
            await run("mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(staging), str(self.disk),
                      what="making the VM's root filesystem")
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)
