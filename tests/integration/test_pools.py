"""Pools hold their own configuration: export, then import, brings back every
user and container with the same IDs and maps, and the containers' data."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from tests.conftest import require
from tests.helpers.node import BLOCK


def subid_lines(kind: str = "subuid") -> list[str]:
    return Path(f"/etc/{kind}").read_text().splitlines()


def snapshot(node, pool: str) -> tuple[dict, dict]:
    users = {u["name"]: u for u in node.osctl_json("user", "ls", "--pool", pool)}
    for u in users.values():
        u.pop("containers")
    cts = {c["id"]: node.osctl_json("ct", "show", f"{pool}:{c['id']}")
           for c in node.osctl_json("ct", "ls", "--pool", pool)}
    for c in cts.values():  # what runs, not what is kept
        for key in ("state", "init_pid", "limits_in_force", "usage"):
            c.pop(key, None)
    return users, cts


def export_import_round_trip(node, pool: str, *import_args: str) -> None:
    """Export (stopping what runs), check the node forgot it, import it again."""
    users, cts = snapshot(node, pool)
    path = node.osctl_json("pool", "show", pool)["path"]
    lines = [f"root:{u['root_uid']}:" for u in users.values()]

    def counts(kind: str = "subuid") -> list[int]:
        """How many lines of each user's (another node may hold the same range)."""
        have = subid_lines(kind)
        return [sum(ln.startswith(pre) for ln in have) for pre in lines]

    held = counts(), counts("subgid")

    p = node.osctl("pool", "export", pool, check=False)
    assert p.returncode == 6 and "running containers" in p.stderr  # refused: one runs
    node.osctl("pool", "export", pool, "--force")
    assert pool not in {p["name"] for p in node.osctl_json("pool", "ls")}
    assert (counts(), counts("subgid")) == tuple([n - 1 for n in c] for c in held)
    assert not any((node.run_dir / "lxc" / pool / ct).exists() for ct in cts)

    imported = node.osctl_json("pool", "import", path, *import_args)
    assert imported["name"] == pool and imported["users"] == len(users)
    assert snapshot(node, pool) == (users, cts)
    assert (counts(), counts("subgid")) == held


def test_dir_pool_export_import(node):
    node.osctl("user", "new", "alice")
    explicit = f"0:{node.id_base + 40 * BLOCK}:65536"
    node.osctl("user", "new", "bob", "--map", explicit)
    node.osctl("ct", "new", "c1", "--user", "alice")
    node.osctl("ct", "new", "c2", "--user", "bob", "--hostname", "c2.example.org")
    node.osctl("ct", "set", "autostart", "c2", "on")
    node.osctl("ct", "start", "c1")
    assert node.exec("c1", "sh", "-c", "echo kept > /root/data").returncode == 0

    export_import_round_trip(node, "default")

    assert node.osctl_json("user", "show", "bob")["uid_map"] == [explicit]
    c2 = node.osctl_json("ct", "show", "c2")
    assert (c2["hostname"], c2["autostart"]) == ("c2.example.org", True)
    ct = node.osctl_json("ct", "start", "c1")
    assert os.stat(f"/proc/{ct['init_pid']}").st_uid == node.osctl_json("user", "show", "alice")["root_uid"]
    assert node.exec("c1", "cat", "/root/data").stdout == "kept\n"
    # The id-range goes on where it stopped: the next block is the one after alice's.
    assert node.osctl_json("user", "new", "carol")["root_uid"] == node.id_base + BLOCK
    # And the history of the pool kept its lines across the move.
    cmds = [h["cmd"] for h in node.osctl_json("history", "-n", "0")]
    assert cmds.index("pool.export") < len(cmds) - 1 and "ct.new" in cmds


