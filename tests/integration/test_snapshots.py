"""Snapshots on a real btrfs filesystem (a loop image): read-only ones
through the backend alone (what export and send read a running container
from), and a container's named snapshots through osctl (``ct snapshot``)."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from osctld.model.pool import Pool
from osctld.storage import backend_for
from osctld.undo import Undo
from tests.conftest import require
from tests.helpers.node import BLOCK
from tests.integration.test_limits import df_k


@pytest.fixture
def btrfs_pool(tmp_path):
    require(None if os.geteuid() == 0 else "not root")
    require(None if shutil.which("mkfs.btrfs") else "mkfs.btrfs missing (btrfs-progs)")
    pool = Pool("snaps", "btrfs", tmp_path / "mnt", tmp_path / "snaps.img")
    backend = backend_for(pool)

    async def install() -> None:
        async with Undo() as undo:  # as the command does: a failed install takes itself back
            await backend.install(256 << 20, undo)

    asyncio.run(install())
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


def test_ct_snapshot_new_ls_rollback_del_on_btrfs_and_unsupported_on_dir(node):
    """A snapshot keeps the rootfs of a running container; a rollback of a
    running one needs --restart and brings a deleted file back, quota kept;
    ct del refuses while snapshots exist unless --force, which removes them."""
    require(None if shutil.which("mkfs.btrfs") else "mkfs.btrfs missing (btrfs-progs)")
    node.osctl("pool", "install", "bs", "--backend", "btrfs", "--image", str(node.dir / "bs.img"),
               "--size", "300M", "--id-base", str(node.id_base + 34 * BLOCK))
    node.osctl("user", "new", "u", "--pool", "bs")
    node.osctl("ct", "new", "s1", "--user", "bs:u", "--disk", "20M")
    node.osctl("ct", "start", "bs:s1")
    assert node.exec("bs:s1", "sh", "-c", "echo kept > /root/data").returncode == 0

    made = node.osctl_json("ct", "snapshot", "new", "bs:s1", "before")
    assert made["name"] == "before" and made["created"] > 0
    assert node.exec("bs:s1", "sh", "-c", "rm /root/data && dd if=/dev/zero of=/root/big "
                                          "bs=1M count=4 && sync").returncode == 0
    node.osctl("ct", "snapshot", "new", "bs:s1")  # named by the time
    snaps = node.osctl_json("ct", "snapshot", "ls", "bs:s1")
    assert [s["name"] for s in snaps][0] == "before" and len(snaps) == 2
    assert all(s["used"] is not None and s["created"] >= made["created"] - 1 for s in snaps)
    table = node.osctl("ct", "snapshot", "ls", "bs:s1").stdout
    assert "before" in table and "CREATED" in table and "USED" in table, table
    p = node.osctl("ct", "snapshot", "new", "bs:s1", "before", check=False)
    assert p.returncode != 0 and "already" in p.stderr, p.stderr

    p = node.osctl("ct", "snapshot", "rollback", "bs:s1", "before", check=False)
    assert p.returncode != 0 and "--restart" in p.stderr, p.stderr
    assert node.exec("bs:s1", "test", "-e", "/root/data").returncode == 1  # nothing changed
    node.osctl("ct", "snapshot", "rollback", "bs:s1", "before", "--restart", "-t", "5")
    assert node.osctl_json("ct", "show", "bs:s1")["state"] == "running"
    assert node.exec("bs:s1", "cat", "/root/data").stdout == "kept\n"
    assert node.exec("bs:s1", "test", "-e", "/root/big").returncode == 1
    assert df_k(node, "bs:s1")[0] == 20 * 1024  # the new subvolume has the quota
    p = node.osctl("ct", "snapshot", "rollback", "bs:s1", "nosuch", "--restart", check=False)
    assert p.returncode != 0 and "no snapshot" in p.stderr, p.stderr

    node.osctl("ct", "stop", "bs:s1", "-t", "5")
    p = node.osctl("ct", "del", "bs:s1", check=False)
    assert p.returncode != 0 and "has snapshots (before, " in p.stderr, p.stderr
    node.osctl("ct", "snapshot", "del", "bs:s1", "before")
    assert len(node.osctl_json("ct", "snapshot", "ls", "bs:s1")) == 1
    rootfs = Path(node.osctl_json("ct", "show", "bs:s1")["rootfs"])
    node.osctl("ct", "del", "bs:s1", "--force")
    assert not rootfs.parent.exists()
    pool = Path(node.osctl_json("pool", "show", "bs")["path"])
    vols = subprocess.run(["btrfs", "subvolume", "list", str(pool)], capture_output=True,
                          text=True, check=True).stdout
    assert "s1" not in vols, vols

    node.osctl("user", "new", "alice")
    node.osctl("ct", "new", "d1", "--user", "alice")
    for args in (("new", "d1", "x"), ("ls", "d1"), ("rollback", "d1", "x"), ("del", "d1", "x")):
        p = node.osctl("ct", "snapshot", *args, check=False)
        assert p.returncode != 0 and "dir pool, which has no snapshots" in p.stderr, (args, p.stderr)
    node.osctl("ct", "del", "d1")  # no snapshots on dir: nothing asked
