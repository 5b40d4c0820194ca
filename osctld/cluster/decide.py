"""What the cluster's leader decides, apart from doing it: where a new
instance goes, where a node's instances go when it is emptied and back when
it is restored, and which of a dead node's instances start on their standby.

Pure: a ``ClusterView`` (and the time, where it matters) in, a decision
out; no etcd, no LXC, no clock. So the same functions serve the leader and
the scenario tests (tests/unit/cluster_scenarios, in the style of Proxmox's
HA simulator), and a decision can be taken again after a leader died half
way: it is read from the records, which say what was already done.

Rules:
- Only ``online`` nodes receive. A node's use is the sum of the sizes of
  the instances its records name, stopped or running; an instance fits
  where every part (CPUs, memory, disk) fits into what is free.
- Among the nodes that may take it, the one with the most free memory,
  then CPUs, then disk, then the first by name: the same view always gives
  the same answer.
- Server groups: a hard policy that cannot be met refuses (``NoPlacement``
  with the reason); a soft one places as well as it can and says so in the
  placement's note. Affinity goes where its members are (the most of them
  first); anti-affinity goes where none is, soft anti-affinity then where
  the fewest are.
- Evacuation follows each instance's ``evacuate`` setting; members of a
  hard affinity group that leave together are placed together (their sizes
  summed), so they cannot end up split.
- Each function can append stable, human lines to ``events`` (the
  scenario tests compare them).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from typing import Iterable, Mapping, Sequence

from osctl.protocol import CONFLICT, OsctlError

from osctld.model.cluster import ClusterView, InstanceRecord, Size

# A move's action: a cold move (a container's send, a VM stopped, moved and
# started again if it ran), a live move (a running VM), a stop where it is;
# "start": restore starting again what evacuation stopped in place.
ACTIONS = ("migrate", "live-migrate", "stop", "start")


class NoPlacement(OsctlError):
    """No node may take the instance: a hard policy or capacity says no."""

    def __init__(self, reason: str):
        super().__init__(CONFLICT, reason)
        self.reason = reason


@dataclass(frozen=True)
class Placement:
    node: str
    note: str | None = None  # a soft policy that could not be met, said plainly


@dataclass(frozen=True)
class Move:
    """One instance's part of an evacuation or a restore. ``target`` None:
    it stays on ``source`` (``reason`` says why), stopped there only if
    ``action`` is ``stop``. With a target, ``reason`` is a soft policy's note."""

    instance_key: str
    source: str
    target: str | None
    action: str  # ACTIONS
    reason: str | None = None


@dataclass(frozen=True)
class Recover:
    """Start a dead node's HA instance on its standby from the last replica,
    ``age`` seconds old (the data written since is lost). ``revision``: the
    record's etcd mod_revision the plan was made on; the standby takes the
    record over only while it is still that one (None: unchecked), so a
    node that came back and claimed it (``claim``) in between keeps it."""

    instance_key: str
    source: str
    target: str
    age: float
    note: str | None = None
    revision: int | None = None


@dataclass(frozen=True)
class Skip:
    """A dead node's instance that is not recovered, and why."""

    instance_key: str
    source: str
    reason: str


def _log(events: list[str] | None, line: str) -> None:
    if events is not None:
        events.append(line)


def _best(view: ClusterView, nodes: Iterable[str]) -> str:
    def rank(n: str) -> tuple:
        free = view.free(n)
        return (-free.memory, -free.cpus, -free.disk, n)
    return min(nodes, key=rank)


def _why_not(view: ClusterView, node: str, allowed: Sequence[str]) -> str:
    """Why ``node`` cannot take what was asked, in words."""
    if node not in view.nodes:
        return f"{node} is not a member"
    if node not in allowed:
        return f"{node} is excluded"
    state = view.nodes[node].state
    return f"{node} is {state}" if state != "online" else f"{node} has {view.free(node)} free"


