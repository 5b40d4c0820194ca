"""The zfs backend's own logic, without ZFS: where each path's data is,
how Debian's libzfs_core is found, and what it refuses before it asks ZFS
(the real thing: tests/nodevm/test_zfs.py)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import types
from pathlib import Path

import pytest

from osctl.protocol import CONFLICT, EXISTS, INVALID, UNSUPPORTED, OsctlError
from osctld.model.pool import Pool
from osctld.storage import backend_for, base, lzc, zfs
from osctld.undo import Undo


@pytest.fixture
def backend(tmp_path):
    return backend_for(Pool("z", "zfs", tmp_path / "z", dataset="tank/osctld"))


class FakeLzc(types.ModuleType):
    """The calls made, in order; ``exists`` answers from ``datasets``."""

    def __init__(self, datasets=()):
        super().__init__(lzc.NAME)
        self.calls: list[tuple] = []
        self.datasets = set(datasets)

    def __getattr__(self, name):
        if not name.startswith("lzc_"):
            raise AttributeError(name)
        return lambda *a, **kw: self.calls.append((name, *a))

    def lzc_exists(self, name: bytes) -> bool:
        return name.decode() in self.datasets


@pytest.fixture
def fake(monkeypatch, backend):
    """libzfs_core and the zfs command, answering from tables."""
    mod = FakeLzc()
    monkeypatch.setitem(sys.modules, lzc.NAME, mod)
    answers: dict[tuple, str] = {}
    ran: list[tuple] = []

    async def run(*argv, what):
        ran.append(argv)
        return answers.get(argv[:3], "")
    monkeypatch.setattr(zfs, "run", run)
    return types.SimpleNamespace(lzc=mod, answers=answers, ran=ran)


def test_each_path_has_its_dataset_and_mountpoint(backend):
    p = backend.pool.path
    assert backend.place(p / "ct" / "web1" / "rootfs") == ("tank/osctld/ct/web1", p / "ct" / "web1", "rootfs")
    assert backend.place(p / "ct" / "web1") == ("tank/osctld/ct/web1", p / "ct" / "web1", "")
    # A template's build starts with a dot, which a dataset's name is not given.
    assert backend.place(p / "tpl" / ".busybox-1.build")[0] == "tank/osctld/tpl/_busybox-1.build"
    assert backend.mountpoint("tank/osctld/tpl/_busybox-1.build") == p / "tpl" / ".busybox-1.build"
    assert backend.mountpoint("tank/osctld/ct/web1/www") == p / "ct" / "web1" / "datasets" / "www"
    assert backend.mountpoint("tank/osctld") == p
    assert backend.mountpoint("tank/osctld/ct") is None  # a parent, mounted nowhere
    for plain in (p / "vm" / "v1", p / "ct" / "web1" / "send" / "s1", Path("/elsewhere")):
        assert backend.place(plain) is None
    with pytest.raises(OsctlError) as e:
        backend.ct_dataset(p / "vm" / "v1")
    assert e.value.code == INVALID


def test_libzfs_core_is_loaded_from_dist_packages_alone(tmp_path, monkeypatch):
    """Only the package is taken from there, its relative imports working;
    a neighbour in the same directory stays out of reach."""
    dist = tmp_path / "dist-packages"
    (dist / lzc.NAME).mkdir(parents=True)
    (dist / lzc.NAME / "__init__.py").write_text("from ._consts import ANSWER\n")
    (dist / lzc.NAME / "_consts.py").write_text("ANSWER = 42\n")
    (dist / "neighbour.py").write_text("")
    monkeypatch.delitem(sys.modules, lzc.NAME, raising=False)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(dist)])
    try:
        assert lzc.load(dist).ANSWER == 42
        assert lzc.load(dist) is sys.modules[lzc.NAME]
        assert str(dist) not in sys.path
        with pytest.raises(ImportError):
            __import__("neighbour")
    finally:
        sys.modules.pop(lzc.NAME, None)


def test_without_libzfs_core_the_backend_is_unsupported(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, lzc.NAME, raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # not in this Python
    with pytest.raises(OsctlError) as e:
        lzc.load(tmp_path)
    assert e.value.code == UNSUPPORTED and "python3-pyzfs" in e.value.message


def test_a_rollback_to_an_older_snapshot_is_refused_naming_the_later_ones(backend, fake):
    rootfs = backend.pool.rootfs("web1")
    fake.answers[("zfs", "list", "-Hp")] = ("tank/osctld/ct/web1@a\t1700000000\t4096\n"
                                           "tank/osctld/ct/web1@b\t1700000100\t0\n")
    snaps = asyncio.run(backend.snap_list(rootfs))
    assert [(s.name, s.created, s.used) for s in snaps] == [("a", 1700000000, 4096), ("b", 1700000100, 0)]
    with pytest.raises(OsctlError) as e:
        asyncio.run(backend.snap_rollback(rootfs, "a"))
    assert e.value.code == CONFLICT and "delete b first" in e.value.message
    assert not any(c[0] == "lzc_rollback_to" for c in fake.lzc.calls)


def test_a_snapshot_takes_the_container_and_its_subdatasets_at_once(backend, fake):
    fake.answers[("zfs", "list", "-H")] = "tank/osctld/ct/web1\ntank/osctld/ct/web1/www\n"
    asyncio.run(backend.snap_new(backend.pool.rootfs("web1"), "s1"))
    assert fake.lzc.calls == [("lzc_snapshot", [b"tank/osctld/ct/web1@s1", b"tank/osctld/ct/web1/www@s1"])]


def test_a_quota_below_what_the_dataset_holds_is_refused(backend, fake):
    fake.answers[("zfs", "get", "-Hp")] = "5000000"
    rootfs = backend.pool.rootfs("web1")
    with pytest.raises(OsctlError) as e:
        asyncio.run(backend.set_quota(rootfs, 4_000_000))
    assert e.value.code == CONFLICT and ("zfs", "set", "refquota=4000000", "tank/osctld/ct/web1") not in fake.ran
    asyncio.run(backend.set_quota(rootfs, 6_000_000))
    asyncio.run(backend.set_quota(rootfs, None))
    assert fake.ran[-2:] == [("zfs", "set", "refquota=6000000", "tank/osctld/ct/web1"),
                             ("zfs", "set", "refquota=none", "tank/osctld/ct/web1")]


def test_a_clone_moves_the_template_tree_into_the_rootfs_subdirectory(tmp_path):
    root = tmp_path / "ct1"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("tpl\n")
    (root / "bin").symlink_to("usr/bin")
    os.chmod(root, 0o755)
    zfs._into_subdir(root, "rootfs")
    assert sorted(p.name for p in root.iterdir()) == ["rootfs"]
    assert (root / "rootfs" / "etc" / "hostname").read_text() == "tpl\n"
    assert os.readlink(root / "rootfs" / "bin") == "usr/bin"
    assert (root / "rootfs").stat().st_mode & 0o777 == 0o755 and root.stat().st_mode & 0o777 == 0o700


def test_a_pool_names_its_dataset_on_this_node_only(tmp_path):
    pool = Pool("z", "zfs", tmp_path, dataset="tank/osctld")
    assert pool.node_entry()["dataset"] == "tank/osctld" and "dataset" not in pool.to_dict()
    for bad in ("tank@snap", "/tank", "tank//x", "tank/x y", "1tank"):
        with pytest.raises(OsctlError):
            Pool("z", "zfs", tmp_path, dataset=bad)


def test_dir_pools_have_no_snapshots_nor_datasets(tmp_path):
    backend = backend_for(Pool("d", "dir", tmp_path))
    for call in (backend.need_snapshots, backend.need_subdatasets):
        with pytest.raises(OsctlError) as e:
            call()
        assert e.value.code == UNSUPPORTED


class Zpools:
    """libzfs_core, the zfs and zpool commands and mount over a table of
    datasets (name -> mountpoint property, or None where inherited): enough
    ZFS to install a pool and roll that back. Unmounting a pool's path hides
    its conf (one pool's, in the tests below)."""

    def __init__(self, monkeypatch, zpools=("tank",), datasets=()):
        self.zpools = set(zpools)
        self.datasets: dict[str, str | None] = {z: None for z in zpools} | dict(datasets)
        self.ran: list[tuple] = []
        self.mounted: set[str] = set()
        monkeypatch.setattr(os.path, "ismount", lambda p: str(p) in self.mounted)
        lzc_mod = FakeLzc()
        lzc_mod.lzc_exists = lambda name: name.decode() in self.datasets
        lzc_mod.lzc_create = lambda name, props: self.datasets.__setitem__(
            name.decode(), props[b"mountpoint"].decode())
        lzc_mod.lzc_destroy = lambda name: self.datasets.pop(name.decode())
        monkeypatch.setitem(sys.modules, lzc.NAME, lzc_mod)
        monkeypatch.setattr(zfs, "run", self.run)
        monkeypatch.setattr(base, "run", self.run)  # new_image's
        monkeypatch.setattr(zfs, "run_tool", self.run_tool)

    async def run_tool(self, *argv):
        self.ran.append(argv)
        return (0 if argv[-1] in self.zpools else 1), ""

    async def run(self, *argv, what):
        self.ran.append(argv)
        match argv:
            case ("zfs", "list", *_, "-t", "snapshot", "-r", _):
                return ""
            case ("zfs", "list", *_, "-r", top):
                return "\n".join(sorted(d for d in self.datasets if d == top or d.startswith(top + "/")))
            case ("zfs", "get", "-Hp", "-o", "value,source", "mountpoint", ds):
                mp = self.datasets[ds]
                return f"{mp}\tlocal" if mp else f"/{ds}\tdefault"
            case ("zfs", "set", prop, ds):
                self.datasets[ds] = prop.split("=", 1)[1]
            case ("zfs", "inherit", "mountpoint", ds):
                self.datasets[ds] = None
            case ("zpool", "create", *_, zpool, _):
                self.zpools.add(zpool)
                self.datasets[zpool] = "none"
            case ("umount", where):  # what the dataset holds goes out of sight
                self.mounted.discard(where)
                if (Path(where) / "conf").is_dir():
                    (Path(where) / "conf").rename(Path(where).with_name(".unmounted-conf"))
            case ("mount", "-t", "zfs", _, where):
                self.mounted.add(where)
                if Path(where).with_name(".unmounted-conf").is_dir():
                    Path(where).with_name(".unmounted-conf").rename(Path(where) / "conf")
            case ("zpool", "destroy", "-f", zpool):
                self.zpools.discard(zpool)
                for d in [d for d in self.datasets if d.split("/")[0] == zpool]:
                    del self.datasets[d]
        return ""


def install(backend, size=None, then_fail=False):
    """Install as the command does, in an Undo; ``then_fail``: a later step
    of the command fails (the RuntimeError is expected)."""
    async def go():
        async with Undo() as undo:
            await backend.install(size, undo)
            if then_fail:
                raise RuntimeError("a later step")
    if not then_fail:
        return asyncio.run(go())
    with pytest.raises(RuntimeError):
        asyncio.run(go())


def test_a_failed_install_destroys_the_dataset_it_made_and_nothing_more(backend, monkeypatch):
    zp = Zpools(monkeypatch)
    install(backend, then_fail=True)
    assert zp.datasets == {"tank": None}
    assert not backend.pool.path.exists() and not zp.mounted
    install(backend)  # and when nothing fails, it is all there
    assert zp.datasets == {"tank": None, "tank/osctld": "legacy", "tank/osctld/ct": "legacy",
                           "tank/osctld/tpl": "legacy"}


def test_a_failed_install_on_a_dataset_that_was_there_keeps_it_as_it_was(backend, monkeypatch):
    for mountpoint in ("/srv/osctld", None):  # set locally, or inherited
        zp = Zpools(monkeypatch, datasets={"tank/osctld": mountpoint})
        install(backend, then_fail=True)
        assert zp.datasets == {"tank": None, "tank/osctld": mountpoint} and not zp.mounted
        assert not any(a[:2] == ("zpool", "destroy") for a in zp.ran)


def test_a_dataset_holding_a_pool_is_refused_and_left_as_it_was(backend, monkeypatch):
    zp = Zpools(monkeypatch, datasets={"tank/osctld": "legacy", "tank/osctld/ct": "legacy",
                                       "tank/osctld/tpl": "legacy"})
    held = backend.pool.path.with_name(".unmounted-conf")  # in the dataset, seen once it is mounted
    held.mkdir(parents=True)
    (held / "pool.yml").write_text("name: old\n")
    with pytest.raises(OsctlError) as e:
        install(backend)
    assert e.value.code == EXISTS and "osctl pool import" in e.value.message
    assert (held / "pool.yml").read_text() == "name: old\n" and not zp.mounted
    assert len(zp.datasets) == 4


def test_install_needs_the_zpool_and_the_datasets_parent(backend, tmp_path, monkeypatch):
    zp = Zpools(monkeypatch, zpools=())
    with pytest.raises(OsctlError) as e:
        install(backend)
    assert e.value.code == INVALID and "there is no zpool tank" in e.value.message
    deep = backend_for(Pool("z", "zfs", tmp_path / "d", dataset="tank/a/osctld"))
    zp = Zpools(monkeypatch)
    with pytest.raises(OsctlError) as e:
        install(deep)
    assert e.value.code == INVALID and "no zfs dataset tank/a " in e.value.message
    assert zp.datasets == {"tank": None} and not (tmp_path / "d").exists()


def test_a_failed_install_on_an_image_destroys_its_zpool_and_file(tmp_path, monkeypatch):
    image = tmp_path / "zi.img"
    backend = backend_for(Pool("zi", "zfs", tmp_path / "zi", image, dataset="osctld-zi"))
    zp = Zpools(monkeypatch, zpools=())
    install(backend, 64 << 20, then_fail=True)
    assert zp.zpools == set() and zp.datasets == {} and not image.exists()
    assert not (tmp_path / "zi").exists()


def test_a_zfs_default_pool_installs_on_its_dataset_or_says_why_not(tmp_path, monkeypatch):
    from osctld import pools
    from osctld.config import Config

    with pytest.raises(ValueError, match="needs dataset: POOL/PATH"):
        Config(default_pool={"backend": "zfs"})
    with pytest.raises(ValueError, match="dataset is for backend zfs"):
        Config(default_pool={"dataset": "tank/osctld"})
    config = Config(state_dir=tmp_path, default_pool={"backend": "zfs", "dataset": "tank/osctld"})
    node = types.SimpleNamespace(config=config, registry=types.SimpleNamespace(pools={}),
                                 pools=types.SimpleNamespace(save=lambda: None))
    zp = Zpools(monkeypatch, zpools=())
    with pytest.raises(OsctlError) as e:
        asyncio.run(pools._install_default(node))
    assert e.value.code == INVALID and e.value.message.startswith(
        "the default pool default (zfs, config default_pool) cannot be installed: there is no zpool tank")
    assert not (tmp_path / "pools" / "default").exists() and node.registry.pools == {}
    zp = Zpools(monkeypatch)
    asyncio.run(pools._install_default(node))
    assert node.registry.pools["default"].pool.dataset == "tank/osctld"
    assert zp.datasets["tank/osctld"] == "legacy"
    # Exported, then this daemon restarted with no pool in its list: taken back.
    del node.registry.pools["default"]
    asyncio.run(zfs.ZfsBackend(Pool("default", "zfs", tmp_path / "pools" / "default",
                                    dataset="tank/osctld")).deactivate())
    assert not (tmp_path / "pools" / "default" / "conf").exists()
    asyncio.run(pools._install_default(node))
    assert node.registry.pools["default"].pool.dataset == "tank/osctld"
