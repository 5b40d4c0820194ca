"""Self-fencing (cluster/fencing.on_lease_lost), with a fake node: a
lease refreshed again before its TTL ran out kills nothing (one slow
refresh on a loaded node must not stop a tenant); one not refreshed in
time has its HA instances killed before the deadline, and regaining that
same lease afterwards starts them again only once the kills are over; one
that expired meanwhile has them claimed back first (exactly one of the claim
and the leader's recovery wins; one refused on a record set anew while
the node stayed away is decided again). A daemon started again kills what
the records placed elsewhere while it was away."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from types import SimpleNamespace

from osctl.protocol import CONFLICT, OsctlError
from osctld import startup
from osctld.cluster import decide, recovery
from osctld.cluster.agent import ClusterAgent
from osctld.cluster.fencing import Fenced, on_lease_lost, on_lease_regained, on_start
from osctld.cluster.errors import EtcdUnavailable
from osctld.cluster.store import ClusterStore, Conflict, Excluded
from osctld.model.cluster import InstanceRecord, NodeRecord, Size
from osctld.node import Node

from .test_cluster_store import FakeEtcd


@dataclass
class FakeInstance:
    id: str
    kind: str = "ct"
    pool: str = "p"
    running: bool = True


@dataclass
class FakeNode:
    """What fencing touches: the cluster agent, the registry, the driver."""

    lease: int | None = 7
    events: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        ha = InstanceRecord("ct", "web", "n1", Size(1, 1 << 30, 1 << 30), ha=True, standby="n2")
        plain = InstanceRecord("ct", "db", "n1", Size(1, 1 << 30, 1 << 30))
        self.instances = {"web": FakeInstance("web"), "db": FakeInstance("db")}
        joined = asyncio.Event()
        joined.set()
        self.cluster = SimpleNamespace(
            name="n1", config=SimpleNamespace(fence_margin=0.3),
            records={"ct/web": ha, "ct/db": plain},
            membership=SimpleNamespace(lease=self.lease, lost=True, joined=joined,
                                       alive=self.lease is not None),
            store=SimpleNamespace(node_states=self._states))
        self.cluster.claim = lambda ikey: ClusterAgent.claim(self.cluster, ikey)  # type: ignore[arg-type]
        self.cluster.claim_to_start = lambda kind, id, noun: ClusterAgent.claim_to_start(
            self.cluster, kind, id, noun)  # type: ignore[arg-type]
        self.registry = SimpleNamespace(instance=lambda kind, id: (None, self.instances[id]),
                                        pools={"p": None})

    async def _states(self) -> dict:
        return {}

    def driver(self, kind: str):
        async def stop(inst, timeout, kill=False):
            await asyncio.sleep(0.2)  # a kill takes a while
            inst.running = False
            self.events.append(f"killed {inst.id}")
        return SimpleNamespace(keep_stopped=lambda pool, inst: None, stop=stop)


def test_a_lease_refreshed_in_time_kills_nothing():
    async def scenario(node: FakeNode) -> None:
        lost = asyncio.ensure_future(on_lease_lost(node, Fenced(), time.monotonic() + 0.8))
        await asyncio.sleep(0.2)
        node.cluster.membership.lost = False  # a good refresh of the same lease
        await lost

    node = FakeNode()
    asyncio.run(scenario(node))
    assert node.events == [] and all(i.running for i in node.instances.values())


def test_not_refreshed_in_time_its_ha_instances_are_killed_by_the_deadline():
    node = FakeNode()
    deadline = time.monotonic() + 0.8
    asyncio.run(on_lease_lost(node, Fenced(), deadline))
    assert node.events == ["killed web"] and time.monotonic() < deadline + 0.05
    assert node.instances["db"].running  # not HA: nobody starts it elsewhere


def test_an_expired_lease_is_fenced_at_once():
    node = FakeNode(lease=None)
    start = time.monotonic()
    asyncio.run(on_lease_lost(node, Fenced(), start + 10))
    assert node.events == ["killed web"] and time.monotonic() - start < 1


def test_the_same_lease_regained_during_the_kill_starts_again_after_it():
    started = []

    async def start(kind, id):
        started.append((id, node.instances[id].running))
        node.instances[id].running = True

    async def scenario() -> None:
        fenced = Fenced()
        lost = asyncio.ensure_future(on_lease_lost(node, fenced, time.monotonic() + 0.5))
        await asyncio.sleep(0.25)  # the kill is under way
        node.cluster.membership.lost = False
        await asyncio.gather(lost, on_lease_regained(node, fenced, SimpleNamespace(start=start)))

    node = FakeNode()
    asyncio.run(scenario())
    assert node.events == ["killed web"] and started == [("web", False)]
    assert node.instances["web"].running


def test_killed_under_a_lease_that_expired_it_is_claimed_back_before_it_starts():
    """Back with a new lease before the leader recovered it: the node's
    claim (a write) wins over a recovery decided on the record as it was
    before (its revision), and the node starts it; the other order: the
    recovery wins, the claim finds the record on the standby, and the node
    does not start its copy. Exactly one start either way."""
    for claim_first in (True, False):
        starts = asyncio.run(_claim_and_recovery_race(claim_first))
        assert starts == (["n1"] if claim_first else ["n2"]), claim_first


async def _claim_and_recovery_race(claim_first: bool) -> list[str]:
    store = ClusterStore(FakeEtcd())  # type: ignore[arg-type]
    node = FakeNode(lease=8)  # lease 7 expired; the node joined again with 8
    node.instances["web"].running = False  # killed when it fenced itself
    await store.create_instance(node.cluster.records["ct/web"])
    node.cluster.store = store
    view = replace(await store.view(), nodes={
        "n1": NodeRecord("n1", "192.0.2.1", "offline", 4, 8 << 30, 100 << 30),
        "n2": NodeRecord("n2", "192.0.2.2", "online", 4, 8 << 30, 100 << 30)})
    (step,) = decide.recovery_plan(view, "n1", time.time(), {"ct/web": 1.0})  # the leader's read
    starts: list[str] = []

    async def start(kind, id):
        starts.append("n1")

    async def recover(kind, id):
        starts.append("n2")
        return {"data_age": 1.0, "started": True}

    standby = SimpleNamespace(name="n2", store=store)
    act = SimpleNamespace(unrecoverable=lambda kind, id: None, recover=recover)

    async def recovered() -> None:
        try:
            await recovery.recover_here(standby, step, act)  # type: ignore[arg-type]
        except OsctlError as e:
            assert "not recovered" in e.message

    async def back() -> None:
        await store.put_node(_member("n1"), 8)
        node.cluster.membership.lost = False
        await on_lease_regained(node, Fenced(killed={"ct/web": 7}), SimpleNamespace(start=start))

    for turn in ((back, recovered) if claim_first else (recovered, back)):
        await turn()
    return starts


def test_a_daemon_started_again_kills_its_copies_recovered_elsewhere_and_claims_the_rest():
    """osctld was away longer than the TTL and the margin, its containers
    running on: ct/web (HA) was recovered on n2 meanwhile and is killed
    here, its files kept; ct/db (not HA, its record here) runs on; ct/app
    (HA, its record still here) is claimed back, so a recovery decided
    before the node rejoined fails."""
    async def scenario(node: FakeNode) -> None:
        store = ClusterStore(FakeEtcd())  # type: ignore[arg-type]
        web = node.cluster.records["ct/web"]
        node.instances["app"] = FakeInstance("app")
        node.cluster.records = {"ct/web": replace(web, node="n2", standby="n1", claimed_at=1e9),
                                "ct/db": node.cluster.records["ct/db"],
                                "ct/app": replace(web, id="app")}
        for r in node.cluster.records.values():
            await store.create_instance(r)
        await store.put_node(_member("n1"), 8)
        node.cluster.store = store
        node.cluster.loaded = asyncio.Event()
        node.cluster.loaded.set()
        node.registry.all_cts = lambda: list(node.instances.values())
        node.registry.all_vms = lambda: []
        await on_start(node)
        assert (await store.instance("ct/app")).claimed_at is not None

    node = FakeNode()
    asyncio.run(scenario(node))
    assert node.events == ["killed web"]
    assert node.instances["db"].running and node.instances["app"].running


def test_autostart_claims_an_ha_record_first_and_starts_only_what_it_won():
    """A daemon started again (its lease expired meanwhile) autostarts an HA
    container its record still places here only after claiming it back: a
    recovery decided before the node rejoined then fails; one done already
    moved the record, and the copy here stays stopped."""
    async def scenario(recovered: bool) -> list[str]:
        node = FakeNode()
        store = ClusterStore(FakeEtcd())  # type: ignore[arg-type]
        web = node.cluster.records["ct/web"]
        await store.create_instance(replace(web, node="n2", standby="n1") if recovered else web)
        await store.put_node(_member("n1"), 8)
        node.cluster.store = store
        node.cluster.loaded = asyncio.Event()
        node.cluster.loaded.set()
        node.cluster.where = lambda kind, id: ClusterAgent.where(node.cluster, kind, id)  # type: ignore[arg-type]
        inst = node.instances["web"]
        inst.running = False
        inst.noun = "container"
        started: list[str] = []

        async def start(pool, i):
            started.append(i.id)

        @asynccontextmanager
        async def hold(*args, **kw):
            yield

        node.driver = lambda kind: SimpleNamespace(start=start)  # type: ignore[method-assign]
        node.locks = SimpleNamespace(hold=hold)
        node.registry.pools = {"p": object()}
        node.check_home = lambda i: Node.check_home(node, i)  # type: ignore[arg-type]
        await startup._start(node, inst, "autostart", "autostart of")  # type: ignore[arg-type]
        rec = await store.instance("ct/web")
        assert (rec.claimed_at is not None) == (not recovered)
        return started

    assert asyncio.run(scenario(recovered=False)) == ["web"]
    assert asyncio.run(scenario(recovered=True)) == []


async def _n1_with(*ids: str) -> tuple[FakeEtcd, ClusterStore, list[InstanceRecord]]:
    """A cluster whose node n1 (its key gone) held the HA containers
    ``ids``, each with a replica on n2, a member."""
    etcd = FakeEtcd()
    store = ClusterStore(etcd)  # type: ignore[arg-type]
    recs = [InstanceRecord("ct", id, "n1", Size(1, 1 << 30, 0), ha=True, standby="n2",
                           replica_at=time.time()) for id in ids]
    for r in recs:
        await store.create_instance(r)
    await store.set_node_state("n1", "online")
    await store.put_node(_member("n2"), 1)
    return etcd, store, recs


def _leader(store: ClusterStore, lost: dict[str, float]) -> SimpleNamespace:
    """The leader's cluster agent (n3), the losses as ``lost`` says."""
    return SimpleNamespace(name="n3", store=store, config=SimpleNamespace(fence_margin=0),
                           leader=SimpleNamespace(is_leader=True, lost_since=lambda name: lost.get(name)))


