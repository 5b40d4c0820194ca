"""A QEMU virtual machine: what is configured (persisted) and what runs (not).

Cores and memory are fixed for the life of a QEMU process: a change is
recorded and applies at the next start, and until then ``pending_restart``
says so. The disk only grows, live where the VM runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import ClassVar

from osctl.protocol import INVALID, NOT_FOUND, OsctlError

from .attrs import loaded as loaded_attrs
from .deletion import Deletion
from .group import DEFAULT_GROUP, check_group_path
from .naming import check_hostname, check_name
from .lifecycle import State
from .netif import NetIf
from .sendlog import SendLog, held_state
from .units import SIZE_RANGE

STOPPED, STARTING, RUNNING, STOPPING = State.STOPPED, State.STARTING, State.RUNNING, State.STOPPING
STAGED, MIGRATING = State.STAGED, State.MIGRATING


def _mib(n: int) -> str:
    return f"{n >> 20} MiB"


@dataclass
class VmLimits:
    """Node policy for VM resources (from the daemon config's ``vm`` section)."""

    min_cores: int
    max_cores: int
    min_memory: int
    min_disk: int

    def check(self, cores: int | None = None, memory: int | None = None,
              disk: int | None = None) -> None:
        if cores is not None and not self.min_cores <= cores <= self.max_cores:
            raise OsctlError(INVALID, f"cores must be {self.min_cores} to {self.max_cores}, got {cores}")
        if memory is not None and memory < self.min_memory:
            raise OsctlError(INVALID, f"memory must be at least {_mib(self.min_memory)}, "
                                      f"got {_mib(memory)}")
        if disk is not None and disk < self.min_disk:
            raise OsctlError(INVALID, f"disk must be at least {_mib(self.min_disk)}, got {_mib(disk)}")


OUT, IN = "out", "in"


@dataclass
class VmTransfer:
    """A move between nodes under way, kept in the VM's config so that a
    daemon restarted mid-way knows it: ``out`` on the source (being sent to
    ``peer``), ``in`` on the destination (received from ``peer``: staged
    until it arrives). ``live``: the guest runs throughout."""

    direction: str
    peer: str
    live: bool
    token: str  # names the transfer in the calls between the two nodes
    started: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.direction not in (OUT, IN):
            raise OsctlError(INVALID, f"a transfer goes {OUT} or {IN}, not {self.direction!r}")

    def to_dict(self) -> dict:
        return {"direction": self.direction, "peer": self.peer, "live": self.live,
                "token": self.token, "started": self.started}

    @classmethod
    def from_dict(cls, d: "dict | VmTransfer | None") -> "VmTransfer | None":
        if d is None or isinstance(d, VmTransfer):
            return d
        return cls(direction=str(d["direction"]), peer=str(d["peer"]), live=bool(d["live"]),
                   token=str(d["token"]), started=float(d.get("started", 0)))


@dataclass
class VM:
    kind: ClassVar[str] = "vm"  # as Container.kind
    noun: ClassVar[str] = "VM"
    id: str
    pool: str
    user: str
    template: str
    version: str
    cores: int
    memory: int  # bytes
    disk: int  # bytes
    hostname: str | None = None
    # The resource group whose cgroup holds its QEMU while it runs.
    group: str = DEFAULT_GROUP
    # The desired power state: the daemon starts online VMs that are not
    # running when it starts, and start/stop/set online change it.
    online: bool = False
    created: float = field(default_factory=time.time)
    # Routed interfaces: a tap each on the node, virtio-net inside.
    netifs: list[NetIf] = field(default_factory=list)
    flavor: str | None = None  # the flavor its cores, memory and disk were last set from
    deletion: Deletion | None = None  # a staged deletion (model/deletion.py)
    attrs: dict[str, str] = field(default_factory=dict)  # frontends' metadata (model/attrs.py)
    transfer: VmTransfer | None = None  # a move to or from another node under way
    # Its replica at another node (``vm replicate``, cluster HA), as a
    # container's send log: the source's, or the staged replica's here.
    send_log: SendLog | None = None
    # Runtime, never persisted: learnt from QEMU (pidfile, QMP).
    state: State = field(default=STOPPED, compare=False)
    pid: int | None = field(default=None, compare=False)
    running_cores: int | None = field(default=None, compare=False)
    running_memory: int | None = field(default=None, compare=False)
    # A netif changed while it ran (applies at the next start; not kept
    # across a daemon restart).
    net_pending: bool = field(default=False, compare=False)

    PERSISTED = ("id", "user", "template", "version", "cores", "memory", "disk",
                 "hostname", "group", "online", "created", "netifs", "flavor", "deletion",
                 "attrs", "transfer", "send_log")

    def __post_init__(self) -> None:
        check_name("vm", self.id)
        check_name("user", self.user)
        check_name("template", self.template)
        self.group = check_group_path(self.group)
        if self.hostname is not None:
            check_hostname(self.hostname)
        # Saved values out of range are clamped, with warnings naming it.
        where = f"VM {self.pool}:{self.id}"
        self.memory = SIZE_RANGE.clamp(f"{where}: memory", self.memory)
        self.disk = SIZE_RANGE.clamp(f"{where}: disk", self.disk)
        self.netifs = [n if isinstance(n, NetIf) else NetIf.from_dict(n, where) for n in self.netifs]
        self.deletion = Deletion.from_dict(self.deletion)
        self.attrs = loaded_attrs(self.attrs, where)
        self.transfer = VmTransfer.from_dict(self.transfer)
        self.send_log = SendLog.from_dict(self.send_log)

    def netif(self, name: str) -> NetIf:
        for n in self.netifs:
            if n.name == name:
                return n
        raise OsctlError(NOT_FOUND, f"VM {self.id} has no netif {name!r}")

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    @property
    def pending_restart(self) -> bool:
        """Cores, memory or netifs changed since the running QEMU was started."""
        return self.running and (self.net_pending or (self.running_cores, self.running_memory)
                                 != (self.cores, self.memory))

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.PERSISTED}
        d["netifs"] = [n.to_dict() for n in self.netifs]
        d["deletion"] = self.deletion and self.deletion.to_dict()
        d["attrs"] = dict(self.attrs)
        d["transfer"] = self.transfer and self.transfer.to_dict()
        d["send_log"] = self.send_log and self.send_log.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict, pool: str) -> "VM":
        vm = cls(pool=pool, **{k: d[k] for k in cls.PERSISTED if k in d})
        if vm.deletion:
            vm.state = vm.deletion.held_state(vm.state)
        if vm.transfer and vm.transfer.direction == IN:
            vm.state = STAGED  # received, not yet arrived: not startable
        if vm.send_log:
            vm.state = held_state(vm.send_log, vm.state)  # a replica here: staged
        return vm

    def public(self) -> dict:
        d = self.to_dict()
        d.update(pool=self.pool, state=self.state, pid=self.pid,
                 pending_restart=self.pending_restart)
        return d
