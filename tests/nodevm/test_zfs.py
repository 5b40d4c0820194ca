"""ZFS pools on a real OpenZFS (2.3, idmapped mounts) in the node VM: the
pool on the VM's virtual disk, containers that start on idmapped datasets
(what root makes inside is uid 0 on disk), clones of the template's
snapshot that copy nothing, refquota seen by df and enforced, snapshots and
rollback, a subdataset inside with its own quota, pool export and import;
the daemon's default pool on zfs, a failed install that takes back what it
made (and only that), an uninstall of an image pool that leaves nothing.

The node VM's osctld of this module (the ``node_vm`` fixture); the tests
run in order on one pool and build on each other where that saves a start.
Requests go through ``node_vm.call`` (milliseconds), and the CLI once
(``pool show``)."""

from __future__ import annotations

import shlex

import pytest

from osctl.protocol import CONFLICT, OsctlError
from tests.helpers.nodevm import GUEST_OSCTLD_DIR, NodeVM

MIB = 1 << 20
ID_BASE = 200_000_000  # above the default pool's IDs
BLOCKS = 64 * 524288  # a pool's IDs
POOL, DATASET = "zt", "tank/osctld"
# The zpool on the VM's virtual disk, and the daemon's default pool on it.
NODE_VM_BEFORE_OSCTLD = f"zpool create -f -m none tank {NodeVM.zpool_disk}"
NODE_VM_OSCTLD = {"default_pool": {"backend": "zfs", "dataset": "tank/default"}}


def ct(name: str) -> str:
    return f"{POOL}:{name}"


def refused(vm, verb: str, args: dict) -> OsctlError:
    """The error osctld answers ``verb`` with (it must refuse)."""
    with pytest.raises(OsctlError) as e:
        vm.call(verb, args)
    return e.value


def zfs_value(vm, prop: str, dataset: str) -> str:
    return vm.run(f"zfs get -Hp -o value {prop} {dataset}", check=True).stdout.strip()


def df_total_used(vm, name: str, path: str = "/") -> tuple[int, int]:
    """What ``df -Pk PATH`` inside says: total and used bytes."""
    p = vm.exec(ct(name), f"df -Pk {shlex.quote(path)} | tail -n 1")  # -P: one line, however long the name
    assert p.rc == 0, p.stderr
    cols = p.stdout.split()
    return int(cols[1]) * 1024, int(cols[2]) * 1024


@pytest.fixture(scope="module")
def pool(node_vm):
    """Pool ``zt`` on dataset tank/osctld of the zpool on the VM's virtual
    disk, as ``osctl pool show`` prints it (the CLI's own path, once)."""
    vm = node_vm
    vm.call_all(("pool.install", {"name": POOL, "backend": "zfs", "dataset": DATASET, "id_base": ID_BASE}),
                ("user.new", {"name": "u", "pool": POOL}))
    return vm.osctl("pool", "show", POOL, json=True)


def test_a_pool_on_the_virtual_disk_says_its_zfs_and_uses_idmapped_mounts(node_vm, pool):
    assert (pool["backend"], pool["dataset"], pool["idmap"]) == ("zfs", DATASET, "idmapped")
    assert pool["zfs_version"].startswith("2.3"), pool
    assert zfs_value(node_vm, "mountpoint", DATASET) == "legacy"
    assert node_vm.run(f"findmnt -n -o FSTYPE,SOURCE {pool['path']}").stdout.split() == ["zfs", DATASET]


def test_the_default_pool_on_zfs_is_installed_as_the_config_says(node_vm):
    d = node_vm.call("pool.show", {"name": "default"})
    assert (d["backend"], d["dataset"], d["idmap"]) == ("zfs", "tank/default", "idmapped")
    assert node_vm.run(f"findmnt -n -o FSTYPE,SOURCE {d['path']}").stdout.split() == ["zfs", "tank/default"]


def test_a_failed_install_takes_back_what_it_made_and_only_that(node_vm, pool):
    """A later step fails (the pool's directory cannot be made: a read-only
    mount): the dataset it made is gone, the zpool root it was given (there
    before) is kept as it was, still imported; an image too small for a
    zpool leaves no file."""
    vm = node_vm
    ro = f"{GUEST_OSCTLD_DIR}/ro"
    before = vm.run("zfs get -Hp -o value,source mountpoint tank", check=True).stdout
    vm.run(f"mkdir -p {ro} && mount -t tmpfs -o ro none {ro}", check=True)
    try:
        for dataset in ("tank/made", "tank"):
            with pytest.raises(OsctlError):
                vm.call("pool.install", {"name": "zf", "backend": "zfs", "dataset": dataset,
                                         "path": f"{ro}/zf", "id_base": ID_BASE + 2 * BLOCKS})
    finally:
        vm.run(f"umount {ro}", check=True)
    with pytest.raises(OsctlError):
        vm.call("pool.install", {"name": "zf", "backend": "zfs", "image": f"{GUEST_OSCTLD_DIR}/zf.img",
                                 "size": "16M", "id_base": ID_BASE + 2 * BLOCKS})
    made, mountpoint, zpools, img = vm.run_all(
        "zfs list -H -o name tank/made tank/ct tank/tpl", "zfs get -Hp -o value,source mountpoint tank",
        "zpool list -H -o name", f"ls {GUEST_OSCTLD_DIR}/zf.img")
    assert made.stdout == "" and "does not exist" in made.stderr, made
    assert mountpoint.stdout == before
    assert zpools.stdout.split() == ["tank"] and img.rc != 0
    assert "zf" not in [p["name"] for p in vm.call("pool.ls")]