async def _recover_on_n2(store: ClusterStore, step: decide.Recover) -> dict:
    """n2's ``ha.recover`` task, its replica complete."""
    return await recovery.recover_here(SimpleNamespace(name="n2", store=store), step, SimpleNamespace(  # type: ignore[arg-type]
        unrecoverable=lambda kind, id: None,
        recover=lambda kind, id: asyncio.sleep(0, {"data_age": 1.0, "started": True})))


def test_a_recovery_refused_on_a_record_set_anew_while_its_node_stayed_away_is_decided_again(
        monkeypatch):
    """The leader's recovery of ct/web is refused (an operator set the
    record anew between the leader's read and the standby's CAS) while n1
    stayed away: it is decided again on the new record and done. Had n1
    come and gone in between (a new loss, the leader's ``lost_since``
    moved), that loss's own call decides, after its own margin."""
    async def scenario(gone_again: bool) -> list[int | None]:
        etcd, store, (web,) = await _n1_with("web")
        since = time.time()
        lost = {"n1": since}
        cluster = _leader(store, lost)
        asked: list[int | None] = []

        async def call(store_, node, verb, args, by):
            step = decide.Recover(**args["recover"])
            asked.append(step.revision)
            if len(asked) == 1:  # set anew before the standby's CAS: refused
                etcd.put("/osctld/instances/ct/web", replace(web, evacuate="stop").to_json())
                if gone_again:
                    lost["n1"] = since + 5
                raise OsctlError(CONFLICT, "its record changed since the leader read it")
            return await _recover_on_n2(store, step)

        monkeypatch.setattr(recovery.tasks, "call", call)
        await recovery.on_node_lost(cluster, "n1", since)  # type: ignore[arg-type]
        rec = await store.instance("ct/web")
        assert rec.node == ("n1" if gone_again else "n2")
        return asked

    first, again = asyncio.run(scenario(gone_again=False))
    assert again is not None and again != first
    assert len(asyncio.run(scenario(gone_again=True))) == 1


