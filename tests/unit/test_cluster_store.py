"""The cluster's I/O side without etcd: the ``cluster:`` config, a lone node
that never imports the etcd client, the record store's compare-and-swap
over a fake etcd that another writer races, the task queue's round trip,
and the dispatcher's refusal of a command about another node's instance."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from osctl import protocol
from osctld.cluster.errors import EtcdUnavailable
from osctld.cluster.etcd import KV
from osctld.cluster.membership import Membership
from osctld.cluster.store import ClusterStore, Conflict, Excluded
from osctld.cluster.tasks import TaskRunner, call, task
from osctld.commands import load_all
from osctld.config import ClusterConfig, Config
from osctld.model.cluster import InstanceRecord, NodeRecord, Size

from ..helpers.peer import Peer
from .test_dispatch import Node as DispatchNode

GOOD = {"endpoints": ["http://198.51.100.10:2379"], "node": "n1", "address": "198.51.100.10"}


@pytest.mark.parametrize("bad, words", [
    ({"endpoints": []}, "list of etcd URLs"),
    ({"endpoints": ["198.51.100.10:2379"]}, "not http(s)://host:port"),
    ({"node": "Bad Name"}, "cluster.node"),
    ({"node": "n" * 56}, "up to 55"),
    ({"address": "node1"}, "IP address"),
    ({"lease_ttl": 1}, "lease_ttl must be an integer from 2"),
    ({"fence_margin": True}, "fence_margin"),
    ({"leader": "n1"}, "unknown keys: leader"),
])
def test_a_bad_cluster_section_stops_the_daemon_with_what_is_wrong(bad, words):
    with pytest.raises(ValueError, match=None) as e:
        Config(cluster={**GOOD, **bad})
    assert words in str(e.value)


def test_without_a_cluster_section_the_node_never_loads_the_etcd_client():
    code = ("import sys; from osctld.config import Config; import osctld.daemon; "
            "from osctld.commands import load_all; load_all(); "
            "assert Config().cluster is None; print('etcd3gw' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


class FakeEtcd:
    """The calls ClusterStore makes, on a dict, with revisions as etcd keeps
    them; ``before_swap`` runs once before the next swap (a racing writer)."""

    def __init__(self):
        self.kvs: dict[str, KV] = {}
        self.rev = 0
        self.before_swap = None

    async def call(self, fn, *args):
        return fn(*args)

    def get(self, key):
        return self.kvs.get(key)

    def get_prefix(self, prefix):
        return [kv for k, kv in sorted(self.kvs.items()) if k.startswith(prefix)]

    def put(self, key, value, lease=0):
        self.rev += 1
        old = self.kvs.get(key)
        self.kvs[key] = KV(key, value, self.rev, old.create_revision if old else self.rev, lease)

    def create(self, key, value, lease=0):
        if key in self.kvs:
            return False
        self.put(key, value, lease)
        return True

    def put_if_absent(self, key, value, absent):
        if absent in self.kvs:
            return False
        self.put(key, value)
        return True

    def swap(self, key, value, mod_revision, present=None, absent=None):
        if self.before_swap:
            racer, self.before_swap = self.before_swap, None
            racer()
        kv = self.kvs.get(key)
        if kv is None or kv.mod_revision != mod_revision:
            return False
        if present is not None and present not in self.kvs or absent in self.kvs:
            return False
        if value is None:
            del self.kvs[key]
        else:
            self.put(key, value)
        return True

    def delete(self, key):
        return self.kvs.pop(key, None) is not None

    def grant(self, ttl):
        return 1

    def leader(self, name):
        return None


def rec(node="n1", **kw) -> InstanceRecord:
    return InstanceRecord(kind="ct", id="web", node=node, size=Size(1, 1 << 30, 0), **kw)


def test_an_update_that_loses_a_race_is_made_again_on_the_newer_record():
    etcd = FakeEtcd()
    store = ClusterStore(etcd)  # type: ignore[arg-type]
    asyncio.run(store.create_instance(rec()))
    seen = []

    def set_standby(r):
        seen.append(r.standby)
        return InstanceRecord(**{**r.__dict__, "node": "n2", "standby": r.standby})

    # Another node sets the standby between our read and our swap.
    etcd.before_swap = lambda: etcd.put("/osctld/instances/ct/web", rec(standby="n3").to_json())
    out = asyncio.run(store.update_instance("ct/web", set_standby))
    assert seen == [None, "n3"]  # read again after the lost swap
    assert out.node == "n2" and out.standby == "n3"
    assert asyncio.run(store.instance("ct/web")) == out


def test_an_update_can_delete_or_leave_a_record_and_gives_up_on_endless_races():
    etcd = FakeEtcd()
    store = ClusterStore(etcd)  # type: ignore[arg-type]
    assert asyncio.run(store.create_instance(rec())) is None
    assert asyncio.run(store.create_instance(rec(node="n2"))).node == "n1"  # taken there
    same = asyncio.run(store.update_instance("ct/web", lambda r: r))
    assert same == rec() and etcd.rev == 1  # nothing written
    assert asyncio.run(store.update_instance("ct/web", lambda r: None)) is None
    assert etcd.kvs == {}
    asyncio.run(store.create_instance(rec()))

    def racer():
        etcd.put("/osctld/instances/ct/web", rec().to_json())
        etcd.before_swap = racer

    etcd.before_swap = racer
    with pytest.raises(Conflict):
        asyncio.run(store.update_instance("ct/web", lambda r: rec(node="n9")))


def test_an_update_at_a_revision_leaves_a_record_changed_since():
    """The leader's recovery is done on the record it decided on: one a
    node claimed back in between (a write: a new revision) is left as it is."""
    etcd = FakeEtcd()
    store = ClusterStore(etcd)  # type: ignore[arg-type]
    asyncio.run(store.create_instance(rec(ha=True, standby="n2")))
    read = asyncio.run(store.view()).revisions["ct/web"]
    assert read == etcd.kvs["/osctld/instances/ct/web"].mod_revision
    etcd.put("/osctld/instances/ct/web", rec(ha=True, standby="n2", claimed_at=9.0).to_json())
    out = asyncio.run(store.update_instance("ct/web", lambda r: rec(node="n2"), at=read))
    assert out.node == "n1" and out.claimed_at == 9.0
    now = asyncio.run(store.view()).revisions["ct/web"]
    assert asyncio.run(store.update_instance("ct/web", lambda r: rec(node="n2"), at=now)).node == "n2"
    # A swap that loses a race against a claim reads again and sees a new revision.
    etcd.before_swap = lambda: etcd.put("/osctld/instances/ct/web", rec(node="n2", claimed_at=1.0).to_json())
    at = etcd.kvs["/osctld/instances/ct/web"].mod_revision
    assert asyncio.run(store.update_instance("ct/web", lambda r: rec(node="n3"), at=at)).node == "n2"


@task("test.echo")
async def echo(node, args, progress):
    progress("half way")
    if args.get("fail"):
        raise protocol.OsctlError(protocol.CONFLICT, "it cannot")
    return {"echo": args["say"], "on": node}


def test_a_task_runs_on_its_node_and_its_value_or_error_comes_back():
    async def main():
        store = ClusterStore(FakeEtcd())  # type: ignore[arg-type]
        runner = TaskRunner(store, "n2", "node-two")  # type: ignore[arg-type]
        job = asyncio.create_task(runner.run())
        said = []
        try:
            value = await call(store, "n2", "test.echo", {"say": "hi"}, by="n1",
                               progress=said.append)
            assert value == {"echo": "hi", "on": "node-two"}
            with pytest.raises(protocol.OsctlError) as e:
                await call(store, "n2", "test.echo", {"say": "x", "fail": True}, by="n1")
            assert (e.value.code, e.value.message) == (protocol.CONFLICT, "it cannot")
            with pytest.raises(protocol.OsctlError) as e:
                await call(store, "n2", "no.such.task", {}, by="n1")
            assert "knows no task" in e.value.message
            assert store.etcd.get_prefix("/osctld/tasks/") == []  # each taken once
        finally:
            job.cancel()
    asyncio.run(main())


class Where:
    """A node's cluster membership as the dispatcher asks it."""

    def where(self, kind, id):
        return "n2" if (kind, id) == ("ct", "web") else None


