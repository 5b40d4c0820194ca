"""The cluster's records, as etcd holds them under ``/osctld/``: nodes,
instances, server groups, and the view the decision functions read.

Pure data: no etcd, no clock. Every record is frozen, so a compare-and-swap
update is a function from the record read to the record to write
(``dataclasses.replace``) and can be retried on a conflict without undoing
anything. A record read back is checked field by field: etcd is written by
other nodes, possibly by another version of osctld, and a value that is not
what this code expects must fail with a message naming the key and the
field (``BadRecord``), not deep inside a placement.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping

from osctl.protocol import INVALID, OsctlError

from .naming import check_name
from .units import format_size

NODE_STATES = ("online", "maintenance", "offline", "fenced")
KINDS = ("ct", "vm")
POLICIES = ("affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity")
# What evacuating a node does to an instance (Incus' cluster.evacuate):
# moved stopped, moved running (VMs only; a container has no live move), or
# stopped where it is.
EVACUATE = ("migrate", "live-migrate", "stop")


class BadRecord(OsctlError):
    """A record from etcd that is not JSON or not the shape this code writes."""

    def __init__(self, where: str, problem: str):
        super().__init__(INVALID, f"bad cluster record {where}: {problem}")


def _get(d: Mapping[str, Any], name: str, where: str, check: Callable[[Any], bool],
         expected: str, default: Any = ...) -> Any:
    """``d[name]`` if ``check`` accepts it (``default`` when absent, if given)."""
    if name not in d:
        if default is ...:
            raise BadRecord(where, f"{name} is missing")
        return default
    value = d[name]
    if not check(value):
        raise BadRecord(where, f"{name} must be {expected}, got {json.dumps(value)[:60]}")
    return value


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _time(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


def _name_or_none(v: Any) -> bool:
    return v is None or isinstance(v, str)


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], bool]:
    return lambda v: v in choices


def _name(kind: str, value: str, where: str) -> str:
    try:
        return check_name(kind, value)
    except OsctlError as e:
        raise BadRecord(where, e.message) from None


def _load(text: str | bytes, where: str) -> dict:
    try:
        d = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRecord(where, f"not JSON ({e})") from None
    if not isinstance(d, dict):
        raise BadRecord(where, f"not a JSON object but {type(d).__name__}")
    return d


@dataclass(frozen=True)
class Size:
    """What an instance takes of a node, and what a node has: CPUs, bytes of
    memory and of disk (a flavor's cores, memory and disk)."""

    cpus: int = 0
    memory: int = 0
    disk: int = 0

    def __add__(self, other: Size) -> Size:
        return Size(self.cpus + other.cpus, self.memory + other.memory, self.disk + other.disk)

    def __sub__(self, other: Size) -> Size:
        return Size(self.cpus - other.cpus, self.memory - other.memory, self.disk - other.disk)

    def within(self, other: Size) -> bool:
        """Every part at most ``other``'s: this fits into that much free."""
        return self.cpus <= other.cpus and self.memory <= other.memory and self.disk <= other.disk

    def __str__(self) -> str:
        return f"{self.cpus} CPUs, {format_size(self.memory)} memory, {format_size(self.disk)} disk"

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Size:
        if not isinstance(d, dict):
            raise BadRecord(where, "size must be an object with cpus, memory and disk")
        return cls(*(_get(d, k, where, _count, "a non-negative integer") for k in ("cpus", "memory", "disk")))


@dataclass(frozen=True)
class NodeRecord:
    """A member: where it is reached, its state since ``since`` (seconds of
    the epoch), and its capacity, which instances' sizes are counted against."""

    name: str
    address: str
    state: str  # NODE_STATES
    cpus: int
    memory: int  # bytes
    disk: int  # bytes
    since: float = 0.0

    def __post_init__(self) -> None:
        if self.state not in NODE_STATES:
            raise BadRecord(f"nodes/{self.name}", f"state must be one of {', '.join(NODE_STATES)}")

    @property
    def capacity(self) -> Size:
        return Size(self.cpus, self.memory, self.disk)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes, where: str = "nodes/?") -> NodeRecord:
        d = _load(text, where)
        return cls(name=_name("node", _get(d, "name", where, lambda v: isinstance(v, str), "a name"), where),
                   address=_get(d, "address", where, lambda v: isinstance(v, str) and v != "", "an address"),
                   state=_get(d, "state", where, _one_of(NODE_STATES), " or ".join(NODE_STATES)),
                   **{k: _get(d, k, where, _count, "a non-negative integer") for k in ("cpus", "memory", "disk")},
                   since=float(_get(d, "since", where, _time, "a time in seconds", 0.0)))


