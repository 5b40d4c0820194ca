"""Values as a person reads and types them (osctl.units), and tables that
show them so while -p, JSON and CSV keep the exact numbers."""

from __future__ import annotations

import json

import pytest

from osctl.output import render, sort_rows
from osctl.units import (format_ago, format_duration, format_rate, format_size, format_time, grown,
                         human, is_grow, parse_size)

GIB = 1 << 30


@pytest.mark.parametrize("n, text", [
    (0, "0"), (512, "512"), (1023, "1023"), (1024, "1K"), (2 * GIB, "2G"), (164 << 20, "164M"),
    (int(1.5 * GIB), "1.5G"), (int(10.4 * GIB), "10G"), (1 << 40, "1T"), (1536, "1.5K"),
])
def test_sizes_in_the_largest_unit(n, text):
    assert format_size(n) == text


@pytest.mark.parametrize("bits, text", [
    (100_000_000, "100M/s"), (1_000_000_000, "1G/s"), (1_500_000_000, "1.5G/s"), (999, "999/s"),
    (64_000, "64k/s"),
])
def test_rates_in_decimal_units(bits, text):
    assert format_rate(bits) == text


@pytest.mark.parametrize("seconds, text", [
    (0, "0s"), (42, "42s"), (303, "5m 3s"), (3600, "1h"), (3 * 3600 + 120 + 5, "3h 2m"),
    (2 * 86400 + 4 * 3600 + 59, "2d 4h"), (86400 + 30, "1d"),
])
def test_durations_in_their_two_largest_units(seconds, text):
    assert format_duration(seconds) == text


def test_times_iso_in_the_local_zone_or_ago(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    import time

    time.tzset()
    try:
        assert format_time(0) == "1970-01-01 00:00:00"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert format_ago(1000, now=1000 + 3 * 3600 + 125) == "3h 2m ago"
    assert format_ago(1000, now=700) == "in 5m"


def test_human_goes_by_the_key_and_leaves_the_rest_alone():
    assert human("memory", 2 * GIB) == "2G"
    assert human("max_tx", 100_000_000) == "100M/s"
    assert human("uptime", 90061) == "1d 1h"
    assert human("memory", None) is None
    assert human("autostart", True) is True
    assert human("id", 5) == 5


@pytest.mark.parametrize("text, n", [
    ("4096", 4096), ("512M", 512 << 20), ("1.5G", 3 * GIB // 2), ("10GiB", 10 * GIB), ("2gb", 2 * GIB),
])
def test_parse_size(text, n):
    assert parse_size(text) == n


@pytest.mark.parametrize("text", ["", "G", "1.1G1", "-5G", "1.1", "ten"])
def test_parse_size_refuses(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_a_grow_adds_to_what_is_there():
    assert is_grow("+10G") and not is_grow("10G")
    assert grown(10 * GIB, "+10G") == 20 * GIB
    assert grown(None, "+1G") == GIB


ROWS = [{"id": "a", "memory": 2 * GIB, "max_tx": 100_000_000, "limits": {"memory": 164 << 20}},
        {"id": "b", "memory": 512, "max_tx": None, "limits": {}}]


def test_table_shows_units_and_parsable_and_machine_formats_keep_numbers():
    assert render(ROWS, "table", ["id", "memory", "max_tx", "limits"]).splitlines() == [
        "ID  MEMORY  MAX_TX  LIMITS",
        "a   2G      100M/s  memory=164M",
        "b   512     -",
    ]
    assert render(ROWS, "table", ["id", "memory"], human=False).splitlines()[1] == f"a   {2 * GIB}"
    assert render(ROWS, "csv", ["id", "memory"]).splitlines()[1] == f"a,{2 * GIB}"
    assert json.loads(render(ROWS, "json")) == ROWS
    assert f"MEMORY  {2 * GIB}" in render(ROWS[0], "table", human=False)
    assert "MEMORY  2G" in render(ROWS[0], "table")


def test_sort_numbers_as_numbers_missing_last_and_reversed():
    rows = [{"id": "a", "n": 10}, {"id": "b", "n": None}, {"id": "c", "n": 9}, {"id": "d", "n": 100}]
    assert [r["id"] for r in sort_rows(rows, "n")] == ["c", "a", "d", "b"]
    assert [r["id"] for r in sort_rows(rows, "-n")] == ["d", "a", "c", "b"]
    assert [r["id"] for r in sort_rows(rows, "-id")] == ["d", "c", "b", "a"]
    with pytest.raises(ValueError, match="bogus"):
        sort_rows(rows, "bogus")
