"""Containers as files and copies: ct export, ct import, ct copy, ct chown,
seen from outside (the copy starts, its files are there with the owners
the container saw) and from the disk (what a btrfs copy takes, who owns a
file on the host)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require
from tests.helpers.node import BLOCK, OSCTL

BTRFS_SIZE = "2G"


def btrfs_pool(node, name: str = "fast") -> Path:
    """A btrfs pool on a loop image of the node's; its mount path."""
    require(None if shutil.which("mkfs.btrfs") else "mkfs.btrfs missing (btrfs-progs)")
    pool = node.osctl_json("pool", "install", name, "--backend", "btrfs", "--image",
                           str(node.dir / f"{name}.img"), "--size", BTRFS_SIZE,
                           "--id-base", str(node.id_base + 32 * BLOCK))
    return Path(pool["path"])


def spare_pool(node, tmp_path) -> None:
    """A second dir pool, ``spare``, whose ID blocks start at 48 blocks up."""
    (tmp_path / "spare").mkdir()
    node.osctl("pool", "install", "spare", "--path", str(tmp_path / "spare"),
               "--id-base", str(node.id_base + 48 * BLOCK))


def owner_inside(node, ct: str, path: str) -> str:
    p = node.exec(ct, "stat", "-c", "%u:%g", path)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def snapshots_left(node, pool: str) -> list[str]:
    path = Path(node.osctl_json("pool", "show", pool)["path"]) / "ct"
    return sorted(p.name for p in path.glob(".*"))


def what_there_is(node) -> dict:
    """What a refused request must leave as it was, in every pool."""
    pools = [p["name"] for p in node.osctl_json("pool", "ls")]
    return {"cts": sorted((c["pool"], c["id"], c["user"], c["state"])
                          for c in node.osctl_json("ct", "ls")),
            "users": sorted((u["pool"], u["name"]) for u in node.osctl_json("user", "ls")),
            "datasets": {p: sorted(os.listdir(Path(node.osctl_json("pool", "show", p)["path"]) / "ct"))
                         for p in pools},
            "lxc": sorted(str(p.relative_to(node.run_dir)) for p in (node.run_dir / "lxc").glob("*/*")),
            "subuid": node.subid_lines()}


def test_a_dir_container_goes_through_a_file_and_back(node, tmp_path):
    node.osctl("user", "new", "alice")
    node.osctl("ct", "new", "c1", "--user", "alice")
    node.osctl("ct", "netif", "new", "c1", "eth0")
    node.osctl("ct", "netif", "ip", "add", "c1", "eth0", "192.0.2.20")
    node.osctl("ct", "start", "c1")
    assert node.exec("c1", "sh", "-c", "echo kept > /root/data && mkdir /srv && "
                                       "echo theirs > /srv/f && chown 1000:1001 /srv/f").returncode == 0
    archive = tmp_path / "c1.tar.gz"

    # Running on a pool without snapshots: refused, unless copied live.
    p = node.osctl("ct", "export", "c1", str(archive), check=False)
    assert p.returncode == 6 and "--live" in p.stderr and not archive.exists()
    live = node.osctl_json("ct", "export", "c1", str(tmp_path / "live.tar"), "-c", "none", "--live")
    assert live["bytes"] == (tmp_path / "live.tar").stat().st_size > 0

    node.osctl("ct", "stop", "c1")
    res = node.osctl_json("ct", "export", "c1", str(archive), "-c", "gzip")
    assert res["bytes"] == archive.stat().st_size and archive.read_bytes()[:2] == b"\x1f\x8b"
    listing = subprocess.run(["tar", "-tzf", str(archive)], capture_output=True, text=True,
                             check=True).stdout.split()
    assert listing[0] == "metadata.json" and "rootfs/root/data" in listing

    p = subprocess.run(f"{OSCTL} --socket {node.socket} ct export c1 - -c none | tar -t",
                       shell=True, capture_output=True, text=True)  # to stdout
    assert p.returncode == 0 and "rootfs/root/data" in p.stdout.split(), p.stderr

    node.osctl("ct", "del", "c1")
    ct = node.osctl_json("ct", "import", str(archive))
    assert (ct["id"], ct["user"], ct["state"]) == ("c1", "alice", "stopped")
    assert ct["netifs"][0]["addresses"] == ["192.0.2.20/32"]  # free again once c1 was deleted
    node.osctl("ct", "start", "c1")
    assert "192.0.2.20" in node.exec("c1", "ip", "-4", "addr", "show", "eth0").stdout
    assert node.exec("c1", "cat", "/root/data").stdout == "kept\n"
    assert owner_inside(node, "c1", "/srv/f") == "1000:1001"
    assert owner_inside(node, "c1", "/root/data") == "0:0"