def test_btrfs_pool_on_a_loop_image(node):
    require(None if shutil.which("mkfs.btrfs") else "mkfs.btrfs missing (btrfs-progs)")
    image = node.dir / "fast.img"
    base = node.id_base + 32 * BLOCK
    pool = node.osctl_json("pool", "install", "fast", "--backend", "btrfs", "--image", str(image),
                           "--size", "1G", "--id-base", str(base))
    path = Path(pool["path"])
    assert pool["backend"] == "btrfs" and pool["idmap"] in ("idmapped", "chown")
    assert os.path.ismount(path) and image.stat().st_size == 1 << 30
    shown = node.osctl_json("pool", "show", "fast")
    assert shown["idmap"] == pool["idmap"]
    # Its space is its image's: 1G, a little of it used by btrfs itself.
    assert 0.9 * (1 << 30) < shown["size"] <= 1 << 30 and shown["free"] < shown["size"]
    assert 0 < shown["used"] < shown["size"] / 10

    assert node.osctl_json("user", "new", "dave", "--pool", "fast")["root_uid"] == base
    node.osctl("ct", "new", "b1", "--user", "fast:dave")
    table = node.osctl("pool", "show", "fast").stdout  # a person reads units
    assert re.search(r"^size:?\s+(1024M|1G|10[0-2]\dM|9\d\dM)$", table, re.M | re.I), table
    assert node.osctl_json("pool", "show", "fast")["used"] > shown["used"]  # the rootfs
    rootfs = Path(node.osctl_json("ct", "show", "b1")["rootfs"])
    assert rootfs.is_relative_to(path)
    assert os.stat(rootfs).st_ino == 256  # a subvolume: a snapshot of the template's
    node.osctl("ct", "start", "b1")
    assert node.exec("b1", "sh", "-c", "echo kept > /root/data").returncode == 0

    export_import_round_trip(node, "fast", "--image", str(image))
    assert os.path.ismount(path)

    node.osctl("ct", "start", "b1")
    assert node.exec("b1", "cat", "/root/data").stdout == "kept\n"
    node.osctl("pool", "export", "fast", "--force")
    assert not os.path.ismount(path)


def test_zfs_needs_a_dataset_and_without_zfs_leaves_nothing(node):
    """This node has no ZFS (the node VM tests it: tests/nodevm/test_zfs.py)."""
    p = node.osctl("pool", "install", "z", "--backend", "zfs", check=False)
    assert p.returncode == 2 and "--dataset POOL/PATH" in p.stderr, p.stderr
    p = node.osctl("pool", "install", "z", "--backend", "zfs", "--dataset", "tank@x", check=False)
    assert p.returncode == 2 and "invalid zfs dataset" in p.stderr, p.stderr
    p = node.osctl("pool", "install", "z", "--backend", "zfs", "--dataset", "tank/z", check=False)
    assert p.returncode != 0 and ("libzfs_core" in p.stderr or "zfs" in p.stderr), p.stderr
    assert [p["name"] for p in node.osctl_json("pool", "ls")] == ["default"]
    assert not (node.state_dir / "pools" / "z").exists()


def test_pool_uninstall_refused_while_it_holds_servers_and_leaves_nothing(node):
    require(None if shutil.which("mkfs.btrfs") else "mkfs.btrfs missing (btrfs-progs)")
    image, spare = node.dir / "gone.img", node.dir / "spare"
    node.osctl("pool", "install", "gone", "--backend", "btrfs", "--image", str(image), "--size", "1G",
               "--id-base", str(node.id_base + 32 * BLOCK))
    spare.mkdir()
    (spare / "theirs").write_text("not osctld's\n")  # a dir pool in a directory that holds more
    node.osctl("pool", "install", "spare", "--path", str(spare), "--id-base", str(node.id_base + 48 * BLOCK))
    for pool in ("gone", "spare"):
        node.osctl("user", "new", "erin", "--pool", pool)
        node.osctl("ct", "new", "e1", "--user", f"{pool}:erin")
        node.osctl("ct", "start", f"{pool}:e1")
    gone_path = Path(node.osctl_json("pool", "show", "gone")["path"])
    lines = [f"root:{node.osctl_json('user', 'show', f'{p}:erin')['root_uid']}:" for p in ("gone", "spare")]
    assert all(any(ln.startswith(pre) for ln in subid_lines()) for pre in lines)

    p = node.osctl("pool", "uninstall", "gone", check=False)
    assert p.returncode == 6 and "holds containers or VMs (e1)" in p.stderr, p.stderr
    assert node.osctl_json("ct", "show", "gone:e1")["state"] == "running" and os.path.ismount(gone_path)

    for pool in ("gone", "spare"):
        node.osctl("ct", "del", f"{pool}:e1", "--force")
        node.osctl("pool", "uninstall", pool)
    assert [p["name"] for p in node.osctl_json("pool", "ls")] == ["default"]
    assert not image.exists() and not gone_path.exists()
    assert sorted(x.name for x in spare.iterdir()) == ["theirs"]
    assert not any(ln.startswith(pre) for ln in subid_lines() for pre in lines)
    node.restart()  # and it stays gone
    assert [p["name"] for p in node.osctl_json("pool", "ls")] == ["default"]
