"""A three-member etcd for the cluster tests: one member in each multinode
Node's namespace, on the node's provider address (client port 2379, peer
port 2380), its data under the node's directory. The members reach each
other over the router's bridge, as the nodes' osctlds do; a member killed
with its node is gone for the others as a dead node's would be.

``cluster_config`` is what each node's osctld.yml gets (``cluster:``): its
own member first among the endpoints, then the others.
"""

from __future__ import annotations

import base64
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .multinode import Node
from .wait import wait_for

ETCD = "/usr/bin/etcd"
# Short, so that a dead node is seen in seconds: the tests wait TTL + margin.
LEASE_TTL = 3
FENCE_MARGIN = 2


def missing() -> str | None:
    if not Path(ETCD).exists():
        return "no etcd (bash scripts/setup.sh installs etcd-server)"
    return None


def cluster_config(node: Node, nodes: list[Node]) -> dict:
    """The ``cluster:`` section of ``node``'s osctld.yml."""
    order = [node, *(n for n in nodes if n is not node)]
    return {"endpoints": [f"http://{n.ip}:2379" for n in order], "node": node.name,
            "address": node.ip, "lease_ttl": LEASE_TTL, "fence_margin": FENCE_MARGIN}


class EtcdCluster:
    """``start()`` one member per node; ``kill(node)`` and ``start(node)`` again."""

    def __init__(self, nodes: list[Node]):
        self.nodes = nodes
        self.procs: dict[str, subprocess.Popen] = {}
        self.token = f"osctld-test-{nodes[0].name}"

    def data_dir(self, node: Node) -> Path:
        return node.dir / "etcd"

    def start(self, node: Node | None = None) -> None:
        """Every member (or ``node``'s alone, again, on its data), then wait
        until the cluster answers a write."""
        peers = ",".join(f"{n.name}=http://{n.ip}:2380" for n in self.nodes)
        for n in [node] if node is not None else self.nodes:
            d = self.data_dir(n)
            d.parent.mkdir(parents=True, exist_ok=True)
            log = open(n.dir / "etcd.log", "ab")
            self.procs[n.name] = subprocess.Popen(
                [*n.netns_argv(), ETCD, "--name", n.name, "--data-dir", str(d),
                 "--listen-client-urls", f"http://{n.ip}:2379",
                 "--advertise-client-urls", f"http://{n.ip}:2379",
                 "--listen-peer-urls", f"http://{n.ip}:2380",
                 "--initial-advertise-peer-urls", f"http://{n.ip}:2380",
                 "--initial-cluster", peers, "--initial-cluster-token", self.token,
                 "--initial-cluster-state", "new",
                 # A loaded 2-core machine: a slow fsync must not cost the leader.
                 "--heartbeat-interval", "200", "--election-timeout", "2000",
                 # A member cut off (a partition test) comes back without forcing
                 # an election with the term it counted up alone: without pre-vote
                 # the whole cluster stalls for an election, every node's refresh
                 # fails and the nodes fence themselves (README: run etcd so).
                 "--pre-vote"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            log.close()
        ready = node or self.nodes[0]
        wait_for(lambda: self.put(ready, "/osctld-test/ready", str(time.time())), 30, 0.3,
                 lambda: f"etcd to answer on {ready.ip}:\n{self.log_tail(ready)}",
                 ignore=(OSError,))

    def put(self, node: Node, key: str, value: str) -> bool:
        """Whether a write through ``node``'s member (from its namespace) succeeds."""
        body = json.dumps({"key": base64.b64encode(key.encode()).decode(),
                           "value": base64.b64encode(value.encode()).decode()})
        post = ("import sys, urllib.request as u; u.urlopen(u.Request(sys.argv[1], "
                "data=sys.argv[2].encode()), timeout=2)")
        return node.nsexec(sys.executable, "-c", post, f"http://{node.ip}:2379/v3/kv/put", body,
                           check=False).returncode == 0

    def kill(self, node: Node) -> None:
        """Kill ``node``'s member, by its PID."""
        proc = self.procs.pop(node.name, None)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)

    def log_tail(self, node: Node, n: int = 20) -> str:
        log = node.dir / "etcd.log"
        lines = log.read_text(errors="replace").splitlines()[-n:] if log.exists() else []
        return "\n".join([f"--- etcd of {node.name}: {log}", *lines])

    def cleanup(self) -> None:
        for n in self.nodes:
            self.kill(n)
            shutil.rmtree(self.data_dir(n), ignore_errors=True)