def test_bad_imports_and_exports_change_nothing(node, tmp_path):
    node.osctl("user", "new", "alice")
    node.osctl("ct", "new", "c1", "--user", "alice")
    archive = tmp_path / "c1.tar.zst"
    node.osctl("ct", "export", "c1", str(archive))
    corrupt = tmp_path / "corrupt.tar.zst"
    corrupt.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    foreign = tmp_path / "foreign.tar"
    subprocess.run(["tar", "-cf", str(foreign), "-C", str(tmp_path), "c1.tar.zst"], check=True)
    node.osctl("ct", "netif", "new", "c1", "eth0")
    node.osctl("ct", "netif", "ip", "add", "c1", "eth0", "192.0.2.10")
    addressed = tmp_path / "addressed.tar"
    node.osctl("ct", "export", "c1", str(addressed), "-c", "none")
    spare_pool(node, tmp_path)
    for pool in ("default", "spare"):
        node.osctl("user", "new", "bob", "--pool", pool)
    before = what_there_is(node)

    cases = [  # (arguments, exit code, words in the error)
        (["ct", "import", str(archive)], 4, "exists"),  # its own id is taken
        (["ct", "import", str(archive), "--as-id", "c2", "--user", "nobody"], 3, "nobody' not found"),
        (["ct", "import", str(archive), "--as-id", "c2", "--user", "spare:bob"], 2, "--pool spare"),
        # Its address is c1's.
        (["ct", "import", str(addressed), "--as-id", "c2"], 6, "overlaps address 192.0.2.10"),
        (["ct", "import", str(foreign), "--as-id", "c2"], 2, "metadata.json"),
        (["ct", "import", str(archive), "--as-id", "c2", "--pool", "nopool"], 3, "nopool"),
        # Half an archive: its head reads well, its end is missing.
        (["ct", "import", str(corrupt), "--as-id", "c2", "--user", "bob"], 2, "tar"),
        # Into a pool without alice: she is made, then removed with her ID block.
        (["ct", "import", str(corrupt), "--pool", "spare"], 2, "tar"),
    ]
    for args, code, words in cases:
        p = node.osctl(*args, check=False)
        assert (p.returncode, words in p.stderr) == (code, True), (args, p.stderr)
        assert what_there_is(node) == before, args
    # The user made for the import into spare is gone with its block (the
    # one after bob's): the next user takes it.
    assert node.osctl_json("user", "new", "carol", "--pool", "spare")["root_uid"] == \
        node.id_base + 49 * BLOCK
    with pytest.raises(Exception, match="unknown compression"):
        node.call("ct.export", id="c1", compression="lz4")
    p = node.osctl("ct", "export", "c1", str(archive), check=False)
    assert p.returncode == 2 and "exists" in p.stderr  # an archive is never overwritten