def _member(name: str) -> NodeRecord:
    return NodeRecord(name, "192.0.2.1", "online", 4, 8 << 30, 100 << 30)


def test_a_claim_between_the_leaders_reads_fails_the_recovery_decided_after_it():
    """The leader's view is several reads: n1 rejoins and claims ct/web
    after the leader read the nodes (n1 offline) and before it read the
    instances (the claimed revision). The recovery decided at that revision
    is refused all the same (n1's key is there): web runs on n1 only."""
    async def scenario() -> None:
        etcd, store, _ = await _n1_with("web")
        n1 = FakeNode(lease=8)
        n1.cluster.store = store
        records = store._records

        async def racing(prefix, parse):
            out = await records(prefix, parse)
            if prefix == "nodes":
                await store.put_node(_member("n1"), 8)
                assert await n1.cluster.claim("ct/web") == "n1"
            return out

        store._records = racing  # type: ignore[method-assign]
        view = await store.view()
        store._records = records  # type: ignore[method-assign]
        assert view.nodes["n1"].state == "offline"
        (step,) = decide.recovery_plan(view, "n1", time.time())
        try:
            await _recover_on_n2(store, step)
            raise AssertionError("recovered while n1 runs it")
        except OsctlError as e:
            assert e.code == CONFLICT and "member again" in e.message
        assert (await store.instance("ct/web")).node == "n1"

    asyncio.run(scenario())


