"""A cluster simulator for the decision layer, after Proxmox's HA simulator
(pve-ha-manager src/test): a scenario is a script of steps, the simulator
plays them against a ``ClusterView`` through osctld/cluster/decide.py, and
the test compares the event log it writes with the one the scenario expects.

No etcd, no LXC, no real time: the clock moves only by ``wait`` steps, one
second at a time, and at each second what the real cluster's timers do
happens here too: a dead node's lease expires ``lease_ttl`` after it died
(its key vanishes: the node turns offline), a dead leader is replaced by
the first online node by name (etcd's election), and ``fence_margin``
seconds after a lease expired the leader recovers that node's instances and
marks it fenced, so no later leader recovers them again. Each recovery is
a task on the standby done ``recover_delay`` seconds after the leader
decided it (0: at once), and only on the record revision it was decided on
(``Recover.revision``; every record write makes a new one), as
``recovery.recover_here`` does.

Steps (each a one-key mapping):
- ``nodes: {n1: "4 8G 100G", ...}``: members join (CPUs, memory, disk).
- ``groups: {web: anti-affinity, ...}``: server groups.
- ``create: {ct/a: {size: "1 1G 10G", group: web, node: n2, ha: true,
  standby: n2, evacuate: stop}}``: the leader places it (``node`` given:
  put there as it is, for setting up), or logs the refusal.
- ``replicate: ct/a``: its standby now holds a replica taken now.
- ``die: n1``: a node stops, its instances with it; ``cut: n1``: its link
  to etcd is cut, its instances run on (until it fences itself: its HA ones
  stop when its lease is lost); ``revive: n1``: it comes back and starts
  what its records still give it, not what now lives elsewhere; a cut-off
  node back after its lease expired first claims the record of each HA
  instance its fencing stopped (``decide.claim``: a write) and starts only
  what it claimed.
- ``running: []``: log where each instance runs. After every second the
  simulator checks that no instance runs in two places (a line saying so
  would show in the log).
- ``wait: 12``: seconds pass.
- ``maintenance: {n1: on}`` / ``{n1: off}``: evacuate, restore.

Log lines: ``<second> <who>: <what>``; who is ``sim`` for what the script
does and the leader's name for what the leader decides.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from osctld.cluster import decide
from osctld.model.cluster import ClusterView, InstanceRecord, NodeRecord, ServerGroup, Size
from osctld.model.units import parse_size


def parse_capacity(text: str) -> Size:
    """``"4 8G 100G"``: CPUs, memory, disk."""
    cpus, memory, disk = str(text).split()
    return Size(int(cpus), parse_size(memory), parse_size(disk))


@dataclass
class Sim:
    lease_ttl: float = 6
    fence_margin: float = 4
    recover_delay: float = 0
    now: float = 0
    view: ClusterView = field(default_factory=ClusterView)
    log: list[str] = field(default_factory=list)
    died: dict[str, float] = field(default_factory=dict)  # dead or cut-off node -> when
    cut_off: set[str] = field(default_factory=set)  # their instances run on
    held: dict[str, set[str]] = field(default_factory=dict)  # dead node -> the instances it had
    runs: set[tuple[str, str]] = field(default_factory=set)  # (instance key, node)
    queued: list[tuple[float, decide.Recover]] = field(default_factory=list)  # (when done, step)
    revision: int = 0  # etcd's: the last record write's

    def say(self, who: str, line: str) -> None:
        self.log.append(f"{self.now:<4g} {who}: {line}")

    def decided(self, events: list[str], who: str | None = None) -> None:
        """Log a decision's events as said by ``who`` (by default the leader)."""
        for line in events:
            self.say(who or self.view.leader or "sim", line)

    def run(self, steps: list[dict[str, Any]]) -> list[str]:
        for step in steps:
            ((verb, arg),) = step.items()
            getattr(self, verb.replace("-", "_"))(arg)
        return self.log

    # -- steps

    def nodes(self, arg: dict[str, str]) -> None:
        for name, cap in arg.items():
            c = parse_capacity(cap)
            self.set_node(NodeRecord(name, f"192.0.2.{len(self.view.nodes) + 1}", "online",
                                     c.cpus, c.memory, c.disk, self.now))
            self.say("sim", f"{name} joins with {c}")
        self.elect()

    def groups(self, arg: dict[str, str]) -> None:
        groups = {**self.view.groups, **{n: ServerGroup(n, p) for n, p in arg.items()}}
        self.view = replace(self.view, groups=groups)

    def create(self, arg: dict[str, dict[str, Any]]) -> None:
        for key, spec in arg.items():
            kind, id = key.split("/")
            size = parse_capacity(spec["size"])
            node = spec.get("node")
            if node is None:
                events: list[str] = []
                try:
                    node = decide.place(self.view, size, spec.get("group"), key=key, events=events).node
                except decide.NoPlacement:
                    continue
                finally:
                    self.decided(events)
            else:
                self.say("sim", f"{key} on {node}")
            self.put(InstanceRecord(kind, id, node, size, spec.get("group"), spec.get("ha", False),
                                    spec.get("standby"), spec.get("evacuate", "")))
            self.runs.add((key, node))

    def replicate(self, key: str) -> None:
        rec = self.view.instances[key]
        self.put(replace(rec, replica_at=self.now))
        self.say("sim", f"{key} replicated to {rec.standby}")

    def die(self, name: str) -> None:
        self.died[name] = self.now
        self.held[name] = {r.key for r in self.view.on(name)}
        self.runs = {(k, n) for k, n in self.runs if n != name}
        self.say("sim", f"{name} dies")

    def cut(self, name: str) -> None:
        self.died[name] = self.now
        self.held[name] = {r.key for r in self.view.on(name)}
        self.cut_off.add(name)
        self.say("sim", f"{name} is cut off from etcd")

    def revive(self, name: str) -> None:
        del self.died[name]
        fenced = name in self.cut_off
        self.cut_off.discard(name)
        expired = self.view.nodes[name].state not in ("online", "maintenance")
        self.set_node(replace(self.view.nodes[name], state="online", since=self.now))
        self.say("sim", f"{name} is back" + (" with a new lease" if expired else ""))
        for key in sorted(self.held.pop(name, ())):
            rec = self.view.instances[key]
            if expired and fenced and rec.ha:  # what its fencing killed
                claimed = decide.claim(rec, name, self.now)
                if claimed is not rec and claimed is not None:
                    self.put(claimed)
                    self.say(name, f"{key} claimed back")
            where = self.view.instances[key].node
            if where != name:
                self.say(name, f"{key} lives on {where} now: not started")
            elif (key, name) not in self.runs:
                self.runs.add((key, name))
                self.say(name, f"{key} started")

    def running(self, _: object) -> None:
        where: dict[str, list[str]] = {}
        for key, node in sorted(self.runs):
            where.setdefault(node, []).append(key)
        self.say("sim", "running: " + "; ".join(f"{n} {', '.join(ks)}" for n, ks in sorted(where.items())))

    def wait(self, seconds: int) -> None:
        for _ in range(seconds):
            self.now += 1
            self.tick()

    def maintenance(self, arg: dict[str, bool]) -> None:
        for name, on in arg.items():
            events: list[str] = []
            self.set_node(replace(self.view.nodes[name], state="maintenance" if on else "online",
                                  since=self.now))
            self.say("sim", f"maintenance {'enabled' if on else 'disabled'} on {name}")
            plan = (decide.evacuation_plan if on else decide.restore_plan)(self.view, name, events=events)
            self.decided(events)
            for move in plan:
                self.put(decide.after(self.view.instances[move.instance_key], move))
                if move.target is not None:
                    self.runs.discard((move.instance_key, move.source))
                    self.runs.add((move.instance_key, move.target))
                elif move.action == "stop":
                    self.runs.discard((move.instance_key, move.source))

    # -- what the cluster's timers do

    def tick(self) -> None:
        for name, at in sorted(self.died.items()):
            node = self.view.nodes[name]
            if node.state in ("online", "maintenance") and self.now >= at + self.lease_ttl:
                self.set_node(replace(node, state="offline", since=self.now))
                self.say("sim", f"lease of {name} expired")
                if name in self.cut_off:
                    events: list[str] = []
                    stopped = decide.self_fence(self.view, name, events=events)
                    self.decided(events, name)
                    self.runs -= {(k, name) for k in stopped}
        self.elect()
        if self.view.leader not in self.died:  # a dead leader decides nothing until its lease expired
            self.lead()
        for when, step in [q for q in self.queued if q[0] <= self.now]:
            self.queued.remove((when, step))
            self.recover(step)
        count = Counter(k for k, _ in self.runs)
        for key in sorted(k for k, c in count.items() if c > 1):
            self.say("sim", f"{key} runs on " + " and ".join(sorted(n for k, n in self.runs if k == key)))

    def lead(self) -> None:
        """The leader's part of a second: recover the nodes past their fencing margin."""
        for name, node in sorted(self.view.nodes.items()):
            if node.state == "offline" and self.now >= node.since + self.fence_margin:
                events: list[str] = []
                plan = decide.recovery_plan(self.view, name, self.now, events=events)
                self.decided(events)
                for step in plan:
                    if isinstance(step, decide.Recover):
                        if self.recover_delay:
                            self.queued.append((self.now + self.recover_delay, step))
                        else:
                            self.recover(step)
                self.set_node(replace(node, state="fenced", since=self.now))

    def recover(self, step: decide.Recover) -> None:
        """The standby's part: the record taken over only if it is still
        the one the leader decided on."""
        rec = self.view.instances[step.instance_key]
        if rec.node != step.source or self.view.revisions.get(rec.key) != step.revision:
            self.say(step.target, f"{rec.key} not recovered: its record changed since the leader read it")
            return
        self.put(decide.after(rec, step))
        self.runs.add((step.instance_key, step.target))

    def elect(self) -> None:
        leader = self.view.leader
        if leader is not None and self.view.nodes[leader].state in ("online", "maintenance"):
            return
        live = [n for n, r in sorted(self.view.nodes.items()) if r.state in ("online", "maintenance")]
        self.view = replace(self.view, leader=live[0] if live else None)
        if live:
            self.say(live[0], "elected leader")

    def set_node(self, rec: NodeRecord) -> None:
        self.view = self.view.with_node(rec)

    def put(self, rec: InstanceRecord) -> None:
        self.revision += 1
        view = self.view.with_instance(rec)
        self.view = replace(view, revisions={**view.revisions, rec.key: self.revision})
