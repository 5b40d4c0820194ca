"""ZFS pools on a real OpenZFS (2.3, idmapped mounts) in the node VM: the
pool on the VM's virtual disk, containers that start on idmapped datasets
(what root makes inside is uid 0 on disk), clones of the template's
snapshot that copy nothing, refquota seen by df and enforced, snapshots and
rollback, a subdataset inside with its own quota, pool export and import.

One VM for the module (the ``node_vm`` fixture); the tests run in order on
one pool and build on each other where that saves a boot or a start."""

from __future__ import annotations

import shlex

import pytest

MIB = 1 << 20
ID_BASE = 200_000_000  # above the VM's default pool's IDs
POOL, DATASET = "zt", "tank/osctld"


def sh(vm, ct: str, script: str):
    return vm.osctl("ct", "exec", f"{POOL}:{ct}", "--", "sh", "-c", script, check=False)


def zfs_value(vm, prop: str, dataset: str) -> str:
    return vm.run(f"zfs get -Hp -o value {prop} {dataset}", check=True).stdout.strip()


def df_total_used(vm, ct: str, path: str = "/") -> tuple[int, int]:
    """What ``df -Pk PATH`` inside says: total and used bytes."""
    p = sh(vm, ct, f"df -Pk {shlex.quote(path)} | tail -n 1")  # -P: one line, however long the name
    assert p.rc == 0, p.stderr
    cols = p.stdout.split()
    return int(cols[1]) * 1024, int(cols[2]) * 1024


@pytest.fixture(scope="module")
def pool(node_vm):
    """Pool ``zt`` on dataset tank/osctld of a zpool on the VM's virtual disk."""
    vm = node_vm
    vm.run(f"zpool create -f -m none tank {vm.zpool_disk}", check=True)
    vm.osctl("pool", "install", POOL, "--backend", "zfs", "--dataset", DATASET,
             "--id-base", str(ID_BASE))
    vm.osctl("user", "new", "u", "--pool", POOL)
    return vm.osctl("pool", "show", POOL, json=True)


def test_a_pool_on_the_virtual_disk_says_its_zfs_and_uses_idmapped_mounts(node_vm, pool):
    assert (pool["backend"], pool["dataset"], pool["idmap"]) == ("zfs", DATASET, "idmapped")
    assert pool["zfs_version"].startswith("2.3"), pool
    assert zfs_value(node_vm, "mountpoint", DATASET) == "legacy"
    assert node_vm.run(f"findmnt -n -o FSTYPE,SOURCE {pool['path']}").stdout.split() == ["zfs", DATASET]


def test_busybox_is_a_cheap_clone_that_starts_idmapped(node_vm, pool):
    vm = node_vm
    vm.osctl("ct", "new", "b1", "--user", f"{POOL}:u")
    ds = f"{DATASET}/ct/b1"
    assert zfs_value(vm, "origin", ds) == f"{DATASET}/tpl/busybox-1@base"
    assert int(zfs_value(vm, "used", ds)) < MIB  # nothing copied: the template's blocks are shared
    rootfs = vm.osctl("ct", "show", f"{POOL}:b1", json=True)["rootfs"]
    assert rootfs == f"{pool['path']}/ct/b1/rootfs"

    vm.osctl("ct", "start", f"{POOL}:b1")
    assert sh(vm, "b1", "touch /root/made-inside && stat -c %u:%g /root/made-inside").stdout.strip() == "0:0"
    assert vm.run(f"stat -c %u:%g {rootfs}/root/made-inside").stdout.strip() == "0:0"  # unshifted on disk
    assert int(sh(vm, "b1", "cat /proc/self/uid_map").stdout.split()[1]) >= ID_BASE  # mapped
    assert sh(vm, "b1", "ls -a /.zfs").rc != 0  # the dataset's root is not the container's


