"""The decision layer against scripted scenarios with expected event logs,
as Proxmox's HA simulator tests its manager (tests/helpers/cluster_sim.py
says what a scenario holds). A scenario's ``log`` is the whole expected
log: a changed decision shows as a diff of lines.

To write a new scenario, run it with OSCTLD_SIM_SHOW=1 and read the log it
prints before pasting it in as the expectation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tests.helpers.cluster_sim import Sim

SCENARIOS = sorted((Path(__file__).parent / "cluster_scenarios").glob("*.yml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path):
    scenario = yaml.safe_load(path.read_text())
    log = Sim(**scenario.get("config", {})).run(scenario["steps"])
    if os.environ.get("OSCTLD_SIM_SHOW"):
        print("\n".join(log))
    assert log == scenario["log"].splitlines()


def test_there_are_scenarios():
    assert len(SCENARIOS) >= 10


def test_the_simulator_says_when_an_instance_runs_twice():
    """The check behind every scenario's silence: a recovery before the
    cut-off node fenced itself (no margin, and the node too slow) shows."""
    sim = Sim(lease_ttl=2, fence_margin=0)
    sim.run([{"nodes": {"n1": "1 1G 1G", "n2": "1 1G 1G"}},
             {"create": {"ct/a": {"size": "1 1G 1G", "node": "n1", "ha": True, "standby": "n2"}}},
             {"replicate": "ct/a"}])
    sim.runs.add(("ct/a", "n2"))
    sim.wait(1)
    assert sim.log[-1] == "1    sim: ct/a runs on n1 and n2"