def test_a_command_about_an_instance_of_another_node_names_that_node():
    load_all()

    async def main():
        node = DispatchNode("default")
        node.cluster = Where()
        peer = Peer(node)
        there = await peer.call(1, "ct.show", id="web")
        assert there["error"]["code"] == "not_found", there
        assert there["error"]["message"] == "container web lives on node n2: run ct.show there"
        missing = await peer.call(2, "ct.show", id="nowhere")
        assert "n2" not in missing["error"]["message"]
    asyncio.run(main())


def test_a_node_cut_off_from_etcd_is_told_its_fencing_deadline_once_and_when_it_is_back():
    etcd = FakeEtcd()
    down = {"now": False}

    def refresh(lease):
        if down["now"]:
            raise EtcdUnavailable("no etcd endpoint answered")
        return 2

    etcd.refresh = refresh
    cfg = ClusterConfig(**GOOD, lease_ttl=2, fence_margin=1)
    record = NodeRecord("n1", "198.51.100.10", "online", 2, 1 << 30, 1 << 30)
    membership = Membership(ClusterStore(etcd), cfg, lambda: record)  # type: ignore[arg-type]
    said: list = []

    async def lost(deadline):
        said.append(("lost", round(deadline - membership.last_ok, 3)))

    async def back():
        said.append(("back",))

    membership.on_lease_lost.append(lost)
    membership.on_lease_regained.append(back)

    async def main():
        job = asyncio.create_task(membership.run())
        await asyncio.sleep(0.3)
        assert membership.alive and "/osctld/nodes/n1" in etcd.kvs
        assert json.loads(etcd.kvs["/osctld/node-state/n1"].value)["state"] == "online"
        down["now"] = True
        await asyncio.sleep(2.2)  # three refreshes fail; the hook is called once
        down["now"] = False
        await asyncio.sleep(1.0)
        job.cancel()
    asyncio.run(main())
    assert said == [("lost", 3.0), ("back",)]