def test_claims_back_hold_no_fencing_lock_and_stop_once_the_lease_is_lost_again():
    """A claim etcd is slow to answer does not hold ``fenced.busy`` (a new
    loss fences at once), and once the node is losing its lease again
    nothing more is started; a claim while not a member fails at once."""
    async def scenario() -> tuple[list[str], bool]:
        node = FakeNode(lease=8)
        node.cluster.membership.lost = False
        fenced = Fenced(killed={"ct/web": 7, "ct/db": 7})
        started: list[str] = []

        async def slow_claim(ikey):
            await asyncio.sleep(0.3)
            node.cluster.membership.lost = True  # the link flaps meanwhile
            return "n1"

        node.cluster.claim = slow_claim

        async def start(kind, id):
            started.append(id)

        job = asyncio.ensure_future(on_lease_regained(node, fenced, SimpleNamespace(start=start)))
        await asyncio.sleep(0.1)
        free = not fenced.busy.locked()
        await job
        return started, free

    started, free = asyncio.run(scenario())
    assert free and started == []

    async def not_member() -> None:
        node = FakeNode()
        node.cluster.membership.joined.clear()
        node.cluster.store = ClusterStore(FakeEtcd())  # type: ignore[arg-type]
        try:
            await asyncio.wait_for(node.cluster.claim("ct/web"), 0.5)
            raise AssertionError("claimed while not a member")
        except Excluded:
            pass

    asyncio.run(not_member())


def test_a_start_by_hand_of_an_ha_instance_claims_it_and_is_refused_while_not_a_member():
    async def scenario(alive: bool) -> InstanceRecord:
        node = FakeNode()
        store = ClusterStore(FakeEtcd())  # type: ignore[arg-type]
        await store.create_instance(node.cluster.records["ct/web"])
        await store.put_node(_member("n1"), 7)
        node.cluster.store = store
        node.cluster.membership.alive = alive
        node.cluster.where = lambda kind, id: ClusterAgent.where(node.cluster, kind, id)  # type: ignore[arg-type]
        inst = node.instances["web"]
        inst.noun = "container"
        try:
            await Node.check_home(node, inst)  # type: ignore[arg-type]
            assert alive
        except OsctlError as e:
            assert not alive and e.code == CONFLICT and "not a cluster member now" in e.message
        return await store.instance("ct/web")

    assert asyncio.run(scenario(alive=True)).claimed_at is not None
    assert asyncio.run(scenario(alive=False)).claimed_at is None


def test_a_claim_that_fails_or_a_stray_copy_still_running_when_back():
    """Back under a new lease: a claim refused (Conflict) leaves the copy
    stopped and the node's fenced mark is still cleared; a copy that lives
    elsewhere now and that the fencing failed to kill is killed."""
    async def scenario() -> tuple[str, list[str]]:
        node = FakeNode(lease=8)
        node.cluster.membership.lost = False
        etcd = FakeEtcd()
        store = ClusterStore(etcd)  # type: ignore[arg-type]
        await store.set_node_state("n1", "fenced")
        node.cluster.store = store
        homes = {"ct/web": "n2"}

        async def claim(ikey):
            if ikey not in homes:
                raise Conflict(f"{ikey} kept changing")
            return homes[ikey]

        node.cluster.claim = claim
        starts: list[str] = []

        async def start(kind, id):
            starts.append(id)

        fenced = Fenced(killed={"ct/web": 7, "ct/db": 7})  # web's kill failed: still running
        await on_lease_regained(node, fenced, SimpleNamespace(start=start))
        assert starts == [] and "ct/db" in fenced.killed and "ct/web" not in fenced.killed
        return (await store.node_states())["n1"]["state"], node.events

    state, events = asyncio.run(scenario())
    assert state == "online" and events == ["killed web"]


