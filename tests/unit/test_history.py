"""History logs: one JSON line per state-changing command, read back newest last."""

from __future__ import annotations

import json

from osctld.history import History, Query, append, read
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
    assert read([pstate], 10) == []
    for i in range(3):
        history.write("tank", {"cmd": f"ct.new{i}"})
    history.write(None, {"cmd": "default"})  # the only pool is the default
    history.write("gone", {"cmd": "lost"})  # an exported pool: nothing, no error
    with pstate.pool.history_file.open("a") as f:
        f.write('{"cmd": "cut')  # a crash in the middle of a line
    assert [e["cmd"] for e in read([pstate], 2)] == ["ct.new2", "default"]
    assert [e["cmd"] for e in read([pstate], 0)] == ["ct.new0", "ct.new1", "ct.new2", "default"]
    assert {e["pool"] for e in read([pstate], 0)} == {"tank"}


def test_read_across_pools_by_time_about_one_object_since_a_time_by_one_account(tmp_path):
    pools = [PoolState(Pool(name, "dir", tmp_path / name), IdRange()) for name in ("a", "b")]
    lines = [  # pool, time, entry
        (0, 100.0, {"cmd": "ct.new", "object": "ct", "id": "web1", "account": "root"}),
        (1, 200.0, {"cmd": "ct.new", "object": "ct", "id": "db1", "account": "front@a:/t1"}),
        (0, 300.0, {"cmd": "ct.set", "object": "ct", "id": "web1", "account": "front@a:/t1"}),
        (1, 400.0, {"cmd": "ct.start", "args": {"id": "web1"}, "account": "root"}),  # an old line
    ]
    for i, t, entry in lines:
        path = pools[i].pool.history_file
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(json.dumps({"time": t, **entry}) + "\n")

    def cmds(limit=0, **query):
        return [(e["pool"], e["cmd"]) for e in read(pools, limit, Query(**query))]

    assert cmds() == [("a", "ct.new"), ("b", "ct.new"), ("a", "ct.set"), ("b", "ct.start")]
    assert cmds(2) == [("a", "ct.set"), ("b", "ct.start")]
    assert cmds(id="web1") == [("a", "ct.new"), ("a", "ct.set"), ("b", "ct.start")]
    assert cmds(since=200.0) == [("b", "ct.new"), ("a", "ct.set"), ("b", "ct.start")]
    assert cmds(account="front") == cmds(account="front@a:/t1") == [("b", "ct.new"), ("a", "ct.set")]
    assert cmds(account="root", id="web1", since=150.0) == [("b", "ct.start")]


def test_an_objects_history_follows_it_across_renames(tmp_path):
    pstate = PoolState(Pool("tank", "dir", tmp_path), IdRange())
    for entry in ({"cmd": "ct.new", "id": "a"}, {"cmd": "ct.start", "id": "a"},
                  {"cmd": "ct.rename", "id": "a", "args": {"new_id": "b"}, "result": "error"},
                  {"cmd": "ct.rename", "id": "a", "args": {"new_id": "b"}, "result": "ok"},
                  {"cmd": "ct.new", "id": "a"},  # a new one takes the old name
                  {"cmd": "ct.rename", "id": "b", "args": {"new_id": "c"}, "result": "ok"},
                  {"cmd": "ct.netif.rename", "id": "c", "args": {"id": "c", "new_name": "e1"},
                   "result": "ok"},  # its netif's, not its own
                  {"cmd": "ct.start", "id": "c"}):
        append(pstate.pool.history_file, entry)
    assert [(e["cmd"], e["id"]) for e in read([pstate], 0, Query(id="c"))] == [
        ("ct.new", "a"), ("ct.start", "a"), ("ct.rename", "a"), ("ct.rename", "a"),
        ("ct.rename", "b"), ("ct.netif.rename", "c"), ("ct.start", "c")]
    # The new "a" is another container; "b" is a name no container has now.
    assert [e["cmd"] for e in read([pstate], 0, Query(id="a"))] == ["ct.new"]
    assert read([pstate], 0, Query(id="b")) == [] and read([pstate], 0, Query(id="x")) == []