def test_a_lease_etcd_still_keeps_after_its_stall_is_taken_again_and_an_expired_one_is_not():
    """etcd extends every lease when it elects a new leader: a node whose
    refreshes failed for longer than the TTL (etcd's leader member gone)
    keeps its lease, so the HA instances it killed start again (same lease)."""
    for alive in (True, False):
        etcd = FakeEtcd()
        down = {"now": False}
        leases = iter(range(7, 99))

        def answer(value):
            if down["now"]:
                raise EtcdUnavailable("no etcd endpoint answered")
            return value

        etcd.grant = lambda ttl: answer(next(leases))
        etcd.refresh = lambda lease: answer(2 if alive or lease != 7 else -1)
        cfg = ClusterConfig(**GOOD, lease_ttl=2, fence_margin=1)
        record = NodeRecord("n1", "198.51.100.10", "online", 2, 1 << 30, 1 << 30)
        membership = Membership(ClusterStore(etcd), cfg, lambda: record)  # type: ignore[arg-type]
        back: list = []

        async def regained():
            back.append(membership.lease)

        membership.on_lease_regained.append(regained)

        async def main():
            job = asyncio.create_task(membership.run())
            await asyncio.sleep(0.2)
            assert membership.lease == 7
            down["now"] = True
            await asyncio.sleep(2.6)  # past the TTL: given up here
            assert membership.lease is None
            down["now"] = False
            await asyncio.sleep(0.8)
            job.cancel()
        asyncio.run(main())
        assert back == ([7] if alive else [8])


