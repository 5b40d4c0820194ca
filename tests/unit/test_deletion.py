"""Staged deletion's schedule (model/deletion.py) and its node config."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from osctl.protocol import OsctlError
from osctld.config import Config, DeletionPolicy
from osctld.deletion import run_due
from osctld.events import EventBus
from osctld.history import History, read
from osctld.locks import Locks
from osctld.model.container import Container
from osctld.model.deletion import STAGES, Deletion, earliest, parse_at
from osctld.model.idmap import IdRange
from osctld.model.lifecycle import State, check, seen
from osctld.model.pool import Pool
from osctld.state import PoolState, Registry

BERLIN = ZoneInfo("Europe/Berlin")


def test_stages_fall_due_in_order_at_the_configured_offsets():
    d = Deletion.plan(1000.0, 10.0, DeletionPolicy(prepare=5, hard=3, purge=32, recycle=38).offsets())
    assert d.due == {"prepare": 995, "soft": 1000, "hard": 1003, "purge": 1032, "recycle": 1038}
    assert d.due_now(994) == [] and d.next_due() == 995
    assert d.due_now(1003) == ["prepare", "soft", "hard"]  # a node down across them: in order
    d.reached.update(prepare=995, soft=1000)
    assert d.due_now(1003) == ["hard"] and d.next_due() == 1003
    d.reached.update({s: 0 for s in STAGES})
    assert d.next_due() is None


def test_the_schedule_is_saved_with_the_container():
    d = Deletion.plan(1000.0, 10.0, DeletionPolicy().offsets())
    d.reached["prepare"] = 990.0
    ct = Container(id="c1", pool="p", user="u", distribution="busybox", version="1", deletion=d)
    again = Container.from_dict(ct.to_dict(), "p")
    assert again.deletion == d and again.state == State.STOPPED
    d.reached["soft"] = 1000.0
    # Soft-deleted is kept across a restart: loaded as such, and LXC's
    # "stopped" does not make it startable again.
    again = Container.from_dict(ct.to_dict(), "p")
    assert again.state == State.SOFT_DELETED
    assert seen(again.state, State.STOPPED) == State.SOFT_DELETED
    assert seen(again.state, State.RUNNING) == State.RUNNING
    assert seen(State.STOPPED, State.RUNNING) == State.RUNNING


@pytest.mark.parametrize("now, first", [
    ("2026-11-30T10:00:00+00:00", "2026-12-01T00:00:00+01:00"),
    ("2026-11-30T23:30:00+00:00", "2026-12-02T00:00:00+01:00"),  # already Dec 1st in Berlin
    ("2026-03-28T12:00:00+00:00", "2026-03-29T00:00:00+01:00"),  # the night DST begins
    ("2026-03-29T12:00:00+00:00", "2026-03-30T00:00:00+02:00"),
])
def test_earliest_is_tomorrow_midnight_in_the_zone(now, first):
    got = earliest(datetime.fromisoformat(now), BERLIN)
    assert got == datetime.fromisoformat(first) and got.utcoffset() == datetime.fromisoformat(first).utcoffset()


def test_dates_without_a_zone_are_in_the_groups():
    assert parse_at("2026-12-24", BERLIN) == datetime(2026, 12, 23, 23, tzinfo=timezone.utc)
    assert parse_at("2026-12-24T18:00", BERLIN) == datetime(2026, 12, 24, 17, tzinfo=timezone.utc)
    assert parse_at("2026-12-24T18:00Z", BERLIN) == datetime(2026, 12, 24, 18, tzinfo=timezone.utc)
    for bad in ("tomorrow", "2026-13-01", "", "24.12.2026"):
        with pytest.raises(OsctlError) as e:
            parse_at(bad, BERLIN)
        assert e.value.code == "invalid" and "ISO 8601" in e.value.message


def test_deletion_config():
    assert Config(deletion={"hard": 2, "purge": 3, "recycle": 4}).deletion.offsets()["hard"] == 2
    for bad in ({"hard": 5, "purge": 3}, {"prepare": -1}, {"notice": -1}, {"check_every": 0},
                {"days": 3}):
        with pytest.raises(ValueError):
            Config(deletion=bad)


# --- the daemon's side (osctld/deletion.py), on a pool in a temporary directory --------

class _Runtime:
    """Containers as the stages use them: stop and the lifecycle table."""

    def __init__(self) -> None:
        self.stops = 0

    async def stop(self, ct, timeout, kill=False):
        self.stops += 1
        ct.state = State.STOPPED

    def apply(self, ct, event):
        ct.state = check(f"container {ct.id}", ct.state, event)

    def keep_stopped(self, pstate, ct):
        """Nothing to mark for a container."""


class _Node:
    def __init__(self, pstate) -> None:
        self.registry = Registry()
        self.registry.pools[pstate.pool.name] = pstate
        self.locks, self.events = Locks(5), EventBus()
        self.history = History(self.registry)
        self.containers = _Runtime()
        self.removed: list[str] = []

    def driver(self, kind: str) -> _Runtime:
        assert kind == "ct"
        return self.containers

    async def remove_ct(self, pstate, ct):
        pstate.store.delete("ct", ct.id)
        del pstate.cts[ct.id]
        self.removed.append(ct.id)


def _pool(tmp_path) -> PoolState:
    pstate = PoolState(Pool("p", "dir", tmp_path), IdRange())
    pstate.save_pool()
    return pstate


def _scheduled(pstate, at: float) -> Container:
    ct = Container(id="c1", pool="p", user="u", distribution="busybox", version="1",
                   deletion=Deletion.plan(at, at - 10, DeletionPolicy(prepare=5, hard=3, purge=32,
                                                                      recycle=38).offsets()))
    pstate.cts["c1"] = ct
    pstate.save_ct(ct)
    return ct


def _announced(pstate) -> list[str]:
    return [line["cmd"] for line in read([pstate], 0)]


def test_due_stages_are_done_in_order_and_never_twice(tmp_path):
    pstate = _pool(tmp_path)
    node = _Node(pstate)
    ct = _scheduled(pstate, time.time() - 1)  # prepare and soft are due
    asyncio.run(run_due(node))
    asyncio.run(run_due(node))
    assert _announced(pstate) == ["ct.deletion.prepare", "ct.deletion.soft"]
    assert ct.state == State.SOFT_DELETED and node.containers.stops == 1
    # What a restart loads: soft-deleted, with both marks.
    again = PoolState.load(tmp_path)
    assert again.cts["c1"].state == State.SOFT_DELETED
    assert set(again.cts["c1"].deletion.reached) == {"prepare", "soft"}


def test_a_hard_stage_cut_short_is_finished_and_the_name_kept(tmp_path):
    pstate = _pool(tmp_path)
    ct = _scheduled(pstate, time.time() + 3600)
    ct.deletion.reached.update(prepare=1.0, soft=2.0, hard=3.0)  # marked, then killed
    pstate.save_ct(ct)
    pstate = PoolState.load(tmp_path)
    node = _Node(pstate)
    asyncio.run(run_due(node))
    assert node.removed == ["c1"] and _announced(pstate) == []  # finished, not done again
    again = PoolState.load(tmp_path)
    assert "c1" not in again.cts and ("ct", "c1") in again.deleted
    with pytest.raises(OsctlError) as e:
        again.check_name_free("ct", "container", "c1")
    assert e.value.code == "exists" and "can be used again from" in e.value.message