def test_busybox_is_a_cheap_clone_that_starts_idmapped(node_vm, pool):
    vm = node_vm
    vm.call("ct.new", {"id": "b1", "user": f"{POOL}:u"})
    ds = f"{DATASET}/ct/b1"
    origin, used = vm.run_all(f"zfs get -Hp -o value origin {ds}", f"zfs get -Hp -o value used {ds}", check=True)
    assert origin.stdout.strip() == f"{DATASET}/tpl/busybox-1@base"
    assert int(used.stdout) < MIB  # nothing copied: the template's blocks are shared
    rootfs = vm.call("ct.show", {"id": ct("b1")})["rootfs"]
    assert rootfs == f"{pool['path']}/ct/b1/rootfs"

    vm.call("ct.start", {"id": ct("b1")})
    assert vm.exec(ct("b1"), "touch /root/made-inside && stat -c %u:%g /root/made-inside").stdout.strip() == "0:0"
    assert vm.run(f"stat -c %u:%g {rootfs}/root/made-inside").stdout.strip() == "0:0"  # unshifted on disk
    assert int(vm.exec(ct("b1"), "cat /proc/self/uid_map").stdout.split()[1]) >= ID_BASE  # mapped
    assert vm.exec(ct("b1"), "ls -a /.zfs").rc != 0  # the dataset's root is not the container's


def test_refquota_is_what_df_shows_and_writing_past_it_fails(node_vm, pool):
    vm = node_vm
    vm.call("ct.new", {"id": "q1", "user": f"{POOL}:u", "disk": "32M"})
    assert int(zfs_value(vm, "refquota", f"{DATASET}/ct/q1")) == 32 * MIB
    vm.call("ct.start", {"id": ct("q1")})
    total, _ = df_total_used(vm, "q1")
    assert abs(total - 32 * MIB) < 2 * MIB, total
    p = vm.exec(ct("q1"), "dd if=/dev/urandom of=/root/fill bs=1M count=48 2>&1; sync")  # zeros compress
    assert "Disk quota exceeded" in p.stdout + p.stderr, p.stdout + p.stderr
    vm.call("ct.set", {"id": ct("q1"), "disk": "64M"})  # grows live
    assert abs(df_total_used(vm, "q1")[0] - 64 * MIB) < 2 * MIB
    e = refused(vm, "ct.set", {"id": ct("q1"), "disk": "8M"})
    assert e.code == CONFLICT and "below what" in e.message, e  # it holds ~32M
    assert int(zfs_value(vm, "refquota", f"{DATASET}/ct/q1")) == 64 * MIB
    vm.call("ct.del", {"id": ct("q1"), "force": True})
    assert vm.run(f"zfs list {DATASET}/ct/q1").rc != 0


def test_a_rollback_brings_a_deleted_file_back(node_vm, pool):
    vm = node_vm
    assert vm.exec(ct("b1"), "echo kept > /root/keep").rc == 0
    vm.call("ct.snapshot.new", {"id": ct("b1"), "name": "s1"})
    assert vm.exec(ct("b1"), "rm /root/keep").rc == 0
    snaps = vm.call("ct.snapshot.ls", {"id": ct("b1")})
    assert [s["name"] for s in snaps] == ["s1"] and snaps[0]["created"] > 0
    e = refused(vm, "ct.snapshot.rollback", {"id": ct("b1"), "name": "s1"})
    assert e.code == CONFLICT and "--restart" in e.message, e
    vm.call("ct.snapshot.rollback", {"id": ct("b1"), "name": "s1", "restart": True, "timeout": 5})
    assert vm.exec(ct("b1"), "cat /root/keep").stdout == "kept\n"
    vm.call("ct.snapshot.new", {"id": ct("b1"), "name": "s2"})
    e = refused(vm, "ct.snapshot.rollback", {"id": ct("b1"), "name": "s1", "restart": True})
    assert e.code == CONFLICT and "delete s2 first" in e.message, e
    vm.call_all(*(("ct.snapshot.del", {"id": ct("b1"), "name": s}) for s in ("s2", "s1")))
    assert vm.call("ct.snapshot.ls", {"id": ct("b1")}) == []


