"""What a killed daemon leaves in a pool, repaired at the next start: the
two configs of an interrupted ``ct rename``, the rootfs beside another of
an interrupted ``ct reinstall``."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from osctld import orphans
from osctld.model.container import Container
from osctld.model.idmap import IdRange
from osctld.model.maintenance import Maintenance
from osctld.model.pool import Pool
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
