"""Self-fencing (cluster/fencing.on_lease_lost), with a fake node: a
lease refreshed again before its TTL ran out kills nothing (one slow
refresh on a loaded node must not stop a tenant); one not refreshed in
time has its HA instances killed before the deadline, and regaining that
same lease afterwards starts them again only once the kills are over."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

from osctld.cluster.fencing import Fenced, on_lease_lost, on_lease_regained
from osctld.model.cluster import InstanceRecord, Size


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
            membership=SimpleNamespace(lease=self.lease, lost=True, joined=joined),
            store=SimpleNamespace(node_states=self._states))
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
