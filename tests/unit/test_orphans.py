"""What a killed daemon leaves in a pool, repaired at the next start: the
two configs of an interrupted ``ct rename``, the rootfs beside another of
an interrupted ``ct reinstall``, a deleted VM's replica passes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

from osctld import orphans
from osctld.model.container import Container
from osctld.model.idmap import IdRange
from osctld.model.maintenance import Maintenance
from osctld.model.pool import Pool, vm_of_passes
from osctld.model.vm import VM
from osctld.state import PoolState
from osctld.storage.dir import DirBackend


def _pool(tmp_path) -> PoolState:
    return PoolState(Pool("tank", "dir", tmp_path / "tank"), IdRange())


def _clean(pstate: PoolState, tmp_path) -> None:
    lxc = SimpleNamespace(lxcpath=lambda pool: tmp_path / "lxc" / pool,
                          ct_dir=lambda pool, ct_id: tmp_path / "lxc" / pool / ct_id)
    asyncio.run(orphans.clean_pool(pstate, DirBackend(pstate.pool), SimpleNamespace(lxc=lxc)))


def test_a_rename_cut_short_keeps_the_config_whose_data_is_there(tmp_path):
    pstate = _pool(tmp_path)
    old = Container(id="web1", pool="tank", user="alice", distribution="busybox", version="1",
                    created=1234.5)
    new = Container(**{**old.to_dict(), "id": "shop1"}, pool="tank")
    other = Container(id="db1", pool="tank", user="alice", distribution="busybox", version="1")
    for ct in (old, new, other):
        pstate.cts[ct.id] = ct
        pstate.save_ct(ct)
    (pstate.pool.rootfs("shop1") / "root").mkdir(parents=True)  # the directory was renamed
    pstate.pool.rootfs("db1").mkdir(parents=True)
    m = Maintenance(kind="ct", machine="web1", pool="tank", group="/default", starts=0, ends=1,
                    estimated_duration=60, activities=[], old={}, announced=0)
    pstate.maintenances[m.id] = m
    assert orphans.interrupted_renames(pstate) == [("web1", "shop1")]
    _clean(pstate, tmp_path)
    assert sorted(pstate.cts) == ["db1", "shop1"] and (pstate.pool.rootfs("shop1") / "root").is_dir()
    assert sorted(p.stem for p in (pstate.pool.conf_dir / "ct").iterdir()) == ["db1", "shop1"]
    assert m.machine == "shop1"


def test_a_reinstall_cut_short_puts_the_old_rootfs_back_or_drops_the_spare(tmp_path):
    pstate = _pool(tmp_path)
    for ct_id in ("between", "after"):
        ct = Container(id=ct_id, pool="tank", user="alice", distribution="busybox", version="1")
        pstate.cts[ct_id] = ct
        pstate.save_ct(ct)
    rootfs = pstate.pool.rootfs("between")
    (rootfs.with_name("rootfs.old") / "root").mkdir(parents=True)  # old moved away, new not in
    (rootfs.with_name("rootfs.new") / "root").mkdir(parents=True)
    done = pstate.pool.rootfs("after")
    (done / "new").mkdir(parents=True)  # the new one in place, the old one not yet removed
    done.with_name("rootfs.old").mkdir()
    _clean(pstate, tmp_path)
    assert sorted(p.name for p in rootfs.parent.iterdir()) == ["rootfs"] and (rootfs / "root").is_dir()
    assert sorted(p.name for p in done.parent.iterdir()) == ["rootfs"] and (done / "new").is_dir()


def _vm(pstate: PoolState, vm_id: str) -> VM:
    vm = VM(id=vm_id, pool="tank", user="alice", template="tinyvm", version="1", cores=1,
            memory=1 << 28, disk=1 << 30)
    pstate.vms[vm_id] = vm
    pstate.save_vm(vm)
    return vm


def test_a_replicas_passes_go_when_their_vm_is_not_here_at_either_end(tmp_path):
    """A VM deleted (or a replica cancelled) by a daemon killed half way
    leaves its replica's passes: they go at the next start. Those of a VM
    here (on the standby: the staged replica, a VM with a destination send
    log) stay, whichever end they are."""
    pstate = _pool(tmp_path)
    _vm(pstate, "kept.1")
    vm_dir = pstate.pool.path / "vm"
    for vm_id in ("gone.1", "kept.1"):
        for p in pstate.pool.passes("vm", vm_id):
            (p / "s1").mkdir(parents=True)  # a btrfs pass (a snapshot), or a tar pass's files
            (p / "disk.img").write_bytes(b"x")
    (vm_dir / ".notes").mkdir()  # no VM's passes: not osctld's to remove
    _clean(pstate, tmp_path)
    assert sorted(p.name for p in vm_dir.iterdir()) == [
        ".kept.1.recv", ".kept.1.recv.new", ".kept.1.recv.old", ".kept.1.send", ".notes"]
    assert (vm_dir / ".kept.1.recv" / "s1").is_dir()


def test_which_vm_an_entry_of_the_vm_directory_holds_passes_of():
    assert [vm_of_passes(n) for n in (".v1.send", ".v1.recv", ".a.b.recv.new", ".v1.recv.old")] \
        == ["v1", "v1", "a.b", "v1"]
    assert [vm_of_passes(n) for n in ("v1", ".send", ".v1.snap", "v1.send", ".v1.new")] == [None] * 5
    pool = Pool("tank", "btrfs", Path("/p"))
    assert [str(p) for p in pool.passes("vm", "v1")] == [
        "/p/vm/.v1.send", "/p/vm/.v1.recv", "/p/vm/.v1.recv.new", "/p/vm/.v1.recv.old"]
    assert pool.passes("ct", "c1")[:2] == (Path("/p/ct/c1/send"), Path("/p/ct/c1/recv"))