def test_a_running_btrfs_container_exports_from_a_snapshot_and_imports_anywhere(
        node, debian_template, tmp_path):
    btrfs_pool(node)
    for user in ("alice", "bob"):
        node.osctl("user", "new", user, "--pool", "fast")
    node.osctl("ct", "new", "d1", "--user", "fast:alice", "-t", "debian")
    node.osctl("ct", "start", "fast:d1")
    assert node.exec("fast:d1", "sh", "-c", "echo kept > /root/data && mkdir -p /srv && "
                                            "echo theirs > /srv/f && chown 1000:1001 /srv/f"
                     ).returncode == 0
    archive = tmp_path / "d1.tar.zst"

    p = node.osctl("ct", "export", "fast:d1", str(archive))
    assert "[snapshot] snapshotting d1" in p.stderr and "[rootfs] writing d1 (zstd)" in p.stderr
    assert archive.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"
    assert node.osctl_json("ct", "show", "fast:d1")["state"] == "running"  # it ran on throughout
    assert snapshots_left(node, "fast") == []

    d2 = node.osctl_json("ct", "import", str(archive), "--as-id", "d2", "--pool", "fast",
                         "--user", "bob")
    assert (d2["pool"], d2["user"], d2["state"]) == ("fast", "bob", "stopped")
    d3 = node.osctl_json("ct", "import", str(archive), "--as-id", "d3")  # into the dir pool
    assert (d3["pool"], d3["user"]) == ("default", "alice")
    assert "user alice made in pool default" in d3["notes"]
    for ct, user in (("fast:d2", "fast:bob"), ("default:d3", "default:alice")):
        started = node.osctl_json("ct", "start", ct)
        assert os.stat(f"/proc/{started['init_pid']}").st_uid == \
            node.osctl_json("user", "show", user)["root_uid"]
        assert node.exec(ct, "cat", "/root/data").stdout == "kept\n"
        assert owner_inside(node, ct, "/srv/f") == "1000:1001"
        assert owner_inside(node, ct, "/root/data") == "0:0"


def test_a_btrfs_copy_is_a_snapshot_that_takes_no_space_until_written(node):
    btrfs_pool(node)
    node.osctl("user", "new", "alice", "--pool", "fast")
    node.osctl("ct", "new", "b1", "--user", "fast:alice")
    node.osctl("ct", "netif", "new", "fast:b1", "eth0")
    node.osctl("ct", "netif", "ip", "add", "fast:b1", "eth0", "192.0.2.10")
    node.osctl("ct", "start", "fast:b1")
    assert node.exec("fast:b1", "sh", "-c", "dd if=/dev/urandom of=/root/big bs=1M count=32 "
                                            "2>/dev/null && sync").returncode == 0

    b2 = node.osctl_json("ct", "copy", "fast:b1", "b2")
    b1 = node.osctl_json("ct", "show", "fast:b1")
    assert (b2["snapshot"], b2["state"], b1["state"]) == (True, "stopped", "running")
    assert b2["netifs"][0]["addresses"] == [] and b1["netifs"][0]["addresses"] == ["192.0.2.10/32"]
    assert b2["netifs"][0]["index"] != b1["netifs"][0]["index"]
    assert b2["netifs"][0]["hwaddr"] != b1["netifs"][0]["hwaddr"]
    assert snapshots_left(node, "fast") == []
    # Into another pool (a dir pool): a copy of the files, its user made there.
    b3 = node.osctl_json("ct", "copy", "fast:b1", "b3", "--to-pool", "default")
    assert (b3["snapshot"], b3["pool"], b3["user"]) == (False, "default", "alice")
    assert "user alice made in pool default" in b3["notes"]

    rootfs = node.osctl_json("ct", "show", "fast:b2")["rootfs"]
    exclusive = lambda: int(subprocess.run(  # noqa: E731
        ["btrfs", "filesystem", "du", "-s", "--raw", rootfs], capture_output=True, text=True,
        check=True).stdout.splitlines()[1].split()[1])
    assert exclusive() < 1 << 20  # shares the 32 MiB and everything else with b1
    md5 = "md5sum /root/big | cut -d' ' -f1"
    for ct in ("fast:b2", "default:b3"):
        node.osctl("ct", "start", ct)
        assert node.exec(ct, "sh", "-c", md5).stdout == node.exec("fast:b1", "sh", "-c", md5).stdout
    assert node.exec("fast:b2", "sh", "-c", "dd if=/dev/urandom of=/root/big bs=1M count=8 "
                                            "2>/dev/null && sync").returncode == 0
    assert 8 << 20 <= exclusive() < 10 << 20  # what it wrote, its own now


