"""The node's metrics in Prometheus's text format, on a local address.

Off unless ``metrics.listen`` names an address. prometheus_client serves
them from a thread of its own (its WSGI server); a scrape reads the node
there and then: instance states from the registry, CPU, memory and
processes from each instance's cgroup, netif counters from one netlink
dump, disk sizes from the configs, disk use from a VM's disk file or a
container's btrfs qgroup. Nothing of the
event loop is touched but plain reads of the registry's tables, copied
first. The daemon's own figures: its process (RSS, CPU, descriptors, by
prometheus_client's process collector), operations in flight, and how
long requests took by verb (timed by ``Ops``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .model.lifecycle import State
from .model.vm import VM
from .net import netlink
from .runtime.usage import disk_used as disk_bytes

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger(__name__)
LABELS = ["pool", "kind", "id", "group"]


class NodeCollector:
    """Every instance's series, read at each scrape."""

    def __init__(self, node: Node):
        self.node = node

    def collect(self) -> Iterator[Metric]:
        node = self.node
        state = GaugeMetricFamily("osctld_instance_state", "1 for the state the instance is in",
                                  labels=LABELS + ["state"])
        cpu = CounterMetricFamily("osctld_instance_cpu_seconds", "CPU time used since it started",
                                  labels=LABELS)
        memory = GaugeMetricFamily("osctld_instance_memory_bytes", "memory charged to it",
                                   labels=LABELS)
        pids = GaugeMetricFamily("osctld_instance_pids", "processes and threads", labels=LABELS)
        net_bytes = CounterMetricFamily("osctld_netif_bytes", "bytes through a netif, as the "
                                        "instance sees it", labels=LABELS + ["netif", "direction"])
        net_packets = CounterMetricFamily("osctld_netif_packets", "packets through a netif, as the "
                                          "instance sees it", labels=LABELS + ["netif", "direction"])
        disk_used = GaugeMetricFamily("osctld_instance_disk_used_bytes", "disk space used",
                                      labels=LABELS)
        disk_quota = GaugeMetricFamily("osctld_instance_disk_quota_bytes", "disk size or quota",
                                       labels=LABELS)
        links = netlink.on_host(lambda ipr: netlink.all_counters(ipr, node.config.net.veth_prefix))
        tree = node.containers.cgroups
        for pstate in list(node.registry.pools.values()):
            for inst in pstate.all_instances():
                kind = "vm" if isinstance(inst, VM) else "ct"
                labels = [pstate.pool.name, kind, inst.id, inst.group]
                for s in State:
                    state.add_metric(labels + [s.value], 1.0 if inst.state == s else 0.0)
                if inst.disk:
                    disk_quota.add_metric(labels, inst.disk)
                used = disk_bytes(pstate.pool, inst)
                if used is not None:
                    disk_used.add_metric(labels, used)
                if not inst.running:
                    continue
                rel = (tree.vm if kind == "vm" else tree.ct)(pstate.pool.name, inst.group, inst.id)
                usage = tree.usage(rel)
                for family, value in ((cpu, usage["cpu_seconds"]), (memory, usage["memory"]),
                                      (pids, usage["pids"])):
                    if value is not None:
                        family.add_metric(labels, value)
                for n in inst.netifs:
                    counters = links.get(node.net.veth(n), (0, None))[1]
                    if counters is None:
                        continue
                    for d in ("rx", "tx"):
                        net_bytes.add_metric(labels + [n.name, d], counters[f"{d}_bytes"])
                        net_packets.add_metric(labels + [n.name, d], counters[f"{d}_packets"])
        ops = GaugeMetricFamily("osctld_operations", "requests running now")
        ops.add_metric([], len(node.ops.names()))
        yield from (state, cpu, memory, pids, net_bytes, net_packets, disk_used, disk_quota, ops)


class Metrics:
    """The endpoint: its registry, the request timer, the server thread."""

    def __init__(self, node: Node):
        self.node = node
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.registry.register(NodeCollector(node))
        self.requests = Histogram("osctld_request_duration_seconds",
                                  "how long requests took, by verb", ["verb"],
                                  registry=self.registry)
        self._server: WSGIServer | None = None

    def request_done(self, verb: str, seconds: float) -> None:
        self.requests.labels(verb=verb).observe(seconds)

    def start(self) -> None:
        listen = self.node.config.metrics
        if listen.listen is None:
            return
        host, port = listen.address()
        self._server, _ = start_http_server(port, host, registry=self.registry)
        self.node.ops.finished.append(self.request_done)
        log.info("metrics on http://%s/metrics", listen.listen)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