def _choose(view: ClusterView, size: Size, group_name: str | None, allowed: Sequence[str]) -> Placement:
    """Where ``size`` goes among ``allowed`` nodes, by the module's rules."""
    online = [n for n in allowed if n in view.nodes and view.nodes[n].state == "online"]
    if not online:
        states = ", ".join(f"{n} {view.nodes[n].state}" if n in view.nodes else f"{n} not a member"
                           for n in allowed) or "no node to choose from"
        raise NoPlacement(f"no online node to place on ({states})")
    fits = [n for n in online if size.within(view.free(n))]

    def anywhere(among: list[str] = fits, note: str | None = None) -> Placement:
        if not among:
            raise NoPlacement(f"no online node has room for {size}: " + "; ".join(
                f"{n} has {view.free(n)} free" for n in online))
        return Placement(_best(view, among), note)

    group = view.groups.get(group_name) if group_name is not None else None
    if group_name is not None and group is None:
        raise NoPlacement(f"server group {group_name} does not exist")
    held = Counter(r.node for r in view.members(group.name)) if group else Counter[str]()
    if group is None or not held:
        return anywhere()
    said = f"server group {group.name} ({group.policy})"
    where = ", ".join(sorted(held))
    if group.together:
        near = [n for n in fits if n in held]
        if near:
            most = max(held[n] for n in near)
            return anywhere([n for n in near if held[n] == most])
        why = "; ".join(_why_not(view, n, allowed) for n in sorted(held))
        if group.hard:
            raise NoPlacement(f"{said}: its members are on {where} and {why}")
        node = anywhere().node
        return Placement(node, f"{said}: placed on {node}, apart from its members on {where} ({why})")
    apart = [n for n in fits if n not in held]
    if apart:
        return anywhere(apart)
    empty = [n for n in online if n not in held]
    if group.hard:
        if not empty:
            raise NoPlacement(f"{said}: every online node already holds a member ({where})")
        raise NoPlacement(f"{said}: the online nodes without a member have no room: " + "; ".join(
            f"{n} has {view.free(n)} free" for n in empty))
    if not fits:
        return anywhere()  # a refusal: nothing fits at all
    fewest = min(held[n] for n in fits)
    node = _best(view, [n for n in fits if held[n] == fewest])
    return Placement(node, f"{said}: no node with room is without a member; placed on {node} "
                           f"beside {fewest} member{'s' if fewest > 1 else ''}")


def place(view: ClusterView, size: Size, group: str | None = None, exclude: Iterable[str] = (), *,
          key: str = "new instance", events: list[str] | None = None) -> Placement:
    """The node a new instance of ``size`` in server ``group`` goes to (not
    one of ``exclude``); ``NoPlacement`` when no node may take it."""
    skip = set(exclude)
    allowed = [n for n in sorted(view.nodes) if n not in skip]
    try:
        p = _choose(view, size, group, allowed)
    except NoPlacement as e:
        _log(events, f"place {key}: refused: {e.reason}")
        raise
    _log(events, f"place {key} on {p.node}" + (f" (note: {p.note})" if p.note else ""))
    return p


def move_action(rec: InstanceRecord) -> str:
    """How ``rec`` leaves a node: its ``evacuate`` setting, except that a
    container has no live move (it goes by send/receive)."""
    if rec.evacuate == "live-migrate" and rec.kind == "ct":
        return "migrate"
    return rec.evacuate


def _units(leaving: list[InstanceRecord], view: ClusterView) -> list[list[InstanceRecord]]:
    """The instances that leave together: a hard affinity group's members
    as one, every other one alone; the biggest first (they are the hardest
    to fit), then by key."""
    by_group: dict[str, list[InstanceRecord]] = {}
    units: list[list[InstanceRecord]] = []
    for r in leaving:
        g = view.groups.get(r.server_group) if r.server_group else None
        if g is not None and g.policy == "affinity":
            if g.name not in by_group:
                by_group[g.name] = []
                units.append(by_group[g.name])
            by_group[g.name].append(r)
        else:
            units.append([r])

    def rank(unit: list[InstanceRecord]) -> tuple:
        total = _total(unit)
        return (-total.memory, -total.cpus, -total.disk, unit[0].key)
    return sorted(units, key=rank)


def _total(unit: Iterable[InstanceRecord]) -> Size:
    return sum((r.size for r in unit), Size())


