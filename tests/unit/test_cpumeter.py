"""The CPU meter: percent of one core over the last interval, per cgroup."""

from __future__ import annotations

from osctld.cpumeter import CpuMeter, Sample


def test_percent_over_the_last_interval_once_there_are_two_samples():
    m = CpuMeter()
    m.sample({"a": Sample(100.0, 7, 5.0), "b": Sample(100.0, 8, 1.0)})
    assert m.percent("a") is None  # one sample: no interval yet
    m.sample({"a": Sample(110.0, 7, 10.0), "b": Sample(110.0, 8, 1.0)})
    assert (m.percent("a"), m.percent("b")) == (50.0, 0.0)
    m.sample({"a": Sample(120.0, 7, 30.0)})  # two cores busy; b stopped
    assert (m.percent("a"), m.percent("b")) == (200.0, None)


def test_a_cgroup_made_anew_is_not_compared_with_the_old_one():
    m = CpuMeter()
    m.sample({"a": Sample(100.0, 7, 50.0)})
    m.sample({"a": Sample(110.0, 9, 2.0)})  # restarted: another cgroup, counting from 0
    assert m.percent("a") is None
    m.sample({"a": Sample(120.0, 9, 4.0)})
    assert m.percent("a") == 20.0


def test_a_counter_that_went_back_gives_no_figure():
    m = CpuMeter()
    m.sample({"a": Sample(100.0, None, 50.0)})  # no cgroup identity (no cpuacct)
    m.sample({"a": Sample(110.0, None, 2.0)})
    assert m.percent("a") is None
