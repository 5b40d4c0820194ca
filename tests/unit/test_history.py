"""History logs: one JSON line per state-changing command, read back newest last."""

from __future__ import annotations

import json

from osctld.history import History, append, read
from osctld.model.idmap import IdRange
from osctld.model.pool import Pool
from osctld.state import PoolState, Registry


def test_history_lines_are_json_and_appended(tmp_path):
    f = tmp_path / "log" / "history.jsonl"
    append(f, {"cmd": "ct.new", "args": {"id": "c1"}})
    append(f, {"cmd": "ct.del", "args": {"id": "c1"}})
    lines = [json.loads(line) for line in f.read_text().splitlines()]
    assert [e["cmd"] for e in lines] == ["ct.new", "ct.del"]
    assert all(isinstance(e["time"], float) for e in lines)
    assert f.stat().st_mode & 0o777 == 0o600


def test_written_to_the_pool_and_read_back_without_cut_lines(tmp_path):
    registry = Registry()
    pstate = PoolState(Pool("tank", "dir", tmp_path), IdRange())
    registry.pools["tank"] = pstate
    history = History(registry)
    assert read(pstate, 10) == []
    for i in range(3):
        history.write("tank", {"cmd": f"ct.new{i}"})
    history.write(None, {"cmd": "default"})  # the only pool is the default
    history.write("gone", {"cmd": "lost"})  # an exported pool: nothing, no error
    with pstate.pool.history_file.open("a") as f:
        f.write('{"cmd": "cut')  # a crash in the middle of a line
    assert [e["cmd"] for e in read(pstate, 3)] == ["ct.new2", "default"]  # the cut one counts
    assert [e["cmd"] for e in read(pstate, 0)] == ["ct.new0", "ct.new1", "ct.new2", "default"]
    assert {e["pool"] for e in read(pstate, 0)} == {"tank"}