def test_refquota_is_what_df_shows_and_writing_past_it_fails(node_vm, pool):
    vm = node_vm
    vm.osctl("ct", "new", "q1", "--user", f"{POOL}:u", "--disk", "32M")
    assert int(zfs_value(vm, "refquota", f"{DATASET}/ct/q1")) == 32 * MIB
    vm.osctl("ct", "start", f"{POOL}:q1")
    total, _ = df_total_used(vm, "q1")
    assert abs(total - 32 * MIB) < 2 * MIB, total
    p = sh(vm, "q1", "dd if=/dev/urandom of=/root/fill bs=1M count=48 2>&1; sync")  # zeros compress
    assert "Disk quota exceeded" in p.stdout + p.stderr, p.stdout + p.stderr
    vm.osctl("ct", "set", "disk", f"{POOL}:q1", "64M")  # grows live
    assert abs(df_total_used(vm, "q1")[0] - 64 * MIB) < 2 * MIB
    p = vm.osctl("ct", "set", "disk", f"{POOL}:q1", "8M", check=False)
    assert p.rc == 6 and "below what" in p.stderr, p.stderr  # conflict: it holds ~32M
    assert int(zfs_value(vm, "refquota", f"{DATASET}/ct/q1")) == 64 * MIB
    vm.osctl("ct", "del", f"{POOL}:q1", "--force")
    assert vm.run(f"zfs list {DATASET}/ct/q1").rc != 0


def test_a_rollback_brings_a_deleted_file_back(node_vm, pool):
    vm = node_vm
    assert sh(vm, "b1", "echo kept > /root/keep").rc == 0
    vm.osctl("ct", "snapshot", "new", f"{POOL}:b1", "s1")
    assert sh(vm, "b1", "rm /root/keep").rc == 0
    snaps = vm.osctl("ct", "snapshot", "ls", f"{POOL}:b1", json=True)
    assert [s["name"] for s in snaps] == ["s1"] and snaps[0]["created"] > 0
    p = vm.osctl("ct", "snapshot", "rollback", f"{POOL}:b1", "s1", check=False)
    assert p.rc == 6 and "--restart" in p.stderr, p.stderr
    vm.osctl("ct", "snapshot", "rollback", f"{POOL}:b1", "s1", "--restart", "-t", "5")
    assert sh(vm, "b1", "cat /root/keep").stdout == "kept\n"
    vm.osctl("ct", "snapshot", "new", f"{POOL}:b1", "s2")
    p = vm.osctl("ct", "snapshot", "rollback", f"{POOL}:b1", "s1", "--restart", check=False)
    assert p.rc == 6 and "delete s2 first" in p.stderr, p.stderr
    for s in ("s2", "s1"):
        vm.osctl("ct", "snapshot", "del", f"{POOL}:b1", s)
    assert vm.osctl("ct", "snapshot", "ls", f"{POOL}:b1", json=True) == []


