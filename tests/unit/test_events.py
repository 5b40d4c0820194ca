"""The event bus: a bounded queue per subscriber, the one that falls behind is
dropped, the others go on; type filters; publishing never waits."""

from __future__ import annotations

import asyncio

import pytest

from osctl.protocol import OsctlError
from osctld.events import EventBus, Filter


def run(coro):
    return asyncio.run(coro)


def drain(sub) -> list[dict]:
    out = []
    while not sub.queue.empty():
        out.append(sub.queue.get_nowait())
    return out


def test_every_subscriber_gets_every_event_in_order_with_its_type_and_time():
    async def main():
        bus = EventBus()
        a, b = bus.subscribe(lambda: None), bus.subscribe(lambda: None)
        bus.publish("add", object="ct", pool="p", id="c1")
        bus.publish("state", object="ct", pool="p", id="c1", state="running")
        for sub in (a, b):
            got = drain(sub)
            assert [(e["type"], e["id"]) for e in got] == [("add", "c1"), ("state", "c1")]
            assert got[1]["state"] == "running" and got[0]["time"] <= got[1]["time"]
    run(main())


def test_a_subscriber_that_falls_behind_is_dropped_once_and_the_others_go_on():
    async def main():
        bus = EventBus(queue_size=3)
        dropped: list[str] = []
        slow = bus.subscribe(lambda: dropped.append("slow"))
        quick = bus.subscribe(lambda: dropped.append("quick"))
        for i in range(3):
            bus.publish("tick", n=i)
        assert [e["n"] for e in drain(quick)] == [0, 1, 2]
        assert dropped == []  # full is not yet behind
        bus.publish("tick", n=3)  # the one that does not fit
        assert dropped == ["slow"] and slow.closed and slow not in bus.subscribers
        assert [e["n"] for e in drain(quick)] == [3]
        for i in range(4, 10):
            bus.publish("tick", n=i)
            assert [e["n"] for e in drain(quick)] == [i]
        # Dropped once: what it still holds stays bounded, and no second call.
        assert slow.queue.qsize() == 3 and dropped == ["slow"]
    run(main())


def test_publishing_never_waits_even_with_every_queue_full():
    async def main():
        bus = EventBus(queue_size=1)
        subs = [bus.subscribe(lambda: None) for _ in range(50)]
        for i in range(1000):  # no await in between: a publish that waited would hang here
            bus.publish("tick", n=i)
        assert bus.subscribers == set() and all(s.closed for s in subs)
    run(main())


def test_a_type_filter_keeps_other_events_out_of_the_queue():
    async def main():
        bus = EventBus(queue_size=2)
        dropped: list[bool] = []
        states = bus.subscribe(lambda: dropped.append(True), filter=Filter(types=frozenset(["state"])))
        for i in range(100):  # a flood of what it did not ask for does not fill it
            bus.publish("command", phase="done", n=i)
        bus.publish("state", id="c1", state="running")
        assert dropped == [] and [e["state"] for e in drain(states)] == ["running"]
        assert states.wants({"type": "state"}) and not states.wants({"type": "add"})
        assert bus.subscribe(lambda: None).wants({"type": "anything"})  # no filter: all
    run(main())


def test_a_filter_takes_pools_object_kinds_and_ids_and_refuses_unknown_types():
    f = Filter.of(types=["state", "command"], pools=["p2"], objects=["ct"], ids=["web1"])
    assert f.wants({"type": "command", "pool": "p2", "object": "ct", "id": "web1"})
    assert not f.wants({"type": "command", "pool": "default", "object": "ct", "id": "web1"})
    assert not f.wants({"type": "state", "pool": "p2", "object": "vm", "id": "web1"})
    assert not f.wants({"type": "state", "pool": "p2", "object": "ct", "id": "web2"})
    assert not f.wants({"type": "state", "object": "ct", "id": "web1"})  # names no pool
    assert Filter.of(ids=["web1"]).wants({"type": "up", "object": "netif", "id": "web1"})
    for bad in ({"types": ["stat"]}, {"objects": ["container"]}):
        with pytest.raises(OsctlError) as e:
            Filter.of(**bad)
        assert e.value.code == "invalid" and "known: " in e.value.message


def test_a_closed_subscriber_gets_nothing_more_and_close_is_idempotent():
    async def main():
        bus = EventBus()
        sub = bus.subscribe(lambda: None)
        bus.publish("add", id="a")
        sub.close()
        sub.close()
        bus.publish("add", id="b")
        assert [e["id"] for e in drain(sub)] == ["a"] and bus.subscribers == set()
    run(main())


def test_a_subscriber_is_served_while_it_waits_on_its_queue():
    async def main():
        bus = EventBus()
        sub = bus.subscribe(lambda: None)
        reader = asyncio.create_task(sub.queue.get())
        await asyncio.sleep(0)
        bus.publish("remove", object="user", id="u")
        ev = await asyncio.wait_for(reader, 5)
        assert (ev["type"], ev["id"]) == ("remove", "u")
    run(main())
