"""Maintenance windows and group settings, without a daemon: the window
arithmetic (wrap at midnight, DST, lead time, a unit of seconds) with a
clock given, inheritance, and what operators may not set."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from osctl.protocol import OsctlError
from osctld import maintenance
from osctld.config import Config
from osctld.events import EventBus, Filter
from osctld.history import History
from osctld.locks import Locks
from osctld.model.group import (Group, effective, group_timezone, in_maintenance,
                                parse_settings)
from osctld.model.idmap import IdRange
from osctld.model.lifecycle import State
from osctld.model.maintenance import Maintenance, Schedule
from osctld.model.pool import Pool
from osctld.model.vm import VM
from osctld.runtime.vm import Vms
from osctld.state import PoolState, Registry

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)


def local(*args) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


def test_a_window_wraps_midnight():
    s = Schedule(22, 5, "Europe/Berlin", 0, 3600)
    w = s.first_window(local(2026, 6, 10, 14, 0))
    assert (w.start, w.end) == (local(2026, 6, 10, 22), local(2026, 6, 11, 5))
    # Inside it, after midnight: the window open now is the one that began yesterday.
    w = s.current_or_next(local(2026, 6, 11, 3, 0))
    assert w.start == local(2026, 6, 10, 22) and w.holds(local(2026, 6, 11, 3, 0))


def test_the_lead_time_pushes_to_a_later_window():
    s = Schedule(22, 5, "Europe/Berlin", 12, 3600)
    # 14:00 + 12 h = 02:00 tomorrow: tonight's window starts too soon.
    assert s.first_window(local(2026, 6, 10, 14, 0)).start == local(2026, 6, 11, 22)
    assert s.first_window(local(2026, 6, 10, 9, 0)).start == local(2026, 6, 10, 22)


def test_dst_keeps_the_wall_clock_and_changes_the_length():
    s = Schedule(1, 5, "Europe/Berlin", 0, 3600)
    # The night of 29 March 2026 loses 02:00-03:00: 01:00 to 05:00 is three hours.
    w = s.first_window(local(2026, 3, 28, 12, 0))
    assert w.start == local(2026, 3, 29, 1) and w.end - w.start == timedelta(hours=3)
    # 25 October gains one: four hours become five.
    w = s.first_window(local(2026, 10, 24, 12, 0))
    assert w.end - w.start == timedelta(hours=5)
    # The day after, 01:00 is 01:00 again (CET), not shifted by an hour.
    w = s.first_window(local(2026, 10, 25, 12, 0))
    assert w.start.astimezone(BERLIN).hour == 1 and w.start.astimezone(UTC).hour == 0


def test_a_unit_of_seconds_gives_a_window_seconds_ahead():
    now = datetime(2026, 6, 10, 10, 0, 0, tzinfo=UTC)
    s = Schedule(10 * 3600 + 5, 10 * 3600 + 25, "UTC", 2, 1)
    w = s.first_window(now)
    assert (w.start - now, w.end - w.start) == (timedelta(seconds=5), timedelta(seconds=20))
    # Lead time 10 s: today's window starts too soon, so tomorrow's.
    assert Schedule(s.start, s.end, "UTC", 10, 1).first_window(now).start - now == \
        timedelta(days=1, seconds=5)


def groups(**own: dict) -> dict[str, Group]:
    out = {p: Group(p, "p") for p in ("/", "/prod", "/prod/web", "/default")}
    for name, settings in own.items():
        out["/" + name.replace("_", "/") if name != "root" else "/"].settings.update(settings)
    return out


def test_settings_inherit_down_the_tree():
    g = groups(root={"timezone": "UTC"}, prod={"maintenance_start": 1, "production": False})
    assert effective(g, "/prod/web", "maintenance_start") == 1
    assert effective(g, "/prod/web", "timezone") == "UTC"
    assert effective(g, "/default", "maintenance_start") == 22  # the default
    assert effective(g, "/default", "production") is True
    assert group_timezone(g, "/prod/web") == ZoneInfo("UTC")
    g["/prod/web"].settings["timezone"] = "Asia/Tokyo"
    assert group_timezone(g, "/prod/web") == ZoneInfo("Asia/Tokyo")
    assert group_timezone(g, "/prod") == ZoneInfo("UTC")


def test_settings_are_checked():
    ok = parse_settings({"maintenance-start": "22", "maintenance-end": "5",
                         "timezone": "America/New_York", "notification-leadtime": 12,
                         "production": "no"}, 3600, NOW)
    assert ok == {"maintenance_start": 22, "maintenance_end": 5, "timezone": "America/New_York",
                  "notification_leadtime": 12, "production": False}
    assert parse_settings({"timezone": "inherit"}, 3600, NOW) == {"timezone": None}
    for bad, why in [({"timezone": "Mars/Olympus"}, "unknown timezone"),
                     ({"timezone": "../../etc/passwd"}, "unknown timezone"),
                     ({"maintenance-start": "24"}, "0 to 23"),
                     ({"maintenance-end": "-1"}, "0 to 23"),
                     ({"production": "maybe"}, "yes or no"),
                     ({"colour": "red"}, "unknown group setting"),
                     ({"maintenance-until": "2026-06-11T05:00"}, "no zone"),
                     ({"maintenance-until": "tomorrow"}, "no ISO 8601")]:
        with pytest.raises(OsctlError, match=why) as e:
            parse_settings(bad, 3600, NOW)
        assert e.value.code == "invalid"
    # In seconds, a start may be any second of the day.
    assert parse_settings({"maintenance-start": 86399}, 1, NOW) == {"maintenance_start": 86399}


def test_in_maintenance_and_maintenance_until_must_agree():
    ahead, past = "2026-06-10T14:00+00:00", "2026-06-10T11:00Z"
    for contradiction in ({"in-maintenance": "yes", "maintenance-until": past},
                          {"in-maintenance": "yes", "maintenance-until": ""},
                          {"in-maintenance": "no", "maintenance-until": ahead}):
        with pytest.raises(OsctlError, match="contradict") as e:
            parse_settings(contradiction, 3600, NOW)
        assert e.value.code == "invalid"
    assert parse_settings({"in-maintenance": "yes", "maintenance-until": ahead}, 3600, NOW) == \
        {"in_maintenance": True, "maintenance_until": "2026-06-10T14:00:00+00:00"}
    g = groups(prod={"maintenance_until": ahead})
    assert in_maintenance(g, "/prod/web", NOW)
    assert not in_maintenance(g, "/prod/web", NOW + timedelta(hours=3))  # past: ended
    assert not in_maintenance(g, "/default", NOW)


def test_a_maintenance_is_kept_as_it_was():
    m = Maintenance(kind="vm", machine="v1", pool="p", group="/prod", starts=NOW.timestamp(),
                    ends=NOW.timestamp() + 60, estimated_duration=90, activities=["cores: 1 -> 2"],
                    old={"cores": 1}, announced=NOW.timestamp() - 5)
    back = Maintenance.from_dict(m.to_dict(), "p")
    assert back == m
    assert m.due(NOW.timestamp() + 1) and not m.due(NOW.timestamp() + 60)
    shown = m.public()
    assert shown["machine"] == "vm:v1" and shown["starts"] == "2026-06-10T12:00:00+00:00"


# --- planning and the timer's choices, with a clock given ---------------------------

def _node(tmp_path):
    registry = Registry()
    pstate = PoolState(Pool("tank", "dir", tmp_path), IdRange())
    pstate.save_pool()
    registry.pools["tank"] = pstate
    node = SimpleNamespace(config=Config(state_dir=tmp_path), registry=registry, events=EventBus(),
                           history=History(registry), locks=Locks(5))
    return node, pstate


def _running_vm(pstate):
    vm = VM(id="v1", pool="tank", user="u", template="tinyvm", version="1", cores=1,
            memory=256 << 20, disk=10 << 30, group="/default")
    vm.state, vm.running_cores, vm.running_memory = State.RUNNING, 1, 256 << 20
    pstate.vms["v1"] = vm
    return vm


def at(*args) -> float:
    return local(*args).timestamp()


def test_planned_announced_kept_and_moved_when_its_window_passed(tmp_path):
    node, pstate = _node(tmp_path)
    seen = node.events.subscribe(lambda: None, Filter.of(types=["maintenance"]))
    vm = _running_vm(pstate)
    vm.cores = 2
    m = maintenance.plan(node, pstate, vm, {"cores": 1}, 60, clock=lambda: at(2026, 6, 10, 14, 0))
    # Defaults: 22 to 5 Berlin, announced 12 hours ahead at least: tomorrow night.
    assert (m.starts, m.ends) == (at(2026, 6, 11, 22), at(2026, 6, 12, 5))
    ev = seen.queue.get_nowait()
    assert (ev["phase"], ev["id"], ev["activities"]) == ("announced", m.id, ["cores: 1 -> 2"])
    # A second change joins it; the first old value stays the one to put back.
    vm.cores, vm.memory = 3, 512 << 20
    again = maintenance.plan(node, pstate, vm, {"cores": 2, "memory": 256 << 20}, 60,
                             clock=lambda: at(2026, 6, 10, 15, 0))
    assert again is m and m.old == {"cores": 1, "memory": 256 << 20}
    assert m.activities == ["cores: 1 -> 3", "memory: 256 MiB -> 512 MiB"]
    # Kept in the pool: a restarted daemon has it.
    assert PoolState.load(tmp_path).maintenances[m.id].to_dict() == m.to_dict()

    assert maintenance.due(node, pstate, at(2026, 6, 11, 21, 59)) == []
    assert maintenance.due(node, pstate, at(2026, 6, 11, 23, 0)) == [m]
    # The node was down through that window: not now (noon), but the next window.
    assert maintenance.due(node, pstate, at(2026, 6, 13, 12, 0)) == []
    assert (m.starts, m.ends) == (at(2026, 6, 13, 22), at(2026, 6, 14, 5))
    # Back at 02:00, inside a window: now, in the window open now.
    m.starts, m.ends = at(2026, 6, 11, 22), at(2026, 6, 12, 5)
    assert maintenance.due(node, pstate, at(2026, 6, 14, 2, 0)) == [m]
    assert m.starts == at(2026, 6, 13, 22)


def test_an_open_maintenance_in_the_group_runs_it_now_and_its_mark_ends_by_itself(tmp_path):
    node, pstate = _node(tmp_path)
    node.config.maintenance.in_maintenance_cap = 60
    vm = _running_vm(pstate)
    vm.cores = 2
    now = at(2026, 6, 10, 14, 0)
    m = maintenance.plan(node, pstate, vm, {"cores": 1}, 60, clock=lambda: now)
    g = pstate.groups["/"]
    g.settings["in_maintenance"], g.in_maintenance_since = True, now
    assert maintenance.due(node, pstate, now + 10) == [m]  # inherited by /default
    maintenance._close_expired(node, pstate, now + 59)
    assert g.settings["in_maintenance"] is True
    maintenance._close_expired(node, pstate, now + 60)
    assert g.settings["in_maintenance"] is False and g.in_maintenance_since is None
    assert maintenance.due(node, pstate, now + 61) == []


class FakeVms(Vms):
    """Stops and starts a VM by its state alone (the driver's own restart
    joins them); a start with ``refuse`` cores fails."""

    def __init__(self, refuse: int | None = None):
        self.refuse = refuse
        self.starts: list[int] = []

    async def stop(self, vm, timeout, kill=False):
        vm.state = State.STOPPED

    async def start(self, pstate, vm):
        self.starts.append(vm.cores)
        if vm.cores == self.refuse:
            raise OSError("qemu: cannot set up guest memory")
        vm.state, vm.running_cores, vm.running_memory = State.RUNNING, vm.cores, vm.memory


def _run(tmp_path, refuse):
    node, pstate = _node(tmp_path)
    fake = FakeVms(refuse)
    node.vms = fake
    node.driver = lambda kind: {"vm": fake}[kind]
    seen = node.events.subscribe(lambda: None, Filter.of(types=["maintenance"]))
    vm = _running_vm(pstate)
    vm.cores = 2
    m = maintenance.plan(node, pstate, vm, {"cores": 1}, 60, at_once=True)
    asyncio.run(maintenance.run_held(node, pstate, m))
    phases = [seen.queue.get_nowait()["phase"] for _ in range(seen.queue.qsize())]
    return vm, m, fake, phases, PoolState.load(tmp_path)


def test_a_run_restarts_into_the_changes_and_records_it(tmp_path):
    vm, m, fake, phases, saved = _run(tmp_path, refuse=None)
    assert (vm.state, vm.running_cores, fake.starts) == (State.RUNNING, 2, [2])
    assert (m.state, m.result) == ("done", "restarted into: cores: 1 -> 2")
    assert phases == ["announced", "started", "done"]
    assert saved.maintenances[m.id].state == "done"


def test_a_run_that_cannot_start_puts_the_old_settings_back(tmp_path):
    vm, m, fake, phases, saved = _run(tmp_path, refuse=2)
    assert (vm.state, vm.cores, vm.running_cores, fake.starts) == (State.RUNNING, 1, 1, [2, 1])
    assert m.state == "failed" and "cannot set up guest memory" in m.result
    assert "the old settings are back" in m.result
    assert phases == ["announced", "started", "failed"]
    assert saved.vms["v1"].cores == 1 and saved.maintenances[m.id].result == m.result


def test_ended_maintenances_are_forgotten_after_a_while(tmp_path):
    node, pstate = _node(tmp_path)
    fake = FakeVms()
    node.vms = fake
    node.driver = lambda kind: {"vm": fake}[kind]
    vm = _running_vm(pstate)
    vm.cores = 2
    now = at(2026, 6, 10, 14, 0)
    m = maintenance.plan(node, pstate, vm, {"cores": 1}, 60, at_once=True, clock=lambda: now)
    asyncio.run(maintenance.tick(node, clock=lambda: now + 1))
    assert m.state == "done" and PoolState.load(tmp_path).maintenances
    asyncio.run(maintenance.tick(node, clock=lambda: now + maintenance.KEEP_ENDED))
    assert m.id in pstate.maintenances
    asyncio.run(maintenance.tick(node, clock=lambda: now + 1 + maintenance.KEEP_ENDED))
    assert pstate.maintenances == {} and PoolState.load(tmp_path).maintenances == {}