def test_a_subdataset_is_mounted_inside_with_its_own_quota(node_vm, pool):
    vm = node_vm
    if vm.osctl("ct", "show", f"{POOL}:b1", json=True)["state"] != "running":
        vm.osctl("ct", "start", f"{POOL}:b1")
    res = vm.osctl("ct", "dataset", "new", f"{POOL}:b1", "www", "--mountpoint", "/srv/www",
                   "--quota", "16M", json=True)
    assert res["staged"] is None, res  # mounted at once
    total, _ = df_total_used(vm, "b1", "/srv/www")
    assert abs(total - 16 * MIB) < 2 * MIB, total
    assert sh(vm, "b1", "touch /srv/www/index && stat -c %u /srv/www/index").stdout.strip() == "0"
    assert vm.run(f"stat -c %u {res['path']}/index").stdout.strip() == "0"
    p = sh(vm, "b1", "dd if=/dev/urandom of=/srv/www/big bs=1M count=24 2>&1")
    assert "Disk quota exceeded" in p.stdout + p.stderr, p.stdout
    rows = vm.osctl("ct", "dataset", "ls", f"{POOL}:b1", json=True)
    assert [(r["name"], r["mountpoint"], r["quota"]) for r in rows] == [("www", "/srv/www", 16 * MIB)]

    vm.osctl("ct", "snapshot", "new", f"{POOL}:b1", "both")  # the rootfs and its dataset at once
    snaps = vm.run(f"zfs list -H -o name -t snapshot -r {DATASET}/ct/b1").stdout.split()
    assert snaps == [f"{DATASET}/ct/b1@both", f"{DATASET}/ct/b1/www@both"]
    p = vm.osctl("ct", "del", f"{POOL}:b1", check=False)
    assert p.rc == 6 and "has snapshots (both)" in p.stderr, p.stderr
    vm.osctl("ct", "snapshot", "del", f"{POOL}:b1", "both")

    # A rename renames the datasets in ZFS; the dataset is still mounted inside.
    vm.osctl("ct", "stop", f"{POOL}:b1", "-t", "5")
    vm.osctl("ct", "rename", f"{POOL}:b1", "b2")
    vm.osctl("ct", "start", f"{POOL}:b2")
    assert sh(vm, "b2", "test -e /srv/www/index").rc == 0
    assert vm.run(f"zfs list {DATASET}/ct/b2/www").rc == 0

    vm.osctl("ct", "dataset", "del", f"{POOL}:b2", "www")
    assert sh(vm, "b2", "test -e /srv/www/index").rc != 0
    assert vm.run(f"zfs list {DATASET}/ct/b2/www").rc != 0


def test_debian_starts_on_zfs(node_vm, pool):
    vm = node_vm
    vm.osctl("ct", "new", "d1", "--user", f"{POOL}:u", "--template", "debian", timeout=600)
    vm.osctl("ct", "start", f"{POOL}:d1", "--wait", "--timeout", "300", timeout=400)
    assert "ID=debian" in sh(vm, "d1", "cat /etc/os-release").stdout
    rootfs = vm.osctl("ct", "show", f"{POOL}:d1", json=True)["rootfs"]
    assert sh(vm, "d1", "touch /root/deb && stat -c %u /root/deb").stdout.strip() == "0"
    assert vm.run(f"stat -c %u {rootfs}/root/deb").stdout.strip() == "0"
    vm.osctl("ct", "stop", f"{POOL}:d1", "-t", "30")


def test_export_and_import_bring_every_container_back(node_vm, pool):
    vm = node_vm
    path = pool["path"]
    vm.osctl("pool", "export", POOL, "--force")
    assert vm.run(f"findmnt {path}").rc != 0
    assert vm.run(f"grep -c ' {path}' /proc/mounts").stdout.strip() == "0"  # nothing below either
    vm.osctl("pool", "import", path, "--dataset", DATASET)
    cts = {c["id"]: c for c in vm.osctl("ct", "ls", "--pool", POOL, json=True)}
    assert sorted(cts) == ["b2", "d1"]
    vm.osctl("ct", "start", f"{POOL}:b2")
    assert sh(vm, "b2", "cat /root/keep").stdout == "kept\n"

    # A pool on a zpool of its own (a file): export exports the zpool.
    vm.osctl("pool", "install", "zi", "--backend", "zfs", "--image", "/var/lib/zi.img",
             "--size", "128M", "--id-base", str(ID_BASE + 64 * 524288))
    vm.osctl("user", "new", "w", "--pool", "zi")
    zi = vm.osctl("pool", "show", "zi", json=True)
    assert zi["dataset"] == "osctld-zi"
    vm.osctl("pool", "export", "zi")
    assert vm.run("zpool list osctld-zi").rc != 0
    vm.osctl("pool", "import", zi["path"], "--image", "/var/lib/zi.img", "--dataset", "osctld-zi")
    assert [u["name"] for u in vm.osctl("user", "ls", "--pool", "zi", json=True)] == ["w"]
    vm.osctl("pool", "uninstall", "zi")
    assert vm.run("zpool list osctld-zi").rc != 0 and vm.run("test -e /var/lib/zi.img").rc != 0
