"""RootFS keeps every write inside the rootfs and owned like its directory."""

from __future__ import annotations

import os

from osctld.distconfig.rootfs import RootFS
from tests.conftest import require


def test_absolute_symlink_stays_inside(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "etc").mkdir(parents=True)
    outside.mkdir()
    (root / "etc/network").symlink_to(outside)  # absolute: the tenant aims at the host
    RootFS(root).write("etc/network/interfaces", "x\n")
    assert list(outside.iterdir()) == []
    assert (root / outside.relative_to("/") / "interfaces").read_text() == "x\n"


def test_dotdot_stays_inside(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    RootFS(root).write("../../escaped", "x\n")
    assert (root / "escaped").exists()
    assert not (tmp_path / "escaped").exists()


def test_symlinked_file_is_replaced_not_followed(tmp_path):
    root, victim = tmp_path / "root", tmp_path / "victim"
    (root / "etc").mkdir(parents=True)
    victim.write_text("host's\n")
    (root / "etc/hostname").symlink_to(victim)
    assert RootFS(root).write("etc/hostname", "ct\n")
    assert victim.read_text() == "host's\n"
    assert not (root / "etc/hostname").is_symlink()


def test_new_files_belong_to_the_directory_owner(tmp_path):
    """An unshifted rootfs is owned by the container's root; a written file
    must be too, or the tenant could not change it."""
    require(None if os.geteuid() == 0 else "not root: fchown to another owner")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.chown(root / "etc", 100000, 100000)
    RootFS(root).write("etc/network/interfaces", "x\n")
    for p in (root / "etc/network", root / "etc/network/interfaces"):
        st = p.stat()
        assert (st.st_uid, st.st_gid) == (100000, 100000)