def _say(events: list[str] | None, what: str, m: Move) -> None:
    if m.target is None:
        _log(events, f"{what}: {m.instance_key} stays on {m.source} ({m.action}): {m.reason}")
    elif m.target == m.source:
        _log(events, f"{what}: {m.instance_key} {m.action} on {m.source}")
    else:
        note = f" (note: {m.reason})" if m.reason else ""
        _log(events, f"{what}: {m.instance_key} {m.source} -> {m.target} ({m.action}){note}")


def evacuation_plan(view: ClusterView, node: str, *, events: list[str] | None = None) -> list[Move]:
    """Where each instance on ``node`` goes when it is emptied, placed by
    ``place``'s rules as if the earlier moves were done. An instance whose
    ``evacuate`` is ``stop`` is stopped where it is; one that no node may
    take stays (target None, with the reason), running."""
    on = view.on(node)
    leaving = [r for r in on if r.evacuate != "stop"]
    work = view.without({r.key for r in leaving})
    allowed = [n for n in sorted(view.nodes) if n != node]
    plan: list[Move] = []
    _log(events, f"evacuate {node}: {len(on)} instance{'s' if len(on) != 1 else ''}")
    for r in on:
        if r.evacuate == "stop":
            plan.append(Move(r.key, node, None, "stop", "its evacuate setting is stop"))
    for unit in _units(leaving, view):
        try:
            p = _choose(work, _total(unit), unit[0].server_group, allowed)
        except NoPlacement as e:
            why = e.reason if len(unit) == 1 else \
                f"server group {unit[0].server_group} (affinity) leaves together: {e.reason}"
            plan += [Move(r.key, node, None, move_action(r), why) for r in unit]
            for r in unit:
                work = work.with_instance(r)
            continue
        for r in unit:
            plan.append(Move(r.key, node, p.node, move_action(r), p.note))
            work = work.with_instance(replace(r, node=p.node))
    plan.sort(key=lambda m: m.instance_key)
    for m in plan:
        _say(events, f"evacuate {node}", m)
    return plan


def restore_plan(view: ClusterView, node: str, *, events: list[str] | None = None) -> list[Move]:
    """The instances an evacuation took from ``node``, back to it (those
    stopped there, started again), each by ``place``'s rules limited to
    ``node``: one that may not come back stays where it is, with the reason."""
    back = [r for _, r in sorted(view.instances.items()) if r.evacuated_from == node]
    work = view.without({r.key for r in back if r.node != node})
    plan: list[Move] = []
    _log(events, f"restore {node}: {len(back)} instance{'s' if len(back) != 1 else ''}")
    for r in back:
        if r.node == node:
            m = Move(r.key, node, node, "start")
        else:
            try:
                p = _choose(work, r.size, r.server_group, [node])
                m = Move(r.key, r.node, node, move_action(r), p.note)
                r = replace(r, node=node)
            except NoPlacement as e:
                m = Move(r.key, r.node, None, move_action(r), e.reason)
            work = work.with_instance(r)
        plan.append(m)
        _say(events, f"restore {node}", m)
    return plan


def after(rec: InstanceRecord, step: Move | Recover) -> InstanceRecord:
    """``rec`` as its record reads once ``step`` is done (the CAS update's
    function). An evacuation records where it came from; a restore, a
    recovery and a start clear that. A recovered instance's standby becomes
    the node it left: replicas go back there once it returns. It has no
    replica there yet (what the node left holds is its old copy, no
    replica of the recovered one): ``replica_at`` is cleared, so that its
    new node dying before a replica reached the old one is no recovery onto
    a copy that is not there."""
    if isinstance(step, Recover):
        return replace(rec, node=step.target, standby=step.source, evacuated_from=None,
                       replica_at=None)
    if step.action == "start":
        return replace(rec, evacuated_from=None)
    if step.target is None:
        # Stopped in place by evacuation: restore starts it again.
        return replace(rec, evacuated_from=step.source) if step.action == "stop" else rec
    if step.target == rec.evacuated_from:
        return replace(rec, node=step.target, evacuated_from=None)
    return replace(rec, node=step.target, evacuated_from=step.source)