def test_a_dir_copy_is_a_stopped_full_copy(node):
    node.osctl("user", "new", "alice")
    node.osctl("ct", "new", "c1", "--user", "alice")
    node.osctl("ct", "start", "c1")
    assert node.exec("c1", "sh", "-c", "echo kept > /root/data").returncode == 0
    p = node.osctl("ct", "copy", "c1", "c2", check=False)
    assert p.returncode == 6 and "--live" in p.stderr
    assert [c["id"] for c in node.osctl_json("ct", "ls")] == ["c1"]

    node.osctl("ct", "stop", "c1")
    node.osctl("user", "set", "quota", "alice", "containers=1")  # a copy would be her second
    p = node.osctl("ct", "copy", "c1", "c2", check=False)
    assert p.returncode == 6 and "quota" in p.stderr, p.stderr
    assert [c["id"] for c in node.osctl_json("ct", "ls")] == ["c1"]
    assert sorted(os.listdir(Path(node.osctl_json("ct", "show", "c1")["rootfs"]).parent.parent)) == ["c1"]
    node.osctl("user", "set", "quota", "alice", "containers=none")
    c2 = node.osctl_json("ct", "copy", "c1", "c2")
    assert (c2["snapshot"], c2["state"], c2["hostname"]) == (False, "stopped", "c2")
    node.osctl("ct", "start", "c2")
    assert node.exec("c2", "cat", "/root/data").stdout == "kept\n"
    assert node.exec("c2", "hostname").stdout == "c2\n"
    assert node.exec("c2", "sh", "-c", "echo changed > /root/data").returncode == 0
    rootfs = Path(node.osctl_json("ct", "show", "c1")["rootfs"])
    assert (rootfs / "root" / "data").read_text() == "kept\n"  # a copy, not the same files


def test_chown_moves_a_stopped_container_into_another_users_map(node):
    node.osctl("user", "new", "alice")
    bob = node.osctl_json("user", "new", "bob")
    node.osctl("ct", "new", "c1", "--user", "alice")
    node.osctl("ct", "start", "c1")
    assert node.exec("c1", "sh", "-c", "echo x > /root/f && mkdir /srv && touch /srv/g && "
                                       "chown 1000:1001 /srv/g").returncode == 0
    p = node.osctl("ct", "chown", "c1", "bob", check=False)
    assert p.returncode == 6 and "stop it first" in p.stderr
    node.osctl("ct", "stop", "c1")

    node.osctl("user", "set", "quota", "bob", "containers=0")
    p = node.osctl("ct", "chown", "c1", "bob", check=False)
    assert p.returncode == 6 and "quota" in p.stderr, p.stderr
    assert node.osctl_json("ct", "show", "c1")["user"] == "alice"
    node.osctl("user", "set", "quota", "bob", "containers=none")

    assert node.osctl_json("ct", "chown", "c1", "bob")["user"] == "bob"
    # On disk: as the container sees it where the pool idmaps its mount,
    # else shifted into bob's map.
    rootfs = Path(node.osctl_json("ct", "show", "c1")["rootfs"])
    idmapped = node.osctl_json("pool", "show", "default")["idmap"] == "idmapped"
    base = 0 if idmapped else bob["root_uid"]
    assert os.stat(rootfs / "root" / "f").st_uid == base
    assert os.stat(rootfs / "srv" / "g").st_uid == base + 1000
    started = node.osctl_json("ct", "start", "c1")
    assert os.stat(f"/proc/{started['init_pid']}").st_uid == bob["root_uid"]
    assert owner_inside(node, "c1", "/root/f") == "0:0"
    assert owner_inside(node, "c1", "/srv/g") == "1000:1001"
    assert node.exec("c1", "sh", "-c", "echo y > /root/f").returncode == 0  # root inside still owns it


def test_ctrl_c_cancels_an_import_half_way_and_leaves_nothing(node, debian_template, tmp_path):
    node.osctl("user", "new", "alice")
    node.osctl("ct", "new", "d1", "--user", "alice", "-t", "debian")
    archive = tmp_path / "d1.tar"
    node.osctl("ct", "export", "d1", str(archive), "-c", "none")
    spare_pool(node, tmp_path)
    before = what_there_is(node)

    # Into a pool without alice: she is made first, and goes again.
    p = subprocess.Popen([OSCTL, "--socket", str(node.socket), "ct", "import", str(archive),
                          "--pool", "spare"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    for line in p.stderr:  # type: ignore[union-attr]
        if "[rootfs] unpacking" in line:
            p.send_signal(signal.SIGINT)
            break
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "cancelling ct.import" in err, err
    assert what_there_is(node) == before
