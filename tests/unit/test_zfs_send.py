"""ZFS send/receive passes without ZFS: what a pass snapshots and sends,
what the destination receives and takes back when a stream fails, and the
pipe between libzfs_core and the SSH channel (the real thing, between two
nodes: tests/nodevm/test_zfs_send.py)."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import types

import pytest

from osctl.protocol import CONFLICT, INTERNAL, INVALID, OsctlError
from osctld.model.pool import Pool
from osctld.storage import backend_for, lzc, zfs
from osctld.transfer import channel, streams

CT = "tank/osctld/ct/web1"
FLAGS = {"embedded_data", "large_blocks", "compress", "raw"}  # the binding's: str


class ZfsError(Exception):
    """What the binding raises (its module decides: ``zfs.call`` maps it)."""


ZfsError.__module__ = lzc.NAME


class SimZfs(types.ModuleType):
    """A few datasets and snapshots, and the libzfs_core calls made on them."""

    def __init__(self, datasets=(), snapshots=()):
        super().__init__(lzc.NAME)
        self.datasets, self.snapshots = set(datasets), set(snapshots)
        self.calls: list[tuple] = []
        self.fail_receive: str | None = None

    def lzc_exists(self, name: bytes) -> bool:
        n = name.decode()
        return n in self.datasets or n in self.snapshots

    def lzc_snapshot(self, snaps):
        self.calls.append(("lzc_snapshot", list(snaps)))
        self.snapshots |= {s.decode() for s in snaps}

    def lzc_destroy_snaps(self, snaps, defer):
        self.calls.append(("lzc_destroy_snaps", sorted(snaps)))
        self.snapshots -= {s.decode() for s in snaps}

    def lzc_destroy(self, name):
        self.calls.append(("lzc_destroy", name))
        self.datasets.discard(name.decode())

    def lzc_send(self, snap, base, fd, flags):
        assert set(flags) <= FLAGS, flags
        self.calls.append(("lzc_send", snap, base))

    def lzc_send_space(self, snap, base, flags):
        assert set(flags) <= FLAGS, flags
        return 4096 if base else 1 << 20

    def lzc_receive(self, snap, fd, force=False):
        self.calls.append(("lzc_receive", snap, force))
        name = snap.decode()
        if name == self.fail_receive:
            raise ZfsError("stream ended early")
        self.datasets.add(name.split("@")[0])
        self.snapshots.add(name)


@pytest.fixture
def backend(tmp_path):
    return backend_for(Pool("z", "zfs", tmp_path / "z", dataset="tank/osctld"))


@pytest.fixture
def sim(monkeypatch):
    """libzfs_core and ``zfs list`` on one simulated zpool."""
    mod = SimZfs()
    monkeypatch.setitem(sys.modules, lzc.NAME, mod)

    async def run(*argv, what):
        if argv[:2] != ("zfs", "list"):
            return ""
        top, kind = argv[-1], argv[argv.index("-t") + 1]
        names = mod.snapshots if kind == "snapshot" else mod.datasets
        return "\n".join(sorted(n for n in names if n.split("@")[0] == top
                                or n.startswith(top + "/")))
    monkeypatch.setattr(zfs, "run", run)
    return mod


def test_a_pass_snapshots_all_datasets_at_once_and_sends_new_ones_whole(backend, sim):
    rootfs = backend.pool.rootfs("web1")
    sim.datasets |= {CT, f"{CT}/www", f"{CT}/db"}
    sim.snapshots |= {f"{CT}@_send-s1", f"{CT}/www@_send-s1"}  # db is new since s1
    plan = asyncio.run(backend.send_snapshot(rootfs, "s2", "s1"))
    assert plan == [["", True], ["db", False], ["www", True]]
    assert sim.calls == [("lzc_snapshot", [f"{d}@_send-s2".encode()
                                           for d in (CT, f"{CT}/db", f"{CT}/www")])]
    asyncio.run(backend.send_streams(rootfs, "s2", "s1", plan, 1))
    assert sim.calls[1:] == [("lzc_send", f"{CT}@_send-s2".encode(), f"{CT}@_send-s1".encode()),
                             ("lzc_send", f"{CT}/db@_send-s2".encode(), None),
                             ("lzc_send", f"{CT}/www@_send-s2".encode(), f"{CT}/www@_send-s1".encode())]
    assert asyncio.run(backend.send_size(rootfs, "s2", "s1", plan)) == 2 * 4096 + (1 << 20)


def test_the_destination_receives_in_order_then_drops_the_base_and_what_the_source_dropped(backend, sim):
    rootfs = backend.pool.rootfs("web1")
    sim.datasets |= {CT, f"{CT}/old"}
    sim.snapshots |= {f"{CT}@_send-s1", f"{CT}/old@_send-s1", f"{CT}@mine"}
    asyncio.run(backend.receive_streams(rootfs, "s2", "s1", [["", True], ["www", False]], 0))
    assert [c for c in sim.calls if c[0] == "lzc_receive"] == [
        ("lzc_receive", f"{CT}@_send-s2".encode(), True),
        ("lzc_receive", f"{CT}/www@_send-s2".encode(), False)]
    assert sim.datasets == {CT, f"{CT}/www"}  # "old" went on the source
    assert sim.snapshots == {f"{CT}@_send-s2", f"{CT}/www@_send-s2", f"{CT}@mine"}


def test_a_failed_full_pass_leaves_no_dataset_and_a_failed_incremental_no_new_snapshot(backend, sim):
    rootfs = backend.pool.rootfs("web1")
    sim.fail_receive = f"{CT}/www@_send-s1"
    with pytest.raises(OsctlError) as e:
        asyncio.run(backend.receive_streams(rootfs, "s1", None, [["", False], ["www", False]], 0))
    assert e.value.code == INTERNAL and "stream ended early" in e.value.message
    assert sim.datasets == set() and sim.snapshots == set()

    sim.datasets, sim.snapshots = {CT, f"{CT}/www"}, {f"{CT}@_send-s1", f"{CT}/www@_send-s1"}
    sim.fail_receive = f"{CT}/www@_send-s2"
    with pytest.raises(OsctlError):
        asyncio.run(backend.receive_streams(rootfs, "s2", "s1", [["", True], ["www", True]], 0))
    assert sim.datasets == {CT, f"{CT}/www"}
    assert sim.snapshots == {f"{CT}@_send-s1", f"{CT}/www@_send-s1"}  # the base is kept


def test_a_first_pass_is_not_received_over_a_dataset_that_is_there(backend, sim):
    sim.datasets |= {CT}
    with pytest.raises(OsctlError) as e:
        asyncio.run(backend.receive_streams(backend.pool.rootfs("web1"), "s1", None, [["", False]], 0))
    assert e.value.code == CONFLICT and sim.datasets == {CT}
    assert not [c for c in sim.calls if c[0] != "lzc_exists"]


@pytest.mark.parametrize("plan", [
    [], [["www", False]], [["", True]],  # the container's dataset first; full without a parent
    [["", False], ["../x", False]], [["", False], "www"], [["", False], ["www", 1]],
])
def test_a_bad_plan_is_refused_before_anything_is_received(backend, sim, plan):
    with pytest.raises(OsctlError) as e:
        asyncio.run(backend.receive_streams(backend.pool.rootfs("web1"), "s1", None, plan, 0))
    assert e.value.code == INVALID
    assert sim.calls == []


def test_a_sends_snapshots_are_not_the_tenants(backend, sim, monkeypatch):
    async def run(*argv, what):
        return f"{CT}@a\t1700000000\t4096\n{CT}@_send-s3\t1700000100\t0\n"
    monkeypatch.setattr(zfs, "run", run)
    rootfs = backend.pool.rootfs("web1")
    assert [s.name for s in asyncio.run(backend.snap_list(rootfs))] == ["a"]
    with pytest.raises(OsctlError) as e:
        asyncio.run(backend.snap_rollback(rootfs, "a"))
    assert e.value.code == CONFLICT and "being sent or replicated" in e.value.message


# --- the pipe between the writer and the channel ------------------------------------

def _blocking_writer(size: int):
    """Writes ``size`` bytes from a thread, as lzc_send does; its outcome."""
    outcome: dict = {}

    async def write(fd: int) -> None:
        def send():
            try:
                view = memoryview(b"z" * size)
                while view:
                    view = view[os.write(fd, view):]
                outcome["ok"] = True
            except OSError as e:
                outcome["errno"] = e.errno
                raise
            finally:
                outcome["thread"] = threading.current_thread().name
        await asyncio.to_thread(send)
    return write, outcome


def test_the_stream_reaches_the_destination_whole(monkeypatch):
    async def call(node, dest, verb, args, stdin, progress):
        data = b""
        while chunk := await asyncio.to_thread(os.read, stdin, 65536):
            data += chunk
        return {"got": len(data)}
    monkeypatch.setattr(channel, "call", call)
    write, outcome = _blocking_writer(3 << 20)
    reply = asyncio.run(streams.send_stream(None, "d", "v", {}, write, lambda n: None))
    assert reply == {"got": 3 << 20} and outcome["ok"]


def test_a_destination_that_fails_stops_the_writer_and_its_error_is_raised(monkeypatch):
    async def call(node, dest, verb, args, stdin, progress):
        await asyncio.to_thread(os.read, stdin, 10)
        raise OsctlError(INTERNAL, "d: zfs receive failed")
    monkeypatch.setattr(channel, "call", call)
    write, outcome = _blocking_writer(16 << 20)  # far more than the pipe holds
    fds = len(os.listdir("/proc/self/fd"))
    with pytest.raises(OsctlError) as e:
        asyncio.run(streams.send_stream(None, "d", "v", {}, write, lambda n: None))
    assert e.value.message == "d: zfs receive failed"
    assert outcome.get("errno") == 32  # EPIPE: the writer ended before send_stream did
    assert len(os.listdir("/proc/self/fd")) == fds  # both ends closed


def test_a_containers_own_datasets_are_mounted_from_where_they_land_here(backend, tmp_path):
    """The sender's config names its own node's paths; on another pool (or
    ``--as-id``) they would be missing, or another container's."""
    from osctld.commands.ct_send import datasets_here
    from osctld.model.mount import Mount

    theirs = "/tank/a/ct/m1/rootfs"
    bind = Mount("/srv/shared", "/shared")
    data = Mount("/tank/a/ct/m1/datasets/data", "/data", idmapped=True)
    here = tmp_path / "ct" / "m2" / "rootfs"
    moved = datasets_here([bind, data], theirs, here, backend, "zfs")
    assert moved == [bind, Mount(str(tmp_path / "ct" / "m2" / "datasets" / "data"), "/data", idmapped=True)]
    assert datasets_here([bind, data], None, here, backend, "zfs") == [bind, data]  # no rootfs said
    dir_pool = backend_for(Pool(name="d", path=tmp_path, backend="dir"))
    for where, stream in ((backend, "rsync"), (dir_pool, "zfs")):  # rsync stays in the rootfs
        with pytest.raises(OsctlError, match="dataset data .* only to a zfs pool"):
            datasets_here([bind, data], theirs, here, where, stream)
    assert datasets_here([bind], theirs, here, dir_pool, "rsync") == [bind]
