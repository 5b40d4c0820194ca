"""Consumption records without a node: months, the journal, and the sampler
over counters that restart, a daemon killed and a line cut short."""

from __future__ import annotations

import asyncio
import datetime
import os
from zoneinfo import ZoneInfo

import pytest

from osctld import consumption
from osctld.config import Config, ConsumptionConfig
from osctld.consumption import Consumption, append, journal_dir, last_line, lines, records, split
from osctld.locks import Locks
from osctld.model.container import Container
from osctld.model.group import Group
from osctld.model.idmap import IdRange
from osctld.model.lifecycle import State
from osctld.model.netif import NetIf
from osctld.model.pool import Pool
from osctld.state import PoolState, Registry

UTC = datetime.timezone.utc


def at(text: str) -> float:
    return datetime.datetime.fromisoformat(text).timestamp()


def test_months_split_an_interval_by_time_in_the_zone():
    assert split(at("2026-11-03T00:00:00+00:00"), at("2026-11-04T00:00:00+00:00"), UTC) == [
        ("2026-11", 1.0)]
    parts = split(at("2026-11-30T23:59:00+00:00"), at("2026-12-01T00:03:00+00:00"), UTC)
    assert [(p, round(s, 2)) for p, s in parts] == [("2026-11", 0.25), ("2026-12", 0.75)]
    assert split(at("2026-12-31T23:00:00+00:00"), at("2026-12-31T23:00:00+00:00"), UTC) == [
        ("2026-12", 1.0)]
    # In Prague December begins an hour before it does in UTC.
    prague = ZoneInfo("Europe/Prague")
    parts = split(at("2026-11-30T22:30:00+00:00"), at("2026-11-30T23:30:00+00:00"), prague)
    assert [(p, round(s, 2)) for p, s in parts] == [("2026-11", 0.5), ("2026-12", 0.5)]
    assert consumption.month_before("2026-01") == "2025-12"
    assert consumption.month_after("2026-12") == "2027-01"


def test_counts_are_shared_out_whole():
    rows: list[dict] = []
    consumption._add(rows, {"id": "c1"}, {"rx_bytes": 1001, "seconds": 240.0},
                     at("2026-11-30T23:59:00+00:00"), at("2026-12-01T00:03:00+00:00"), UTC)
    assert [(r["period"], r["rx_bytes"]) for r in rows] == [("2026-11", 250), ("2026-12", 751)]
    assert sum(r["seconds"] for r in rows) == pytest.approx(240.0)


def test_the_journal_skips_and_ends_a_line_cut_short(tmp_path):
    t = at("2026-11-05T00:00:00+00:00")
    append(tmp_path, t, {"readings": {"n": 1}})
    append(tmp_path, t, {"readings": {"n": 2}})
    path = tmp_path / "2026-11.jsonl"
    assert path.stat().st_mode & 0o777 == 0o600
    with path.open("a") as f:
        f.write('{"readings": {"n": 3')  # a kill in the middle of a line
    assert last_line(tmp_path) == {"readings": {"n": 2}}
    append(tmp_path, t, {"readings": {"n": 4}})
    assert [d["readings"]["n"] for d in lines(tmp_path, ["2026-11"])] == [1, 2, 4]
    append(tmp_path, at("2026-12-01T00:00:00+00:00"), {"readings": {"n": 5}})
    assert last_line(tmp_path) == {"readings": {"n": 5}}


class FakeTree:
    """Every instance's cgroup: its inode and CPU seconds, as a test sets them."""

    def __init__(self):
        self.inode, self.cpu = 1, 0.0

    def ct(self, pool, group, id):
        return f"{pool}{group}/ct.{id}"

    vm = ct

    def ident(self, rel):
        return self.inode

    def usage(self, rel):
        return {"cpu_seconds": self.cpu, "memory": None, "pids": None}


class FakeNet:
    """Host ends' (ifindex, counters), as a test sets them."""

    def __init__(self):
        self.links: dict[str, tuple[int, dict]] = {}

    def veth(self, n):
        return f"osv{n.index}"

    async def all_counters(self):
        return dict(self.links)


@pytest.fixture
def pool(tmp_path):
    registry = Registry()
    pstate = PoolState(Pool("tank", "dir", tmp_path), IdRange())
    # Months in UTC here, as the journal files' names are.
    pstate.groups["/a"] = Group("/a", "tank", settings={"timezone": "UTC"})
    registry.pools["tank"] = pstate
    ct = Container("c1", "tank", "alice", "busybox", "1", group="/a",
                   netifs=[NetIf(name="eth0", index=3)])
    ct.state, ct.init_pid = State.RUNNING, os.getpid()  # a process that runs: this one
    pstate.cts["c1"] = ct
    return registry, pstate, FakeTree(), FakeNet()