def test_a_subdataset_is_mounted_inside_with_its_own_quota(node_vm, pool):
    vm = node_vm
    if vm.call("ct.show", {"id": ct("b1")})["state"] != "running":
        vm.call("ct.start", {"id": ct("b1")})
    res = vm.call("ct.dataset.new", {"id": ct("b1"), "name": "www", "mountpoint": "/srv/www", "quota": "16M"})
    assert res["staged"] is None, res  # mounted at once
    total, _ = df_total_used(vm, "b1", "/srv/www")
    assert abs(total - 16 * MIB) < 2 * MIB, total
    assert vm.exec(ct("b1"), "touch /srv/www/index && stat -c %u /srv/www/index").stdout.strip() == "0"
    assert vm.run(f"stat -c %u {res['path']}/index").stdout.strip() == "0"
    p = vm.exec(ct("b1"), "dd if=/dev/urandom of=/srv/www/big bs=1M count=24 2>&1")
    assert "Disk quota exceeded" in p.stdout + p.stderr, p.stdout
    rows = vm.call("ct.dataset.ls", {"id": ct("b1")})
    assert [(r["name"], r["mountpoint"], r["quota"]) for r in rows] == [("www", "/srv/www", 16 * MIB)]

    vm.call("ct.snapshot.new", {"id": ct("b1"), "name": "both"})  # the rootfs and its dataset at once
    snaps = vm.run(f"zfs list -H -o name -t snapshot -r {DATASET}/ct/b1").stdout.split()
    assert snaps == [f"{DATASET}/ct/b1@both", f"{DATASET}/ct/b1/www@both"]
    e = refused(vm, "ct.del", {"id": ct("b1")})
    assert e.code == CONFLICT and "has snapshots (both)" in e.message, e
    vm.call("ct.snapshot.del", {"id": ct("b1"), "name": "both"})

    # A rename renames the datasets in ZFS; the dataset is still mounted inside.
    vm.call_all(("ct.stop", {"id": ct("b1"), "timeout": 5}),
                ("ct.rename", {"id": ct("b1"), "new_id": "b2"}),
                ("ct.start", {"id": ct("b2")}))
    assert vm.exec(ct("b2"), "test -e /srv/www/index").rc == 0
    assert vm.run(f"zfs list {DATASET}/ct/b2/www").rc == 0

    vm.call("ct.dataset.del", {"id": ct("b2"), "name": "www"})
    assert vm.exec(ct("b2"), "test -e /srv/www/index").rc != 0
    assert vm.run(f"zfs list {DATASET}/ct/b2/www").rc != 0


def test_debian_starts_on_zfs(node_vm, pool):
    vm = node_vm
    vm.call("ct.new", {"id": "d1", "user": f"{POOL}:u", "template": "debian"}, timeout=600)
    vm.call("ct.start", {"id": ct("d1"), "wait": True, "timeout": 300}, timeout=400)
    assert "ID=debian" in vm.exec(ct("d1"), "cat /etc/os-release").stdout
    rootfs = vm.call("ct.show", {"id": ct("d1")})["rootfs"]
    assert vm.exec(ct("d1"), "touch /root/deb && stat -c %u /root/deb").stdout.strip() == "0"
    assert vm.run(f"stat -c %u {rootfs}/root/deb").stdout.strip() == "0"
    vm.call("ct.stop", {"id": ct("d1"), "timeout": 30})


def test_export_and_import_bring_every_container_back(node_vm, pool):
    vm = node_vm
    path = pool["path"]
    vm.call("pool.export", {"name": POOL, "force": True})
    assert vm.run(f"findmnt {path}").rc != 0
    assert vm.run(f"grep -c ' {path}' /proc/mounts").stdout.strip() == "0"  # nothing below either
    vm.call("pool.import", {"path": path, "dataset": DATASET})
    cts = {c["id"]: c for c in vm.call("ct.ls", {"pool": POOL})}
    assert sorted(cts) == ["b2", "d1"]
    vm.call("ct.start", {"id": ct("b2")})
    assert vm.exec(ct("b2"), "cat /root/keep").stdout == "kept\n"

    # A pool on a zpool of its own (a file): export exports the zpool.
    vm.call_all(("pool.install", {"name": "zi", "backend": "zfs", "image": "/var/lib/zi.img", "size": "128M",
                                  "id_base": ID_BASE + BLOCKS}),
                ("user.new", {"name": "w", "pool": "zi"}))
    zi = vm.call("pool.show", {"name": "zi"})
    assert zi["dataset"] == "osctld-zi"
    vm.call("pool.export", {"name": "zi"})
    assert vm.run("zpool list osctld-zi").rc != 0
    vm.call("pool.import", {"path": zi["path"], "image": "/var/lib/zi.img", "dataset": "osctld-zi"})
    assert [u["name"] for u in vm.call("user.ls", {"pool": "zi"})] == ["w"]
    vm.call("pool.uninstall", {"name": "zi"})  # leaves nothing: no zpool, file, directory or mount
    zpool, img, where, mounts = vm.run_all("zpool list osctld-zi", "ls /var/lib/zi.img", f"ls -d {zi['path']}",
                                           f"grep -c ' {zi['path']}' /proc/mounts")
    assert zpool.rc != 0 and img.rc != 0 and where.rc != 0 and mounts.stdout.strip() == "0"
    assert "zi" not in [p["name"] for p in vm.call("pool.ls")]