def test_a_placed_creation_that_fails_on_its_node_takes_its_record_back():
    from types import SimpleNamespace

    from osctld.commands import Context
    from osctld.commands.cluster import create_on

    load_all()
    etcd = FakeEtcd()
    etcd.leader = lambda name: KV("osctld-leader/1", "n1", 1, 1)
    store = ClusterStore(etcd)  # type: ignore[arg-type]
    for name, memory in (("n1", 1 << 30), ("n2", 4 << 30)):
        etcd.put(f"/osctld/nodes/{name}",
                 NodeRecord(name, "198.51.100.1", "online", 2, memory, 10 << 30).to_json())
    cluster = SimpleNamespace(name="n1", store=store, leader=SimpleNamespace(is_leader=True))
    # n2 has no pools: its ct.new fails there, after the leader wrote the record.
    node = SimpleNamespace(cluster=cluster, registry=None)
    said: list = []

    async def main():
        jobs = [asyncio.create_task(TaskRunner(store, n, node).run())  # type: ignore[arg-type]
                for n in ("n1", "n2")]
        try:
            with pytest.raises(protocol.OsctlError) as e:
                await create_on(Context(node=node, op="t", progress=said.append),  # type: ignore[arg-type]
                                "ct", "web", Size(1, 1 << 30, 0), "auto", None,
                                {"id": "web", "user": "alice"})
            assert e.value.code == protocol.INTERNAL and "on node n2" in e.value.message
        finally:
            for job in jobs:
                job.cancel()
    asyncio.run(main())
    assert [d["message"] for d in said][:2] == ["asking the leader, node n1, where", "on node n2"]
    assert etcd.get_prefix("/osctld/instances/") == []  # taken back


def test_a_lost_node_is_marked_fenced_only_while_its_key_is_gone():
    # The leader's mark after a recovery must not land on a node that came
    # back meanwhile (it set itself online: "fenced" would stay, and when it
    # is lost again no leader would recover its instances).
    etcd = FakeEtcd()
    store = ClusterStore(etcd)  # type: ignore[arg-type]
    node = NodeRecord("n1", "10.0.0.1", "online", 2, 1 << 30, 1 << 30, 0.0)

    async def run():
        assert await store.mark_fenced("n1")  # gone: marked
        assert (await store.view()).nodes["n1"].state == "fenced"
        await store.put_node(node, 1)  # back
        await store.set_node_state("n1", "online")
        assert not await store.mark_fenced("n1")
        assert (await store.view()).nodes["n1"].state == "online"

    asyncio.run(run())


def test_a_claim_needs_its_nodes_key_and_a_take_over_its_absence():
    """The claim and the recovery's take-over exclude each other on the
    node's key, in the compare-and-swap's transaction: whatever the leader
    read, at most one of them is written (Excluded, the record unchanged)."""
    etcd = FakeEtcd()
    store = ClusterStore(etcd)  # type: ignore[arg-type]

    async def run():
        await store.create_instance(rec(ha=True, standby="n2"))
        at = etcd.kvs["/osctld/instances/ct/web"].mod_revision
        with pytest.raises(Excluded):  # n1 gone: no claim
            await store.update_instance("ct/web", lambda r: rec(claimed_at=1.0), member="n1")
        await store.put_node(NodeRecord("n1", "192.0.2.1", "online", 2, 1 << 30, 1 << 30), 1)
        with pytest.raises(Excluded):  # n1 back: no take-over, even at the revision decided on
            await store.update_instance("ct/web", lambda r: rec(node="n2"), at=at, not_member="n1")
        assert etcd.kvs["/osctld/instances/ct/web"].mod_revision == at
        claimed = await store.update_instance("ct/web", lambda r: rec(claimed_at=1.0), member="n1")
        assert claimed.claimed_at == 1.0

    asyncio.run(run())
