"""Command events and history entries as lines a person reads, and times
as typed (osctl/activity.py)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from osctl.activity import command_text, event_line, since


def test_a_command_reads_as_asked_for_the_object_after_the_verb():
    ev = {"cmd": "ct.set", "object": "ct", "id": "web1",
          "args": {"id": "web1", "limits": {"memory": "2G"}, "hostname": None}}
    assert command_text(ev) == "ct.set web1 memory=2G"
    assert command_text({"cmd": "ct.netif.ip.add", "id": "web1",
                         "args": {"id": "web1", "netif": "eth0", "addr": "192.0.2.5/32"}}) \
        == "ct.netif.ip.add web1 netif=eth0 addr=192.0.2.5/32"
    assert command_text({"cmd": "ct.set", "id": "web1", "args": {"id": "web1", "autostart": True,
                                                                 "dns_resolvers": ["192.0.2.53", "198.51.100.53"]}}) \
        == "ct.set web1 autostart=yes dns_resolvers=192.0.2.53,198.51.100.53"


def test_an_event_line_has_the_time_type_subject_and_the_rest():
    t = datetime(2026, 11, 30, 8, 15, 2).timestamp()
    line = event_line({"type": "command", "time": t, "phase": "done", "cmd": "ct.set", "object": "ct",
                       "id": "web1", "pool": "tank", "args": {"id": "web1", "disk": "10G"},
                       "op": "3:1", "account": "root"})
    assert line == "08:15:02 command     done   ct.set web1 disk=10G pool=tank op=3:1 account=root"
    line = event_line({"type": "state", "time": t, "object": "ct", "id": "web1", "pool": "tank",
                       "state": "running"})
    assert line == "08:15:02 state       ct web1 pool=tank state=running"


def test_since_takes_spans_back_and_iso_dates():
    assert since("90s", now=1000.0) == 910.0
    assert since("2h30m", now=10_000.0) == 10_000.0 - 9000
    assert since("1w", now=1e6) == 1e6 - 7 * 86400
    assert since("2026-11-30T08:00") == datetime(2026, 11, 30, 8, 0).timestamp()
    assert since("2026-11-30T08:00+00:00") == datetime(2026, 11, 30, 8, tzinfo=timezone.utc).timestamp()
    for bad in ("yesterday", "2h 30m", "5x", ""):
        with pytest.raises(ValueError):
            since(bad)
