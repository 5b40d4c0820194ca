"""A cluster of three nodes on a three-member etcd (the ``cluster3`` fixture):
membership, leadership, and placement of new containers."""

from __future__ import annotations

import re
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
    assert re.search(r" \d+(\.\d)?[MGT] ", table), table  # sizes in human units
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


def test_server_groups_place_apart_and_together_with_real_containers(cluster3):
    a, b, c = cluster3.nodes
    names = {a.name, b.name, c.name}
    for n in cluster3.nodes:
        n.osctl("user", "new", "alice")
    a.osctl("server-group", "new", "web", "--policy", "anti-affinity")
    b.osctl("server-group", "new", "db", "--policy", "affinity")
    placed = {}
    for i, via in enumerate((a, b, c), 1):  # any member asks
        out = via.osctl_json("ct", "new", f"web{i}", "-u", "alice", "--memory", "64M",
                             "--server-group", "web")
        placed[f"web{i}"] = out["node"]
    assert set(placed.values()) == names
    refused = a.osctl("ct", "new", "web4", "-u", "alice", "--server-group", "web", check=False)
    assert refused.returncode == 6, refused.stderr  # conflict: the hard policy cannot be met
    assert "web" in refused.stderr and "anti-affinity" in refused.stderr
    for i in (1, 2):
        out = c.osctl_json("ct", "new", f"db{i}", "-u", "alice", "--server-group", "db", "--start")
        placed[f"db{i}"] = out["node"]
        assert out["state"] == "running", out  # started on its node, not on c
    assert placed["db1"] == placed["db2"]
    by_name = {n.name: n for n in cluster3.nodes}
    assert {r["id"]: r["state"] for r in by_name[placed["db1"]].osctl_json("ct", "ls")
            if r["id"].startswith("db")} == {"db1": "running", "db2": "running"}

    for ct, node in placed.items():  # created there, for real: they run
        by_name[node].osctl("ct", "start", ct)
        assert by_name[node].exec(ct, "true").returncode == 0
    listing = {r["id"]: r for r in b.osctl_json("cluster", "ls")}
    assert {k: r["node"] for k, r in listing.items()} == placed
    assert listing["web1"]["server_group"] == "web" and listing["web1"]["size"]["memory"] == 64 << 20
    assert "web4" not in listing and all(x["id"] != "web4" for n in cluster3.nodes
                                         for x in n.osctl_json("ct", "ls"))
    used = {r["name"]: r for r in a.osctl_json("cluster", "node", "ls")}
    assert used[placed["web1"]]["used"]["memory"] >= 64 << 20

    other = next(n for n in cluster3.nodes if n.name != placed["web1"])
    there = other.osctl("ct", "stop", "web1", check=False)
    assert there.returncode == 3 and f"lives on node {placed['web1']}" in there.stderr

    gone = by_name[placed["web3"]]
    gone.osctl("ct", "del", "web3", "--force")
    db = by_name[placed["db2"]]
    db.osctl("ct", "stop", "db2")
    elsewhere = next(w for w in ("web1", "web2") if placed[w] != placed["db2"])
    taken = db.osctl("ct", "rename", "db2", elsewhere, check=False)  # an id is taken once
    assert taken.returncode == 4 and f"exists on node {placed[elsewhere]}" in taken.stderr
    db.osctl("ct", "rename", "db2", "db3")
    records = wait_for(lambda: {r["id"]: r for r in a.osctl_json("cluster", "ls")}, 10, 0.3,
                       "web3's record gone, db2's renamed",
                       until=lambda rs: {"web3", "db2"}.isdisjoint(rs) and "db3" in rs)
    assert records["db3"]["server_group"] == "db" and records["db3"]["node"] == placed["db2"]


def test_members_trust_each_others_send_keys(cluster3):
    a, b, c = cluster3.nodes
    wait_for(lambda: {k["name"] for k in a.osctl_json("receive", "authorized-keys", "ls")}, 15,
             0.5, "the other members' keys on a",
             until=lambda names: names >= {f"cluster-{b.name}", f"cluster-{c.name}"})
    wait_for(lambda: b.osctl("send", "check", a.ip, check=False).returncode == 0, 15, 0.5,
             "b's send key taken by a")


def test_a_vm_is_created_on_the_node_asked_for(make_cluster3, tinyvm_image, tmp_path):
    from tests.conftest import require
    from tests.helpers.vm import have_qemu, vm_node_config

    require(have_qemu())
    cluster = make_cluster3(**vm_node_config(tmp_path))
    a, b, c = cluster.nodes
    for n in cluster.nodes:
        n.osctl("user", "new", "vmuser")
    out = a.osctl_json("vm", "new", "v1", "--user", "vmuser", "--template", "tinyvm",
                       "-c", "1", "-m", "256M", "-d", "10G", "--node", c.name, "--start")
    assert out["node"] == c.name
    assert [(v["id"], v["state"]) for v in c.osctl_json("vm", "ls")] == [("v1", "running")]
    assert a.osctl_json("vm", "ls") == []
    rec = next(r for r in b.osctl_json("cluster", "ls") if r["id"] == "v1")
    assert (rec["kind"], rec["node"], rec["size"]["memory"]) == ("vm", c.name, 256 << 20)
    again = b.osctl("vm", "new", "v1", "--user", "vmuser", "--template", "tinyvm",
                    "-c", "1", "-m", "256M", "-d", "10G", "--node", "auto", check=False)
    assert again.returncode == 4 and f"exists on node {c.name}" in again.stderr
