"""Running an evacuation's moves (cluster/evacuate.run_moves): a few at a
time, each reported as it begins and ends, one failure not the others',
an instance that cannot move reported with its reason and not run; a
node's stop or start in place that has nothing to do."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from osctl.protocol import CONFLICT, OsctlError
from osctld.cluster.decide import Move
from osctld.cluster.evacuate import move_step, run_moves
from osctld.model.cluster import InstanceRecord, Size
from osctld.model.lifecycle import State


def test_moves_run_a_few_at_a_time_and_each_is_reported():
    moves = [Move("ct/a", "n1", "n2", "migrate"), Move("ct/b", "n1", "n3", "migrate"), Move("vm/c", "n1", "n2", "live-migrate"),
             Move("ct/d", "n1", None, "migrate", reason="anti-affinity group web: no other node"),
             Move("ct/e", "n1", None, "stop", "its evacuate setting is stop")]
    running, most, lines = set(), [0], []

    async def one(m: Move) -> str:
        running.add(m.instance_key)
        most[0] = max(most[0], len(running))
        await asyncio.sleep(0.01)
        running.discard(m.instance_key)
        if m.instance_key == "ct/b":
            raise OsctlError(CONFLICT, "address taken there")
        return f"runs on {m.target}"

    out = asyncio.run(run_moves(moves, one, 2, lines.append))
    assert most[0] == 2
    # Live moves first (a running VM keeps its interconnect: nobody may take it first).
    assert [(o.key, o.ok) for o in out] == [("ct/d", False), ("vm/c", True), ("ct/a", True),
                                           ("ct/b", False), ("ct/e", True)]
    assert lines.index("vm/c: live-migrate n1 -> n2") < lines.index("ct/a: migrate n1 -> n2")
    assert lines[0] == "ct/d cannot move: anti-affinity group web: no other node; it stays on n1"
    assert "ct/a: migrate n1 -> n2" in lines and "vm/c: live-migrate n1 -> n2" in lines
    assert "ct/e: stop on n1" in lines
    assert "ct/b: migrate failed: address taken there" in lines
    assert any(x.startswith("ct/a: runs on n2 (") for x in lines)


def _step(state: str, move: Move) -> tuple[str, list[str], InstanceRecord | None]:
    """``move_step`` of ``move`` on a fake node whose ct/x is ``state``:
    what it said, what it had done, the record afterwards."""
    done: list[str] = []
    rec = InstanceRecord("ct", "x", "n1", Size(1, 1 << 30, 1 << 30), evacuate="stop")
    records = {"ct/x": rec}

    async def update_instance(key, fn):
        records[key] = fn(records[key])
        return records[key]

    class Act:
        async def stop(self, kind, id):
            done.append(f"stop {kind}/{id}")

        async def start(self, kind, id):
            done.append(f"start {kind}/{id}")

    inst = SimpleNamespace(state=State(state))
    node = SimpleNamespace(cluster=SimpleNamespace(store=SimpleNamespace(update_instance=update_instance)),
                           registry=SimpleNamespace(instance=lambda kind, id: (None, inst)))
    said = asyncio.run(move_step(node, move, None, Act(), lambda line: None))
    return said, done, records["ct/x"]


def test_a_stop_in_place_is_recorded_for_the_restore_unless_it_was_stopped_already():
    stop = Move("ct/x", "n1", None, "stop", "its evacuate setting is stop")
    said, done, rec = _step("running", stop)
    assert (said, done, rec and rec.evacuated_from) == ("stopped on n1", ["stop ct/x"], "n1")
    said, done, rec = _step("stopped", stop)  # the restore must not start it
    assert (said, done, rec and rec.evacuated_from) == ("stopped on n1 already", [], None)
    start = Move("ct/x", "n1", "n1", "start")
    assert _step("running", start)[:2] == ("running on n1 already", [])
    assert _step("stopped", start)[:2] == ("started on n1", ["start ct/x"])
def test_a_standby_without_a_complete_replica_refuses_before_taking_the_record():
    """A record taken over by a node that cannot start the container would
    leave it stopped everywhere (its old node never starts it again)."""
    import pytest

    from osctld.cluster.decide import Recover
    from osctld.cluster.recovery import recover_here

    updates = []

    async def update_instance(key, fn):
        updates.append(key)

    act = SimpleNamespace(unrecoverable=lambda kind, id: f"container {id} is no replica here (it is stopped)")
    cluster = SimpleNamespace(name="n2", store=SimpleNamespace(update_instance=update_instance))
    with pytest.raises(OsctlError, match="ct/a not recovered on n2: container a is no replica here"):
        asyncio.run(recover_here(cluster, Recover("ct/a", "n1", "n2", 3.0), act))
    assert updates == []
