"""Read-only snapshots on a real btrfs filesystem (a loop image), through
the backend alone: what export and send read a running container from."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil

import pytest

from osctld.model.pool import Pool
from osctld.storage import backend_for
from tests.conftest import require


@pytest.fixture
def btrfs_pool(tmp_path):
    require(None if os.geteuid() == 0 else "not root")
    require(None if shutil.which("mkfs.btrfs") else "mkfs.btrfs missing (btrfs-progs)")
    pool = Pool("snaps", "btrfs", tmp_path / "mnt", tmp_path / "snaps.img")
    backend = backend_for(pool)
    asyncio.run(backend.install(256 << 20))
    try:
        yield backend
    finally:
        asyncio.run(backend.deactivate())
        pool.image.unlink(missing_ok=True)


def test_a_snapshot_is_read_only_keeps_its_moment_and_is_destroyed(btrfs_pool):
    backend = btrfs_pool
    src, snap = backend.pool.path / "ct" / "c1" / "rootfs", backend.pool.path / "ct" / "c1" / "snap" / "s1"
    asyncio.run(backend.create(src))
    (src / "data").write_text("before\n")

    asyncio.run(backend.snapshot(src, snap))
    (src / "data").write_text("after\n")  # the dataset goes on being written
    (src / "new").write_text("new\n")

    assert (snap / "data").read_text() == "before\n" and not (snap / "new").exists()
    with pytest.raises(OSError) as e:
        (snap / "data").write_text("changed\n")
    assert e.value.errno == errno.EROFS
    assert os.stat(snap).st_ino == 256  # a subvolume of its own

    asyncio.run(backend.destroy(snap))
    assert not snap.exists() and (src / "data").read_text() == "after\n"
    asyncio.run(backend.destroy(snap))  # gone already: nothing to do
