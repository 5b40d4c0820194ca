"""A daemon killed at any moment: what it leaves is cleaned at its next start,
and everything it had made is as it was."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

from tests.conftest import require
from tests.helpers.node import BLOCK


def test_start_removes_what_a_killed_create_or_delete_left(node):
    require(None if shutil.which("mkfs.btrfs") else "mkfs.btrfs missing (btrfs-progs)")
    node.osctl("pool", "install", "fast", "--backend", "btrfs", "--image", str(node.dir / "fast.img"),
               "--size", "300M", "--path", str(node.dir / "fast"), "--id-base", str(node.id_base + 32 * BLOCK))
    node.osctl("user", "new", "u")
    node.osctl("user", "new", "v", "--pool", "fast")
    node.osctl("ct", "new", "keep", "--user", "u")
    node.osctl("ct", "new", "keepb", "--user", "fast:v")
    node.osctl("ct", "start", "keep")
    node.exec("keep", "sh", "-c", "echo mine > /root/data")
    before = node.osctl_json("ct", "show", "keep")
    pool, fast = Path(node.osctl_json("pool", "show", "default")["path"]), node.dir / "fast"
    lxc = node.run_dir / "lxc" / "default"
    node.kill(signal.SIGKILL)

    # What kill -9 leaves half way through `ct new` (a cloned rootfs, no
    # config), `ct del` (config gone, rootfs and LXC directory not yet),
    # `vm new`, and an atomic write (its temporary file).
    subprocess.run(["cp", "-a", str(pool / "ct" / "keep"), str(pool / "ct" / "k1")], check=True)
    (pool / "ct" / "k2").mkdir()  # killed before the clone
    shutil.copytree(lxc / "keep", lxc / "k1", ignore=shutil.ignore_patterns("*.log"))
    (pool / "vm" / "v1").mkdir()
    (pool / "vm" / "v1" / "disk.img").write_bytes(b"\0" * 4096)
    (fast / "ct" / "kb").mkdir()
    subprocess.run(["btrfs", "-q", "subvolume", "snapshot", str(fast / "ct" / "keepb" / "rootfs"),
                    str(fast / "ct" / "kb" / "rootfs")], check=True)
    temps = [pool / "conf" / "ct" / ".k1.yml.ab12cd_9", pool / "conf" / "user" / ".u.yml.0a1b2c3d",
             node.state_dir / ".pools.yml.zz00yy11", fast / "conf" / "ct" / ".kb.yml.qwertyui",
             lxc / "keep" / ".config.a1b2c3d4"]
    for t in temps:
        t.write_text("id: half writ")
    # Not ours to remove: a name osctld never gives, a file that is no temporary.
    (pool / "ct" / ".admin-notes").write_text("keep me")
    (pool / "conf" / "ct" / ".k1.yml.bak").write_text("keep me")

    node.start()
    assert sorted(p.name for p in (pool / "ct").iterdir()) == [".admin-notes", "keep"]
    assert sorted(p.name for p in (fast / "ct").iterdir()) == ["keepb"]
    assert list((pool / "vm").iterdir()) == [] and sorted(p.name for p in lxc.iterdir()) == ["keep"]
    assert [t for t in temps if t.exists()] == []
    assert (pool / "conf" / "ct" / ".k1.yml.bak").exists()
    subvols = subprocess.run(["btrfs", "subvolume", "list", str(fast)], capture_output=True,
                             text=True, check=True).stdout
    assert "ct/kb/rootfs" not in subvols and "ct/keepb/rootfs" in subvols
    log = node.log.read_text()
    for what in [pool / "ct" / "k1", pool / "ct" / "k2", pool / "vm" / "v1", fast / "ct" / "kb",
                 "the LXC directory of container k1", *temps]:
        assert f"removing {what}" in log, what
    # The real containers are untouched: still running, data, config.
    after = node.osctl_json("ct", "show", "keep")
    assert (after["state"], after["init_pid"]) == ("running", before["init_pid"])
    assert node.exec("keep", "cat", "/root/data").stdout == "mine\n"
    assert sorted(c["id"] for c in node.osctl_json("ct", "ls")) == ["keep", "keepb"]
    assert os.stat(fast / "ct" / "keepb" / "rootfs").st_ino == 256
    node.osctl("ct", "start", "fast:keepb")
