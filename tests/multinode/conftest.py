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
