"""Staged deletion's schedule (model/deletion.py) and its node config."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from osctl.protocol import OsctlError
from osctld.config import Config, DeletionPolicy
from osctld.model.container import Container
from osctld.model.deletion import STAGES, Deletion, earliest, parse_at
from osctld.model.lifecycle import State, seen

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