def self_fence(view: ClusterView, node: str, *, events: list[str] | None = None) -> list[str]:
    """The instances ``node`` must stop once it cannot refresh its lease
    (before the TTL and the fencing margin have passed): its HA ones, which
    the leader will start on their standby. The others are never started
    elsewhere, so they keep running through a partition."""
    ha = [r.key for r in view.on(node) if r.ha]
    _log(events, f"fence {node}: stop " + (", ".join(ha) if ha else "nothing (no HA instance)"))
    return ha


def claim(rec: InstanceRecord | None, node: str, now: float) -> InstanceRecord | None:
    """The record as ``node`` writes it to claim back an instance it killed
    when it fenced itself and may start again (its lease expired meanwhile,
    so a recovery may have been planned): only while the record still names
    ``node``, and then changed (``claimed_at``), so that a recovery planned
    on the record as it was fails its compare-and-swap. Else ``rec`` itself
    (nothing written: it was recovered elsewhere, or is gone)."""
    if rec is None or rec.node != node:
        return rec
    return replace(rec, claimed_at=now)


def stale_copy(rec: InstanceRecord | None, here: str, sender: str) -> bool:
    """Whether this node's (``here``) copy of an instance is a stale one
    that a replica from ``sender`` replaces: its record places it on the
    sender and names this node its standby. That is a node back after the
    instance was recovered elsewhere (the record names the node it left as
    the standby): its copy holds the instance as it was when this node was
    cut off, and what it holds beyond the replica the recovery started from
    is the data the recovery lost anyway."""
    return rec is not None and rec.node == sender != here and rec.standby == here


def recovery_plan(view: ClusterView, dead_node: str, now: float,
                  replica_ages: Mapping[str, float] | None = None, *,
                  events: list[str] | None = None) -> list[Recover | Skip]:
    """What becomes of the instances on ``dead_node`` (offline or fenced,
    past the fencing margin: the caller's to know): an HA one starts on its
    standby if that node is online and holds a replica; every other one is
    reported and stays. ``replica_ages``: seconds since each instance's last
    replica, as its standby says (else ``now - replica_at``).

    Decided from the records alone: once a recovery is done its record
    names the standby, so a new leader asking again decides nothing twice."""
    state = view.nodes[dead_node].state if dead_node in view.nodes else "offline"
    if state not in ("offline", "fenced"):
        raise OsctlError(CONFLICT, f"node {dead_node} is {state}: there is nothing to recover")
    ages = replica_ages or {}
    plan: list[Recover | Skip] = []
    work = view
    on = view.on(dead_node)
    _log(events, f"recover {dead_node}: {len(on)} instance{'s' if len(on) != 1 else ''}")
    for r in on:
        standby = view.nodes.get(r.standby) if r.standby else None
        age = ages.get(r.key, None if r.replica_at is None else max(0.0, now - r.replica_at))
        step: Recover | Skip
        if not r.ha:
            step = Skip(r.key, dead_node, f"not HA: it stays on {dead_node} until that node is back")
        elif r.standby is None:
            step = Skip(r.key, dead_node, "HA without a standby node")
        elif standby is None or standby.state != "online":
            step = Skip(r.key, dead_node,
                        f"its standby {r.standby} is {'not a member' if standby is None else standby.state}")
        elif age is None:
            step = Skip(r.key, dead_node, f"no replica of it on {r.standby} yet")
        else:
            short = not r.size.within(work.free(r.standby))
            note = f"{r.standby} has only {work.free(r.standby)} free: started anyway" if short else None
            step = Recover(r.key, dead_node, r.standby, age, note, view.revisions.get(r.key))
            work = work.with_instance(after(r, step))
        plan.append(step)
        if isinstance(step, Recover):
            _log(events, f"recover {dead_node}: {r.key} -> {step.target} from a replica {step.age:g}s old"
                         + (f" (note: {step.note})" if step.note else ""))
        else:
            _log(events, f"recover {dead_node}: {r.key} skipped: {step.reason}")
    return plan
