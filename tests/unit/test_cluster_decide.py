"""The decision layer's edges, and its rules held over many random clusters
(seeded, so a failure repeats): a placement or a plan never overfills a
node, never uses a node that is not online, never breaks a hard policy, and
does not depend on the order the records came in."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from osctl.protocol import OsctlError
from osctld.cluster.decide import (Move, NoPlacement, Recover, Skip, after, claim, evacuation_plan,
                                   move_action, place, recovery_plan, restore_plan, self_fence,
                                   stale_copy)
from osctld.model.cluster import ClusterView, InstanceRecord, NodeRecord, ServerGroup, Size

G = 1 << 30
SMALL = Size(1, G, 10 * G)


def node(name, state="online", cap=Size(4, 8 * G, 100 * G), since=0.0):
    return NodeRecord(name, "192.0.2.1", state, cap.cpus, cap.memory, cap.disk, since)


def view(nodes, instances=(), groups=()):
    return ClusterView({n.name: n for n in nodes}, {r.key: r for r in instances},
                       {g.name: g for g in groups})


def ct(id, on, size=SMALL, **kw):
    return InstanceRecord("ct", id, on, size, **kw)


def test_no_online_node_says_each_state():
    with pytest.raises(NoPlacement, match=r"no online node to place on \(no node to choose from\)"):
        place(ClusterView(), SMALL)
    v = view([node("n1", "maintenance"), node("n2", "offline"), node("n3", "fenced")])
    with pytest.raises(NoPlacement, match=r"\(n1 maintenance, n2 offline, n3 fenced\)") as e:
        place(v, SMALL)
    assert e.value.code == "conflict" and e.value.reason == e.value.message


def test_excluded_and_unknown_group():
    v = view([node("n1"), node("n2")])
    assert place(v, SMALL, exclude=["n1"]).node == "n2"
    with pytest.raises(NoPlacement, match="server group nope does not exist"):
        place(v, SMALL, "nope")


def test_ties_go_to_the_first_name_and_a_zero_size_fits_a_full_node():
    v = view([node("b"), node("a"), node("c")])
    assert place(v, SMALL).node == "a"
    full = view([node("n1", cap=Size(1, G, G))], [ct("x", "n1", Size(1, G, G))])
    assert place(full, Size()).node == "n1"


def test_hard_affinity_names_why_its_members_node_cannot_take_it():
    g = ServerGroup("g", "affinity")
    v = view([node("n1", "maintenance"), node("n2")], [ct("a", "n1", server_group="g")], [g])
    with pytest.raises(NoPlacement, match="its members are on n1 and n1 is maintenance"):
        place(v, SMALL, "g")
    soft = replace(v, groups={"g": ServerGroup("g", "soft-affinity")})
    p = place(soft, SMALL, "g")
    assert p.node == "n2" and "apart from its members on n1 (n1 is maintenance)" in (p.note or "")


def test_affinity_goes_where_most_members_are():
    g = ServerGroup("g", "soft-affinity")
    v = view([node("n1"), node("n2")],
             [ct("a", "n1", server_group="g"), ct("b", "n2", server_group="g"),
              ct("c", "n2", server_group="g")], [g])
    assert place(v, SMALL, "g").node == "n2"


def test_hard_anti_affinity_with_empty_nodes_full():
    g = ServerGroup("g", "anti-affinity")
    v = view([node("n1"), node("n2", cap=Size(1, G, G))], [ct("a", "n1", server_group="g")], [g])
    with pytest.raises(NoPlacement, match="the online nodes without a member have no room: n2 has"):
        place(v, SMALL, "g")


def test_events_say_placements_and_refusals():
    events: list[str] = []
    v = view([node("n1", cap=Size(1, G, 10 * G))])
    place(v, SMALL, key="ct/a", events=events)
    with pytest.raises(NoPlacement):
        place(v, Size(2, G, G), key="ct/b", events=events)
    assert events == ["place ct/a on n1",
                      "place ct/b: refused: no online node has room for 2 CPUs, 1G memory, 1G disk: "
                      "n1 has 1 CPU, 1G memory, 10G disk free"]


def test_move_action_by_kind():
    assert move_action(ct("a", "n1", evacuate="live-migrate")) == "migrate"
    assert move_action(InstanceRecord("vm", "v", "n1", SMALL)) == "live-migrate"
    assert move_action(InstanceRecord("vm", "v", "n1", SMALL, evacuate="migrate")) == "migrate"


def test_evacuating_an_empty_node_and_one_with_nowhere_to_go():
    events: list[str] = []
    assert evacuation_plan(view([node("n1")]), "n1", events=events) == []
    assert events == ["evacuate n1: 0 instances"]
    v = view([node("n1", "maintenance"), node("n2", "offline")], [ct("a", "n1")])
    assert evacuation_plan(v, "n1") == [Move("ct/a", "n1", None, "migrate",
                                             "no online node to place on (n2 offline)")]


def test_evacuate_then_restore_gives_the_records_back():
    recs = [ct("a", "n1"), ct("s", "n1", evacuate="stop"), InstanceRecord("vm", "v", "n1", SMALL)]
    v = view([node("n1", "maintenance"), node("n2")], recs)
    for m in evacuation_plan(v, "n1"):
        v = v.with_instance(after(v.instances[m.instance_key], m))
    assert {r.key: (r.node, r.evacuated_from) for r in v.instances.values()} == {
        "ct/a": ("n2", "n1"), "ct/s": ("n1", "n1"), "vm/v": ("n2", "n1")}
    v = v.with_node(node("n1"))
    plan = restore_plan(v, "n1")
    assert [(m.instance_key, m.target, m.action) for m in plan] == [
        ("ct/a", "n1", "migrate"), ("ct/s", "n1", "start"), ("vm/v", "n1", "live-migrate")]
    for m in plan:
        v = v.with_instance(after(v.instances[m.instance_key], m))
    assert sorted(v.instances.values(), key=lambda r: r.key) == recs


def test_restore_to_a_node_that_left_the_cluster():
    v = view([node("n2")], [ct("a", "n2", evacuated_from="n1")])
    assert restore_plan(v, "n1") == [Move("ct/a", "n2", None, "migrate",
                                          "no online node to place on (n1 not a member)")]


def test_restore_leaves_what_no_longer_fits_where_it_is():
    v = view([node("n1", cap=Size(1, G, 10 * G)), node("n2")],
             [ct("a", "n2", evacuated_from="n1"), ct("b", "n2", evacuated_from="n1")])
    plan = restore_plan(v, "n1")
    assert plan[0] == Move("ct/a", "n2", "n1", "migrate")
    assert plan[1].target is None and "n1 has 0 CPUs, 0 memory, 0 disk free" in (plan[1].reason or "")


def test_recovery_refuses_a_live_node_and_uses_the_standbys_age():
    v = view([node("n1"), node("n2")], [ct("a", "n1", ha=True, standby="n2", replica_at=100.0)])
    with pytest.raises(OsctlError, match="node n1 is online: there is nothing to recover"):
        recovery_plan(v, "n1", 130.0)
    dead = v.with_node(node("n1", "offline"))
    assert recovery_plan(dead, "n1", 130.0) == [Recover("ct/a", "n1", "n2", 30.0)]
    assert recovery_plan(dead, "n1", 130.0, {"ct/a": 12.5})[0].age == 12.5


def test_a_recovery_carries_the_revision_of_the_record_it_was_decided_on():
    v = replace(view([node("n1", "offline"), node("n2")],
                     [ct("a", "n1", ha=True, standby="n2", replica_at=0.0)]), revisions={"ct/a": 41})
    assert recovery_plan(v, "n1", 10.0)[0].revision == 41
    assert v.with_instance(ct("a", "n1")).revisions == {}  # a record changed: its revision is unknown


def test_a_node_claims_back_only_a_record_that_still_names_it_and_changes_it():
    mine = ct("a", "n1", ha=True, standby="n2", replica_at=5.0)
    claimed = claim(mine, "n1", 100.0)
    assert claimed == replace(mine, claimed_at=100.0) and claimed != mine  # a write: a new revision
    recovered = after(mine, Recover("ct/a", "n1", "n2", 3.0))
    assert claim(recovered, "n1", 100.0) is recovered  # nothing written: it lives on n2
    assert claim(None, "n1", 100.0) is None


def test_recovery_is_decided_once_even_when_a_leader_died_half_way():
    v = view([node("n1", "offline"), node("n2")],
             [ct("a", "n1", ha=True, standby="n2", replica_at=0.0),
              ct("b", "n1", ha=True, standby="n2", replica_at=0.0)])
    first = recovery_plan(v, "n1", 10.0)
    v = v.with_instance(after(v.instances["ct/a"], first[0]))  # the leader died after this one
    again = recovery_plan(v, "n1", 11.0)
    assert [s.instance_key for s in again] == ["ct/b"]
    assert v.instances["ct/a"].node == "n2" and v.instances["ct/a"].standby == "n1"


def test_a_recovered_instance_is_not_recovered_again_before_a_replica_went_back():
    v = view([node("n1", "offline"), node("n2")], [ct("a", "n1", ha=True, standby="n2",
                                                      replica_at=0.0)])
    rec = after(v.instances["ct/a"], recovery_plan(v, "n1", 10.0)[0])
    assert (rec.node, rec.standby, rec.replica_at) == ("n2", "n1", None)
    # n1 came back with its old copy; n2 dies before it replicated there.
    v = view([node("n1"), node("n2", "offline")], [rec])
    assert recovery_plan(v, "n2", 20.0) == [Skip("ct/a", "n2", "no replica of it on n1 yet")]


def test_recovery_onto_a_full_standby_starts_it_and_says_so():
    v = view([node("n1", "fenced"), node("n2", cap=Size(1, G, 10 * G))],
             [ct("a", "n1", ha=True, standby="n2", replica_at=0.0),
              ct("b", "n1", ha=True, standby="n2", replica_at=0.0)])
    plan = recovery_plan(v, "n1", 5.0)
    assert isinstance(plan[1], Recover) and plan[0].note is None  # type: ignore[union-attr]
    assert "n2 has only 0 CPUs, 0 memory, 0 disk free: started anyway" in (plan[1].note or "")


def test_recovery_skips_say_why():
    v = view([node("n1", "offline"), node("n2", "maintenance")],
             [ct("a", "n1"), ct("b", "n1", ha=True), ct("c", "n1", ha=True, standby="n2", replica_at=0.0),
              ct("d", "n1", ha=True, standby="n9", replica_at=0.0)])
    assert [s.reason for s in recovery_plan(v, "n1", 1.0) if isinstance(s, Skip)] == [
        "not HA: it stays on n1 until that node is back", "HA without a standby node",
        "its standby n2 is maintenance", "its standby n9 is not a member"]


# -- the rules over random clusters

POLICIES = ("affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity")


def random_cluster(rnd: random.Random) -> tuple[ClusterView, list[tuple[str, Size, str | None]]]:
    states = ["online"] * 4 + ["maintenance", "offline"]
    nodes = [node(f"n{i}", rnd.choice(states), Size(rnd.randint(2, 16), rnd.randint(2, 32) * G,
                                                    rnd.randint(20, 400) * G))
             for i in range(rnd.randint(1, 6))]
    groups = [ServerGroup(f"g{i}", rnd.choice(POLICIES)) for i in range(3)]
    wanted = [(f"i{k}", Size(rnd.randint(0, 4), rnd.randint(0, 8) * G, rnd.randint(0, 80) * G),
               rnd.choice([None, None, "g0", "g1", "g2"])) for k in range(rnd.randint(0, 20))]
    return view(nodes, (), groups), wanted


def check_rules(v: ClusterView) -> None:
    for name in v.nodes:
        assert v.used(name).within(v.nodes[name].capacity), name
    for g in v.groups.values():
        where = [r.node for r in v.members(g.name)]
        if g.policy == "affinity":
            assert len(set(where)) <= 1, (g, where)
        if g.policy == "anti-affinity":
            assert len(set(where)) == len(where), (g, where)


@pytest.mark.parametrize("seed", range(150))
def test_random_clusters_keep_the_rules(seed):
    rnd = random.Random(seed)
    v, wanted = random_cluster(rnd)
    for id, size, group in wanted:
        try:
            p = place(v, size, group)
        except NoPlacement:
            continue
        assert v.nodes[p.node].state == "online"
        v = v.with_instance(ct(id, p.node, size, server_group=group))
        check_rules(v)
    # The same records in another order decide the same.
    keys = list(v.instances)
    rnd.shuffle(keys)
    shuffled = ClusterView(dict(reversed(list(v.nodes.items()))), {k: v.instances[k] for k in keys}, v.groups)
    if wanted:
        try:
            assert place(shuffled, wanted[0][1], wanted[0][2]) == place(v, wanted[0][1], wanted[0][2])
        except NoPlacement:
            pass
    for name in sorted(v.nodes):
        emptied = v.with_node(replace(v.nodes[name], state="maintenance"))
        plan = evacuation_plan(emptied, name)
        assert plan == evacuation_plan(replace(shuffled, nodes={**shuffled.nodes, name: emptied.nodes[name]}),
                                       name)
        for m in plan:
            assert m.target is None or (m.target != name and emptied.nodes[m.target].state == "online")
            emptied = emptied.with_instance(after(emptied.instances[m.instance_key], m))
        check_rules(emptied)
        back = emptied.with_node(v.nodes[name])
        if back.nodes[name].state == "online":
            for m in restore_plan(back, name):
                assert m.target in (name, None)
                back = back.with_instance(after(back.instances[m.instance_key], m))
            check_rules(back)


def test_self_fence_stops_only_ha_instances():
    v = view([node("n1"), node("n2")], [ct("a", "n1", ha=True, standby="n2"), ct("b", "n1"),
                                         ct("c", "n2", ha=True, standby="n1")])
    events: list[str] = []
    assert self_fence(v, "n1", events=events) == ["ct/a"]
    assert self_fence(v, "n3", events=events) == []
    assert events == ["fence n1: stop ct/a", "fence n3: stop nothing (no HA instance)"]


def test_a_copy_is_stale_where_the_record_names_its_sender_home_and_this_node_standby():
    rec = ct("a", "n2", ha=True, standby="n1")
    assert stale_copy(rec, "n1", "n2")
    assert not stale_copy(rec, "n1", "n3")  # another node sends: not the instance's home
    assert not stale_copy(rec, "n3", "n2")  # not its standby: left to the operator
    assert not stale_copy(ct("a", "n1", ha=True, standby="n2"), "n1", "n2")  # it lives here
    assert not stale_copy(None, "n1", "n2")
