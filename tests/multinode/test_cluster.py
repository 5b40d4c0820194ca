"""A cluster of three nodes on a three-member etcd (the ``cluster3`` fixture):
membership, leadership, and placement of new containers."""

from __future__ import annotations

import time

import pytest

from tests.helpers.etcd import FENCE_MARGIN, LEASE_TTL
from tests.helpers.wait import wait_for

pytestmark = pytest.mark.root


def states(node) -> dict[str, str]:
    return {r["name"]: r["state"] for r in node.osctl_json("cluster", "node", "ls")}


def leader(node) -> str | None:
    return next((r["name"] for r in node.osctl_json("cluster", "node", "ls") if r["leader"]), None)


def test_every_node_sees_three_online_and_a_killed_one_goes_offline_after_the_ttl(cluster3):
    a, b, c = cluster3.nodes
    for n in (a, b, c):
        rows = n.osctl_json("cluster", "node", "ls")
        assert {r["name"]: r["state"] for r in rows} == {a.name: "online", b.name: "online",
                                                         c.name: "online"}
        assert sum(r["leader"] for r in rows) == 1
        mine = next(r for r in rows if r["name"] == n.name)
        assert mine["address"] == n.ip and mine["capacity"]["cpus"] >= 1
        assert mine["capacity"]["memory"] > 0 and mine["capacity"]["disk"] > 0
    table = a.osctl("cluster", "node", "ls").stdout
    assert c.name in table and "online" in table
    killed = c if leader(a) != c.name else b
    killed.kill()
    start = time.monotonic()
    wait_for(lambda: states(a).get(killed.name), LEASE_TTL + 5, 0.3, f"{killed.name} offline",
             until=lambda s: s == "offline")
    assert time.monotonic() - start <= LEASE_TTL + 3
    assert states(a) == states(next(n for n in (b, c) if n is not killed))


def test_the_leader_dying_makes_another_node_leader(cluster3):
    a = cluster3.nodes[0]
    old = leader(a)
    dead = next(n for n in cluster3.nodes if n.name == old)
    alive = [n for n in cluster3.nodes if n is not dead]
    dead.kill()
    cluster3.etcd.kill(dead)
    new = wait_for(lambda: leader(alive[0]), LEASE_TTL + FENCE_MARGIN + 10, 0.5,
                   "another leader", until=lambda name: name not in (None, old),
                   ignore=(Exception,))
    assert new in {n.name for n in alive} and leader(alive[1]) == new
    assert states(alive[1])[old] == "offline"
