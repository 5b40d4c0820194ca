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
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Mapping, TypeVar

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
        self.problem = problem


_MISSING: Any = object()
R = TypeVar("R")


class _Fields:
    """A record's JSON object read field by field, each checked, so that a
    bad one names its key and field (``where``: the etcd key)."""

    def __init__(self, text: str | bytes | Any, where: str, prefix: str = ""):
        self.where, self.prefix = where, prefix
        if isinstance(text, (str, bytes)):
            try:
                text = json.loads(text)
            except (ValueError, UnicodeDecodeError) as e:
                raise BadRecord(where, f"not JSON ({e})") from None
        if not isinstance(text, dict):
            raise BadRecord(where, f"not a JSON object but {type(text).__name__}")
        self.d: dict = text

    def get(self, name: str, ok: Callable[[Any], bool], expected: str, default: Any = _MISSING) -> Any:
        """The field ``name`` if ``ok`` accepts it (``default`` when absent, if given)."""
        if name not in self.d:
            if default is _MISSING:
                raise BadRecord(self.where, f"{self.prefix}{name} is missing")
            return default
        value = self.d[name]
        if not ok(value):
            raise BadRecord(self.where, f"{self.prefix}{name} must be {expected}, "
                                        f"got {json.dumps(value)[:60]}")
        return value

    def count(self, name: str) -> int:
        return self.get(name, lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                        "a non-negative integer")

    def time(self, name: str, default: float | None = None) -> float | None:
        """Seconds of the epoch; null (and absent) means ``default``."""
        value = self.get(name, lambda v: v is default or isinstance(v, (int, float)) and not isinstance(v, bool)
                         and math.isfinite(v) and v >= 0,
                         "a time in seconds" + (" or null" if default is None else ""), default)
        return None if value is None else float(value)

    def choice(self, name: str, choices: tuple[str, ...], default: Any = _MISSING) -> str:
        return self.get(name, lambda v: v in choices, " or ".join(choices), default)

    def build(self, cls: Callable[..., R], **fields: Any) -> R:
        """``cls(**fields)``, its own checks' complaint said about ``where``."""
        try:
            return cls(**fields)
        except BadRecord as e:
            raise BadRecord(self.where, e.problem) from None

    def name(self, field: str, kind: str, default: Any = _MISSING) -> Any:
        """A name (node, instance, group) by ``naming.check_name``'s rules; ``default`` may be None."""
        article = "an" if kind[0] in "aeiou" else "a"
        value = self.get(field, lambda v: isinstance(v, str) or v is default, f"{article} {kind} name", default)
        if value is default:
            return value
        try:
            return check_name(kind, value)
        except OsctlError as e:
            raise BadRecord(self.where, e.message) from None


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
        cpus = f"{self.cpus} CPU{'' if self.cpus == 1 else 's'}"
        return f"{cpus}, {format_size(self.memory)} memory, {format_size(self.disk)} disk"

    @classmethod
    def read(cls, f: _Fields) -> Size:
        return cls(f.count("cpus"), f.count("memory"), f.count("disk"))


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
        f = _Fields(text, where)
        return f.build(cls, name=f.name("name", "node"),
                       address=f.get("address", lambda v: isinstance(v, str) and v != "", "an address"),
                       state=f.choice("state", NODE_STATES),
                       cpus=f.count("cpus"), memory=f.count("memory"), disk=f.count("disk"),
                       since=f.time("since", 0.0) or 0.0)


@dataclass(frozen=True)
class InstanceRecord:
    """Which node holds an instance, and what the cluster needs to know to
    move or recover it.

    ``evacuate`` defaults by kind (empty string given): ``live-migrate`` for
    a VM, so that a running VM keeps running when its node is emptied, and
    ``migrate`` for a container. ``evacuated_from`` names the node an
    evacuation took it from (restore brings it back); ``replica_at`` is when
    the last replica reached ``standby`` (HA). ``claimed_at`` is when a node
    last took it over outside a plan's move: the standby recovering it, or
    its own node claiming it back after fencing (``decide.claim``); the
    write changes the record, so a recovery planned on the record as it was
    before fails its compare-and-swap.
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
    claimed_at: float | None = None

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
        f = _Fields(text, where)
        size = f.get("size", lambda v: isinstance(v, dict), "an object with cpus, memory and disk")
        return f.build(cls, kind=f.choice("kind", KINDS), id=f.name("id", "instance"),
                       node=f.name("node", "node"),
                       size=Size.read(_Fields(size, where, "size.")),
                       server_group=f.name("server_group", "server group", None),
                       ha=f.get("ha", lambda v: isinstance(v, bool), "true or false", False),
                       standby=f.name("standby", "node", None),
                       evacuate=f.choice("evacuate", EVACUATE, ""),
                       evacuated_from=f.name("evacuated_from", "node", None),
                       replica_at=f.time("replica_at", None),
                       claimed_at=f.time("claimed_at", None))


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
        f = _Fields(text, where)
        return f.build(cls, name=f.name("name", "server group"), policy=f.choice("policy", POLICIES))


@dataclass(frozen=True)
class ClusterView:
    """The cluster as the decision functions see it: a snapshot, by name and
    by instance key. A node whose lease expired is here with state offline
    (its ``since``: when its key vanished)."""

    nodes: Mapping[str, NodeRecord] = field(default_factory=dict)
    instances: Mapping[str, InstanceRecord] = field(default_factory=dict)
    groups: Mapping[str, ServerGroup] = field(default_factory=dict)
    leader: str | None = None
    # Each instance record's etcd mod_revision as read (absent: unknown, as
    # in a plan's later steps): a recovery is done only on the record it
    # was decided on.
    revisions: Mapping[str, int] = field(default_factory=dict)

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
        return replace(self, instances={**self.instances, rec.key: rec},
                       revisions={k: v for k, v in self.revisions.items() if k != rec.key})

    def without(self, keys: set[str]) -> ClusterView:
        return replace(self, instances={k: r for k, r in self.instances.items() if k not in keys})

    def with_node(self, rec: NodeRecord) -> ClusterView:
        return replace(self, nodes={**self.nodes, rec.name: rec})
