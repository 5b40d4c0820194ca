"""Storage backends' snapshot primitive, without a filesystem: which
backends have one, and what a backend without one answers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from osctl.protocol import UNSUPPORTED, OsctlError
from osctld.model.pool import Pool
from osctld.storage import BACKENDS, backend_for
from osctld.storage import btrfs


def pool(backend: str) -> Pool:
    return Pool("p1", backend, Path("/nonexistent/p1"))


def test_only_btrfs_has_snapshots():
    assert {name for name, cls in BACKENDS.items() if cls.snapshots} == {"btrfs"}


@pytest.mark.parametrize("backend", ["dir", "zfs"])
def test_a_snapshot_where_the_backend_has_none_is_unsupported_and_names_the_pool(tmp_path, backend):
    b = backend_for(pool(backend))
    with pytest.raises(OsctlError) as e:
        asyncio.run(b.snapshot(tmp_path / "src", tmp_path / "snap"))
    assert e.value.code == UNSUPPORTED and "p1" in e.value.message and "btrfs" in e.value.message
    assert not (tmp_path / "snap").exists()


def test_a_btrfs_snapshot_is_read_only_and_a_clone_is_not(tmp_path, monkeypatch):
    calls: list[tuple[str, ...]] = []

    async def run(*argv: str, what: str) -> str:
        calls.append(argv)
        return ""

    monkeypatch.setattr(btrfs, "run", run)
    b = backend_for(pool("btrfs"))
    asyncio.run(b.snapshot(tmp_path / "rootfs", tmp_path / "snaps" / "s1"))
    asyncio.run(b.clone(tmp_path / "rootfs", tmp_path / "copy"))
    assert calls == [
        ("btrfs", "-q", "subvolume", "snapshot", "-r", str(tmp_path / "rootfs"), str(tmp_path / "snaps" / "s1")),
        ("btrfs", "-q", "subvolume", "snapshot", str(tmp_path / "rootfs"), str(tmp_path / "copy")),
    ]
    assert (tmp_path / "snaps").is_dir()  # made for the snapshot to go in

