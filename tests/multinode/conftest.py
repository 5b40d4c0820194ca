"""Fixtures of the multinode tests: nodes joined by a router, each with its
own osctld and sshd (tests/helpers/multinode.py)."""

from __future__ import annotations

import contextlib

import pytest

from tests.conftest import missing_capability, require


@pytest.fixture
def make_cluster(request):
    """``make(count=2, **config)``: started nodes and their router, the
    send keys made (not yet trusted), cleaned up after the test (the nodes'
    logs shown if it failed)."""
    from tests.helpers.multinode import Cluster, missing

    require(missing_capability() or missing())
    with contextlib.ExitStack() as stack:
        def make(count: int = 2, **config) -> Cluster:
            cluster = Cluster(count, config)
            stack.callback(cluster.cleanup)
            stack.callback(lambda: getattr(request.node, "rep_call_failed", False) and
                           print(*(n.log_tail(60) for n in cluster.nodes), sep="\n"))
            return cluster.start()
        yield make


@pytest.fixture
def pair(make_cluster):
    """Nodes A and B; B trusts A's send key (named ``a``)."""
    cluster = make_cluster()
    a, b = cluster.nodes
    cluster.trust(a, b, "a")
    return cluster


@pytest.fixture
def make_cluster3(request):
    """``make(**config)``: three nodes and their router, a three-member etcd
    (one member in each node's namespace, ``cluster.etcd``:
    tests/helpers/etcd.py) and each osctld (with ``config``) a member of the
    cluster, named as its node (lease TTL 3 s); returned once every node is
    online and one leads. Cleaned up after the test (the daemons' and etcd's
    logs shown if it failed)."""
    from tests.helpers import etcd
    from tests.helpers.multinode import Cluster, missing
    from tests.helpers.wait import wait_for

    require(missing_capability() or missing() or etcd.missing())
    made = []

    def make(**config):
        more = config.pop("cluster", {})  # more of the cluster section
        cluster = Cluster(3, config)
        for n in cluster.nodes:
            n.config["cluster"] = {**etcd.cluster_config(n, cluster.nodes), **more}
        cluster.etcd = etcd.EtcdCluster(cluster.nodes)
        made.append(cluster)
        cluster.start(cluster.etcd.start)
        a = cluster.nodes[0]
        wait_for(lambda: a.osctl_json("cluster", "node", "ls"), 30, 0.5,
                 "three online nodes and a leader",
                 until=lambda rows: len([r for r in rows if r["state"] == "online"]) == 3
                 and any(r["leader"] for r in rows))
        cluster.formed = True
        return cluster

    try:
        yield make
    finally:
        for cluster in made:
            if not getattr(cluster, "formed", False) or getattr(request.node, "rep_call_failed", False):
                print(*(n.log_tail(60) for n in cluster.nodes),
                      *(cluster.etcd.log_tail(n) for n in cluster.nodes), sep="\n")
            cluster.cleanup()
            cluster.etcd.cleanup()


@pytest.fixture
def cluster3_config() -> dict:
    """More of each node's osctld.yml for ``cluster3`` (its ``cluster`` key:
    more of the cluster section); a test module overrides this fixture."""
    return {}


@pytest.fixture
def cluster3(make_cluster3, cluster3_config):
    """Three nodes of one cluster on etcd (``make_cluster3(**cluster3_config)``)."""
    return make_cluster3(**dict(cluster3_config))