@dataclass(frozen=True)
class InstanceRecord:
    """Which node holds an instance, and what the cluster needs to know to
    move or recover it.

    ``evacuate`` defaults by kind (empty string given): ``live-migrate`` for
    a VM, so that a running VM keeps running when its node is emptied, and
    ``migrate`` for a container. ``evacuated_from`` names the node an
    evacuation took it from (restore brings it back); ``replica_at`` is when
    the last replica reached ``standby`` (HA).
    """

    kind: str  # KINDS
    id: str
    node: str
    size: Size
    server_group: str | None = None
    ha: bool = False
    standby: str | None = None
    evacuate: str = ""  # EVACUATE; "" = by kind
    evacuated_from: str | None = None
    replica_at: float | None = None

    def __post_init__(self) -> None:
        where = f"instances/{self.kind}/{self.id}"
        if self.kind not in KINDS:
            raise BadRecord(where, f"kind must be one of {', '.join(KINDS)}")
        if not self.evacuate:
            object.__setattr__(self, "evacuate", "live-migrate" if self.kind == "vm" else "migrate")
        if self.evacuate not in EVACUATE:
            raise BadRecord(where, f"evacuate must be one of {', '.join(EVACUATE)}")
        if self.standby is not None and self.standby == self.node:
            raise BadRecord(where, f"its standby is its own node {self.node}")

    @property
    def key(self) -> str:
        """``ct/101``: its key under ``instances/``, and its name in plans and logs."""
        return f"{self.kind}/{self.id}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes, where: str = "instances/?") -> InstanceRecord:
        d = _load(text, where)
        is_str = lambda v: isinstance(v, str)  # noqa: E731
        kind = _get(d, "kind", where, _one_of(KINDS), " or ".join(KINDS))
        opt_node = lambda k: _get(d, k, where, _name_or_none, "a node name or null", None)  # noqa: E731
        nodes = {k: opt_node(k) for k in ("standby", "evacuated_from")}
        group = _get(d, "server_group", where, _name_or_none, "a group name or null", None)
        at = _get(d, "replica_at", where, lambda v: v is None or _time(v), "a time in seconds or null", None)
        return cls(kind=kind,
                   id=_name("instance", _get(d, "id", where, is_str, "an id"), where),
                   node=_name("node", _get(d, "node", where, is_str, "a node name"), where),
                   size=Size.from_dict(_get(d, "size", where, lambda v: True, ""), where),
                   server_group=None if group is None else _name("server group", group, where),
                   ha=_get(d, "ha", where, lambda v: isinstance(v, bool), "true or false", False),
                   evacuate=_get(d, "evacuate", where, _one_of(EVACUATE), " or ".join(EVACUATE), ""),
                   replica_at=None if at is None else float(at),
                   **{k: None if v is None else _name("node", v, where) for k, v in nodes.items()})


@dataclass(frozen=True)
class ServerGroup:
    """Instances kept together (affinity) or apart (anti-affinity) on nodes;
    a ``soft-`` policy is a preference, a hard one a refusal."""

    name: str
    policy: str  # POLICIES

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise BadRecord(f"server-groups/{self.name}", f"policy must be one of {', '.join(POLICIES)}")

    @property
    def hard(self) -> bool:
        return not self.policy.startswith("soft-")

    @property
    def together(self) -> bool:
        """Affinity (hard or soft) rather than anti-affinity."""
        return "anti-" not in self.policy

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes, where: str = "server-groups/?") -> ServerGroup:
        d = _load(text, where)
        return cls(name=_name("server group", _get(d, "name", where, lambda v: isinstance(v, str), "a name"),
                              where),
                   policy=_get(d, "policy", where, _one_of(POLICIES), " or ".join(POLICIES)))


@dataclass(frozen=True)
class ClusterView:
    """The cluster as the decision functions see it: a snapshot, by name and
    by instance key. A node whose lease expired is here with state offline
    (its ``since``: when its key vanished)."""

    nodes: Mapping[str, NodeRecord] = field(default_factory=dict)
    instances: Mapping[str, InstanceRecord] = field(default_factory=dict)
    groups: Mapping[str, ServerGroup] = field(default_factory=dict)
    leader: str | None = None

    def on(self, node: str) -> list[InstanceRecord]:
        """The instances ``node`` holds, by key."""
        return [r for _, r in sorted(self.instances.items()) if r.node == node]

    def used(self, node: str) -> Size:
        return sum((r.size for r in self.on(node)), Size())

    def free(self, node: str) -> Size:
        return self.nodes[node].capacity - self.used(node)

    def members(self, group: str) -> list[InstanceRecord]:
        """The instances in server group ``group``, by key."""
        return [r for _, r in sorted(self.instances.items()) if r.server_group == group]

    def with_instance(self, rec: InstanceRecord) -> ClusterView:
        """This view with ``rec`` added or replaced (a plan's later steps see its earlier ones)."""
        return ClusterView(self.nodes, {**self.instances, rec.key: rec}, self.groups, self.leader)

    def without(self, keys: set[str]) -> ClusterView:
        return ClusterView(self.nodes, {k: r for k, r in self.instances.items() if k not in keys},
                           self.groups, self.leader)

    def with_node(self, rec: NodeRecord) -> ClusterView:
        return ClusterView({**self.nodes, rec.name: rec}, self.instances, self.groups, self.leader)
