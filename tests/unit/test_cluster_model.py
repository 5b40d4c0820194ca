"""The cluster's records: what is written reads back the same, and what
etcd hands back in another shape fails naming the key and the field."""

from __future__ import annotations

import json
import random

import pytest

from osctld.model.cluster import (BadRecord, ClusterView, InstanceRecord, NodeRecord, ServerGroup,
                                  Size)

G = 1 << 30


def test_records_round_trip():
    node = NodeRecord("n1", "192.0.2.1", "online", 4, 8 * G, 100 * G, since=12.5)
    inst = InstanceRecord("ct", "web", "n1", Size(1, G, 10 * G), server_group="g", ha=True,
                          standby="n2", evacuated_from="n3", replica_at=30.0)
    group = ServerGroup("g", "soft-anti-affinity")
    assert NodeRecord.from_json(node.to_json()) == node
    assert InstanceRecord.from_json(inst.to_json()) == inst
    assert ServerGroup.from_json(group.to_json()) == group
    assert inst.key == "ct/web"


def test_evacuate_defaults_by_kind_and_is_written_out():
    """A VM moves live by default (the issue: running VMs live), a container by send."""
    vm = InstanceRecord("vm", "v1", "n1", Size())
    ct = InstanceRecord("ct", "c1", "n1", Size())
    assert (vm.evacuate, ct.evacuate) == ("live-migrate", "migrate")
    assert json.loads(vm.to_json())["evacuate"] == "live-migrate"
    bare = {"kind": "vm", "id": "v1", "node": "n1", "size": {"cpus": 1, "memory": 1, "disk": 1}}
    assert InstanceRecord.from_json(json.dumps(bare)).evacuate == "live-migrate"


@pytest.mark.parametrize("text, says", [
    (b"\xff\xfe", "not JSON"),
    ("{", "not JSON"),
    ("[1, 2]", "not a JSON object but list"),
    ('{"kind": "ct", "id": "a", "node": "n1"}', "size is missing"),
    ('{"kind": "lxc", "id": "a", "node": "n1", "size": {}}', "kind must be ct or vm"),
    ('{"kind": "ct", "id": "a", "node": "n1", "size": {"cpus": -1, "memory": 0, "disk": 0}}',
     "size.cpus must be a non-negative integer, got -1"),
    ('{"kind": "ct", "id": "a", "node": "n1", "size": {"cpus": true, "memory": 0, "disk": 0}}',
     "size.cpus must be a non-negative integer, got true"),
    ('{"kind": "ct", "id": "a", "node": "n1", "size": [1]}', "size must be an object"),
    ('{"kind": "ct", "id": "a", "node": "n1", "size": {"cpus": 1, "disk": 0}}', "size.memory is missing"),
    ('{"kind": "ct", "id": 7, "node": "n1", "size": {"cpus": 1, "memory": 0, "disk": 0}}',
     "id must be an instance name, got 7"),
    ('{"kind": "ct", "id": "a", "node": "N/1", "size": {"cpus": 1, "memory": 0, "disk": 0}}',
     "invalid node name"),
    ('{"kind": "ct", "id": "a", "node": "n1", "size": {"cpus": 1, "memory": 0, "disk": 0}, "ha": 1}',
     "ha must be true or false"),
    ('{"kind": "ct", "id": "a", "node": "n1", "size": {"cpus": 1, "memory": 0, "disk": 0},'
     ' "evacuate": "fly"}', "evacuate must be migrate or live-migrate or stop"),
    ('{"kind": "ct", "id": "a", "node": "n1", "size": {"cpus": 1, "memory": 0, "disk": 0},'
     ' "standby": "n1"}', "its standby is its own node n1"),
    ('{"kind": "ct", "id": "a", "node": "n1", "size": {"cpus": 1, "memory": 0, "disk": 0},'
     ' "replica_at": "yesterday"}', "replica_at must be a time in seconds or null"),
])
def test_bad_instance_records_name_the_key_and_field(text, says):
    with pytest.raises(BadRecord) as e:
        InstanceRecord.from_json(text, "instances/ct/a")
    assert e.value.code == "invalid"
    assert e.value.message.startswith("bad cluster record instances/ct/a: ")
    assert says in e.value.message


@pytest.mark.parametrize("text, says", [
    ('{"name": "n1", "address": "192.0.2.1", "state": "dead", "cpus": 1, "memory": 1, "disk": 1}',
     "state must be online or maintenance or offline or fenced"),
    ('{"name": "n1", "address": "", "state": "online", "cpus": 1, "memory": 1, "disk": 1}',
     "address must be an address"),
    ('{"name": "n1", "address": "192.0.2.1", "state": "online", "cpus": 1, "memory": 1.5, "disk": 1}',
     "memory must be a non-negative integer, got 1.5"),
    ('{"name": "n1", "address": "192.0.2.1", "state": "online", "cpus": 1, "memory": 1, "disk": 1,'
     ' "since": NaN}', "since must be a time in seconds"),
])
def test_bad_node_records(text, says):
    with pytest.raises(BadRecord, match="bad cluster record nodes/n1: .*" + says.split(",")[0]):
        NodeRecord.from_json(text, "nodes/n1")


def test_bad_group_policy():
    with pytest.raises(BadRecord, match="policy must be affinity or anti-affinity"):
        ServerGroup.from_json('{"name": "g", "policy": "near"}', "server-groups/g")


def test_view_counts_what_each_node_holds():
    view = ClusterView(
        nodes={"n1": NodeRecord("n1", "192.0.2.1", "online", 4, 8 * G, 100 * G)},
        instances={r.key: r for r in (InstanceRecord("ct", "a", "n1", Size(1, G, 10 * G), server_group="g"),
                                      InstanceRecord("vm", "b", "n1", Size(2, 2 * G, 20 * G)),
                                      InstanceRecord("ct", "c", "n2", Size(1, G, G), server_group="g"))})
    assert view.used("n1") == Size(3, 3 * G, 30 * G)
    assert view.free("n1") == Size(1, 5 * G, 70 * G)
    assert [r.key for r in view.members("g")] == ["ct/a", "ct/c"]
    assert str(Size(2, 2 * G, 20 * G)) == "2 CPUs, 2G memory, 20G disk"


ODD = [None, True, -1, 1.5, float("inf"), "", "x/y", "N1", [], {}, "n2", 3, "online", "ct", "stop"]


@pytest.mark.parametrize("seed", range(40))
def test_any_damage_to_a_record_is_a_bad_record_or_a_valid_one(seed):
    """Whatever another node (or version) wrote, reading it either gives a
    record that writes back the same or fails with BadRecord: never a
    TypeError or a KeyError from deep inside."""
    rnd = random.Random(seed)
    good = [NodeRecord("n1", "192.0.2.1", "online", 4, 8 * G, 100 * G, 1.0),
            InstanceRecord("vm", "v1", "n1", Size(1, G, G), "g", True, "n2", "stop", "n3", 2.0),
            ServerGroup("g", "affinity")]
    for rec in good:
        for _ in range(30):
            d = json.loads(rec.to_json())
            for _ in range(rnd.randint(1, 3)):
                target = d["size"] if "size" in d and isinstance(d["size"], dict) and rnd.random() < 0.3 else d
                field = rnd.choice(sorted(target) + ["extra"])
                if rnd.random() < 0.2:
                    target.pop(field, None)
                else:
                    target[field] = rnd.choice(ODD)
            try:
                back = type(rec).from_json(json.dumps(d), "somewhere")
            except BadRecord as e:
                assert e.message.startswith("bad cluster record somewhere: ")
            else:
                assert type(rec).from_json(back.to_json()) == back