def sampler(pool) -> Consumption:
    """A daemon's sampler, as made at its start."""
    registry, _, tree, net = pool
    return Consumption(ConsumptionConfig(interval=1), registry, Locks(5), tree, net)


def traffic(pstate, field="rx_bytes", object="ct", id="c1") -> int:
    now = consumption.period_of(consumption.Clock().now(), UTC)
    return sum(r[field] for r in records(pstate.pool, now, type_="traffic")
               if r["object"] == object and r["id"] == id)


def test_counters_that_restart_and_a_killed_daemon_count_once(pool):
    registry, pstate, tree, net = pool

    def sample(s: Consumption, index: int, rx: int) -> None:
        net.links = {"osv3": (index, {"rx_bytes": rx, "tx_bytes": 0, "rx_packets": 1,
                                      "tx_packets": 0})}
        asyncio.run(s.sample())

    s = sampler(pool)
    sample(s, 5, 100)  # a veth seen first: all it counted
    sample(s, 5, 300)
    assert traffic(pstate) == 300
    sample(sampler(pool), 5, 400)  # a daemon killed and started: on from its last line
    assert traffic(pstate) == 400
    sample(sampler(pool), 6, 10)  # the container restarted: a new veth from zero
    assert traffic(pstate) == 410
    with (journal_dir(pstate.pool) / f"{consumption.period_of(consumption.Clock().now(), UTC)}.jsonl"
          ).open("a") as f:
        f.write('{"t": 1, "readings": {"net:osv3": {"ind')  # killed while writing
    s = sampler(pool)
    sample(s, 6, 500)  # from the last whole line: 490 more, not 500
    assert traffic(pstate) == 900
    # The groups' records have the container's, each ancestor too.
    now = consumption.period_of(consumption.Clock().now(), UTC)
    groups = {r["id"]: r["rx_bytes"] for r in records(pstate.pool, now, type_="traffic")
              if r["object"] == "group"}
    assert groups == {"/": 900, "/a": 900}
    assert [r["id"] for r in records(pstate.pool, now, group="/default")] == []
    # A deleted container's records stay.
    del pstate.cts["c1"]
    sample(s, 6, 600)
    assert traffic(pstate) == 900


def test_running_time_and_cpu_from_the_cgroup(pool):
    registry, pstate, tree, net = pool
    s = sampler(pool)
    tree.cpu = 2.0
    asyncio.run(s.sample())
    tree.cpu = 2.5
    asyncio.run(s.sample())
    now = consumption.period_of(consumption.Clock().now(), UTC)
    (row,) = [r for r in records(pstate.pool, now, type_="ct") if r["object"] == "ct"]
    assert row["cpu_seconds"] == pytest.approx(2.5)
    # The running time of this process so far (it is the "init"), not more.
    assert 0 < row["seconds"] <= consumption.boottime() - consumption.started(os.getpid())
    # A cgroup made anew counts from zero.
    tree.inode, tree.cpu = 2, 0.25
    asyncio.run(s.sample())
    (row,) = [r for r in records(pstate.pool, now, type_="ct") if r["object"] == "ct"]
    assert row["cpu_seconds"] == pytest.approx(2.75)
    # Stopped: no more running time.
    pstate.cts["c1"].state = State.STOPPED
    asyncio.run(s.sample())
    (again,) = [r for r in records(pstate.pool, now, type_="ct") if r["object"] == "ct"]
    assert again["seconds"] == row["seconds"]


def test_config_keys():
    cfg = Config(consumption={"interval": 5, "clock_start": "2026-11-30T23:59:00Z"},
                 metrics={"listen": "127.0.0.1:9120"})
    assert cfg.consumption.interval == 5 and cfg.metrics.address() == ("127.0.0.1", 9120)
    assert Config().metrics.listen is None  # off by default
    assert Config(metrics={"listen": "[::1]:9120"}).metrics.address() == ("::1", 9120)
    for bad in ({"consumption": {"interval": 0}},
                {"consumption": {"clock_start": "2026-11-30T23:59:00"}},  # no zone
                {"metrics": {"listen": "9120"}}, {"metrics": {"port": 1}}):
        with pytest.raises(ValueError):
            Config(**bad)
    clock = consumption.Clock("2026-11-30T23:59:00+00:00")
    assert abs(clock.now() - at("2026-11-30T23:59:00+00:00")) < 5