def test_start_up_kills_only_ha_copies_placed_elsewhere_and_retries_a_claim_etcd_failed():
    async def scenario(node: FakeNode) -> int:
        store = ClusterStore(FakeEtcd())  # type: ignore[arg-type]
        web, db = node.cluster.records["ct/web"], node.cluster.records["ct/db"]
        node.instances["app"] = FakeInstance("app")
        node.cluster.records = {"ct/web": replace(web, id="app"), "ct/db": replace(db, node="n2")}
        node.cluster.membership.lost = False
        node.cluster.store = store
        node.cluster.loaded = asyncio.Event()
        node.cluster.loaded.set()
        node.registry.all_cts = lambda: list(node.instances.values())
        node.registry.all_vms = lambda: []
        tries = []

        async def claim(ikey):
            tries.append(ikey)
            if len(tries) == 1:
                raise EtcdUnavailable("no etcd endpoint answered")
            return "n1"

        node.cluster.claim = claim
        await on_start(node)
        return len(tries)

    node = FakeNode()
    assert asyncio.run(scenario(node)) == 2
    assert node.events == [] and all(i.running for i in node.instances.values())


def test_the_leaders_recovery_marks_fenced_only_what_is_all_recovered_by_this_loss(monkeypatch):
    """A round refused on a record not set anew leaves the node unmarked
    (its instance is owed a recovery); an etcd error of one step does not
    end the others; a loss the leader no longer holds as its latest
    (the node back in between) asks nothing, from round 0 on."""
    async def scenario(refuse: str, lost_since_moves: bool = False,
                       first_read_fails: bool = False) -> tuple[list[str], str | None]:
        _, store, _ = await _n1_with("a", "b")
        if first_read_fails:  # a round that read nothing planned nothing
            view, reads = store.view, []

            async def once_failing():
                reads.append(1)
                if len(reads) == 1:
                    raise EtcdUnavailable("no etcd endpoint answered")
                return await view()

            store.view = once_failing
        since = time.time()
        lost = {"n1": since + 5 if lost_since_moves else since}
        cluster = _leader(store, lost)
        asked: list[str] = []

        async def call(store_, node, verb, args, by):
            step = decide.Recover(**args["recover"])
            asked.append(step.instance_key)
            if step.instance_key == refuse == "ct/a":
                raise EtcdUnavailable("no etcd endpoint answered")
            if step.instance_key == refuse:
                raise OsctlError(CONFLICT, "no complete replica here")
            return await _recover_on_n2(store, step)

        monkeypatch.setattr(recovery.tasks, "call", call)
        await recovery.on_node_lost(cluster, "n1", since)  # type: ignore[arg-type]
        return asked, (await store.node_states())["n1"]["state"]

    assert asyncio.run(scenario(refuse="ct/b")) == (["ct/a", "ct/b"], "online")
    assert asyncio.run(scenario(refuse="ct/a")) == (["ct/a", "ct/b"], "online")  # b went on
    assert asyncio.run(scenario(refuse="")) == (["ct/a", "ct/b"], "fenced")
    assert asyncio.run(scenario(refuse="", lost_since_moves=True)) == ([], "online")
    assert asyncio.run(scenario(refuse="", first_read_fails=True)) == (["ct/a", "ct/b"], "fenced")


def test_a_take_over_written_whose_answer_was_lost_is_recovered_all_the_same():
    async def scenario() -> list[str]:
        etcd = FakeEtcd()
        store = ClusterStore(etcd)  # type: ignore[arg-type]
        web = InstanceRecord("ct", "web", "n1", Size(1, 1 << 30, 0), ha=True, standby="n2",
                             replica_at=time.time())
        await store.create_instance(web)
        await store.put_node(_member("n2"), 1)
        view = replace(await store.view(), nodes={"n1": replace(_member("n1"), state="offline"),
                                                  "n2": _member("n2")})
        (step,) = decide.recovery_plan(view, "n1", time.time())
        swap = etcd.swap

        def lost_answer(*args):
            swap(*args)
            raise EtcdUnavailable("no etcd endpoint answered")

        etcd.swap = lost_answer  # type: ignore[method-assign]
        done: list[str] = []

        async def recover(kind, id):
            done.append(id)
            return {"data_age": 1.0, "started": True}

        await recovery.recover_here(SimpleNamespace(name="n2", store=store), step,  # type: ignore[arg-type]
                                    SimpleNamespace(unrecoverable=lambda kind, id: None, recover=recover))
        return done

    assert asyncio.run(scenario()) == ["web"]
