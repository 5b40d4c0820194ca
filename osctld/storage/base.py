"""What every storage backend provides to the commands."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from osctl.protocol import INTERNAL, UNSUPPORTED, OsctlError


async def run(*argv: str, what: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    text = out.decode(errors="replace").strip()
    if proc.returncode != 0:
        raise OsctlError(INTERNAL, f"{what} failed: {text or f'exit {proc.returncode}'}")
    return text


class Backend:
    """A pool's datasets: a dataset is a directory tree a container or template owns."""

    name = "base"
    quotas = False  # whether datasets can have a disk quota

    def __init__(self, pool):
        self.pool = pool

    async def install(self, size: int | None = None) -> None:
        """Prepare a new pool at its path (create an image, a filesystem, ...)."""
        self.pool.path.mkdir(parents=True, exist_ok=True)

    async def activate(self) -> None:
        """Make an installed pool usable on this node (mount it); idempotent."""
        if not self.pool.path.is_dir():
            raise OsctlError(INTERNAL, f"pool {self.pool.name}: {self.pool.path} is missing")

    async def deactivate(self) -> None:
        """Undo ``activate`` when the pool is exported."""

    async def create(self, path: Path) -> None:
        """An empty dataset at ``path``."""
        path.mkdir(parents=True)

    async def clone(self, src: Path, dst: Path) -> None:
        """``dst`` becomes a copy of dataset ``src`` (a snapshot where the backend can)."""
        dst.parent.mkdir(parents=True, exist_ok=True)
        await run("cp", "-a", "--reflink=auto", str(src), str(dst), what=f"copying {src}")

    async def destroy(self, path: Path) -> None:
        await asyncio.to_thread(shutil.rmtree, path, ignore_errors=True)

    async def set_quota(self, path: Path, size: int | None) -> None:
        """Limit what dataset ``path`` may hold to ``size`` bytes (None: no limit)."""
        self.need_quotas()

    def need_quotas(self) -> None:
        """Refuse early where the backend has no disk quotas."""
        if self.quotas:
            return
        raise OsctlError(UNSUPPORTED, f"pool {self.pool.name} is a {self.name} pool, which has no "
                                      "disk quotas: use a btrfs pool")