def test_a_closed_month_is_compacted_to_its_sums(pool):
    registry, pstate, tree, net = pool
    s = sampler(pool)
    s.clock.offset = at("2026-11-30T23:59:00+00:00") - consumption.time.time()
    for rx in (100, 250, 400):
        net.links = {"osv3": (5, {"rx_bytes": rx, "tx_bytes": 1, "rx_packets": 1, "tx_packets": 1})}
        asyncio.run(s.sample())
    directory = journal_dir(pstate.pool)
    before = records(pstate.pool, "2026-11")
    assert len((directory / "2026-11.jsonl").read_text().splitlines()) == 3
    s.clock.offset += 120  # December: the sample compacts November's file
    asyncio.run(s.sample())
    assert len((directory / "2026-11.jsonl").read_text().splitlines()) == 1
    assert records(pstate.pool, "2026-11") == before
    assert traffic_of(before) == 400
    assert consumption.compact(directory / "2026-11.jsonl") is False  # once


def traffic_of(rows: list[dict]) -> int:
    return sum(r["rx_bytes"] for r in rows if r["type"] == "traffic" and r["object"] == "ct")


def test_an_instance_that_moves_keeps_counting_in_its_new_group(pool):
    registry, pstate, tree, net = pool
    pstate.groups["/b"] = Group("/b", "tank")
    s = sampler(pool)
    for group, rx in (("/a", 100), ("/a", 150), ("/b", 175)):
        pstate.cts["c1"].group = group
        net.links = {"osv3": (5, {"rx_bytes": rx, "tx_bytes": 0, "rx_packets": 1, "tx_packets": 0})}
        asyncio.run(s.sample())
    now = consumption.period_of(consumption.Clock().now(), UTC)
    groups = {r["id"]: r["rx_bytes"] for r in records(pstate.pool, now, type_="traffic")
              if r["object"] == "group"}
    assert groups == {"/": 175, "/a": 150, "/b": 25}
    assert traffic(pstate) == 175  # its records in each group add up


def test_a_large_file_is_compacted_and_counting_goes_on(pool, monkeypatch):
    registry, pstate, tree, net = pool
    monkeypatch.setattr(consumption, "COMPACT_AT", 1000)
    s = sampler(pool)
    for rx in range(100, 1100, 100):
        net.links = {"osv3": (5, {"rx_bytes": rx, "tx_bytes": 0, "rx_packets": 1, "tx_packets": 0})}
        asyncio.run(s.sample())
        assert (journal_dir(pstate.pool) / f"{consumption.period_of(s.clock.now(), UTC)}.jsonl"
                ).stat().st_size < 2000
    assert traffic(pstate) == 1000
    net.links["osv3"] = (5, {"rx_bytes": 1200, "tx_bytes": 0, "rx_packets": 1, "tx_packets": 0})
    asyncio.run(sampler(pool).sample())  # a daemon started again: from the compacted line
    assert traffic(pstate) == 1200


def test_a_pool_exported_while_the_sample_waits_is_not_written_to(pool):
    registry, pstate, tree, net = pool
    s = sampler(pool)

    async def export_meanwhile() -> None:
        async with s.locks.hold(consumption.pool_key("tank"), "pool.export"):
            sampling = asyncio.ensure_future(s.sample())
            await asyncio.sleep(0.1)
            assert not sampling.done()  # it waits for the export
            del registry.pools["tank"]
        await sampling

    asyncio.run(export_meanwhile())
    assert not journal_dir(pstate.pool).exists()


def test_disk_held_counts_while_stopped_and_across_a_reboot(pool):
    from osctld.model.vm import VM

    registry, pstate, tree, net = pool
    pstate.vms["v1"] = VM("v1", "tank", "alice", "tinyvm", "1", cores=1, memory=256 << 20,
                          disk=10 << 30)
    s = sampler(pool)
    asyncio.run(s.sample())  # seen first: held from now on
    s.clock.offset += 100
    asyncio.run(s.sample())
    offset = s.clock.offset
    s = sampler(pool)
    s.boot = "another boot"  # disk is held whatever the boot; running time is not carried over
    s.clock.offset = offset + 50
    asyncio.run(s.sample())
    s.clock.offset = offset  # a clock set back: nothing more, nothing less
    asyncio.run(s.sample())
    now = consumption.period_of(s.clock.now(), UTC)
    rows = {(r["object"], r["id"]): r for r in records(pstate.pool, now, type_="disk")}
    assert rows[("vm", "v1")]["bytes"] == 10 << 30
    assert rows[("vm", "v1")]["seconds"] == pytest.approx(150, abs=1)
    assert rows[("group", "/default")]["byte_seconds"] == pytest.approx(150 * (10 << 30), rel=0.01)
    assert records(pstate.pool, now, type_="vm") == []  # it never ran


def test_months_are_in_the_groups_time_zone(pool):
    _, pstate, _, _ = pool
    pstate.groups["/b"] = Group("/b", "tank")
    assert consumption.zone_of(pstate, "/a") == ZoneInfo("UTC")  # its own
    assert consumption.zone_of(pstate, "/b") == ZoneInfo("Europe/Berlin")  # the default
