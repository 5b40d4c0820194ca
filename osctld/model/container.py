"""A system container: what is configured (persisted) and what is running (not)."""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field
from typing import ClassVar

from osctl.protocol import INVALID, NOT_FOUND, OsctlError

from .deletion import Deletion
from .device import DeviceGrant
from .group import DEFAULT_GROUP, check_group_path
from .limits import Limits
from .naming import check_hostname, check_name
from .lifecycle import State
from .netif import NetIf
from .prlimit import loaded as loaded_prlimits
from .sendlog import SendLog, held_state
from .units import SIZE_RANGE

STOPPED, STARTING, RUNNING, STOPPING, FROZEN = (
    State.STOPPED, State.STARTING, State.RUNNING, State.STOPPING, State.FROZEN)


def check_resolvers(values: list[str]) -> list[str]:
    out = []
    for v in values:
        try:
            out.append(str(ipaddress.ip_address(v)))
        except ValueError:
            raise OsctlError(INVALID, f"invalid DNS resolver {v!r}: give IP addresses") from None
    return out


@dataclass
class Container:
    # The kind's name in verbs, lock keys and events (a VM's is "vm").
    kind: ClassVar[str] = "ct"
    noun: ClassVar[str] = "container"  # in messages
    id: str
    pool: str
    user: str
    distribution: str
    version: str
    hostname: str | None = None
    dns_resolvers: list[str] = field(default_factory=list)
    autostart: bool = False
    autostart_priority: int = 10
    created: float = field(default_factory=time.time)
    features: list[str] = field(default_factory=list)  # names from runtime.features
    devices: list[DeviceGrant] = field(default_factory=list)  # grants of its own
    prlimits: dict[str, list] = field(default_factory=dict)  # name -> [soft, hard]
    # A change staged (--no-restart) while it ran: in force at its next start.
    restart_pending: bool = False
    group: str = DEFAULT_GROUP  # the resource group whose cgroup holds it
    limits: Limits = field(default_factory=Limits)
    disk: int | None = None  # bytes: the rootfs quota, where the backend has quotas
    netifs: list[NetIf] = field(default_factory=list)
    flavor: str | None = None  # the flavor its limits and disk were last set from
    deletion: Deletion | None = None  # a staged deletion (model/deletion.py)
    send_log: SendLog | None = None  # a transfer to or from another node (model/sendlog.py)
    # Runtime, never persisted: the daemon learns it from LXC.
    state: State = field(default=STOPPED, compare=False)
    init_pid: int | None = field(default=None, compare=False)
    # Why it stopped last (osctld.runtime.container.record_stop); kept in the run directory.
    last_stop: dict | None = field(default=None, compare=False)
    # The config (``to_dict``) it runs while changes are staged, for a
    # restart whose start fails to go back to; unknown after a daemon restart.
    running_config: dict | None = field(default=None, compare=False, repr=False)

    PERSISTED = (
        "id", "user", "distribution", "version", "hostname", "dns_resolvers",
        "autostart", "autostart_priority", "created", "group", "limits", "disk",
        "features", "devices", "prlimits", "restart_pending", "netifs", "flavor", "deletion",
        "send_log",
    )

    def __post_init__(self) -> None:
        check_name("container", self.id)
        # Saved values out of range are clamped, with warnings naming it.
        where = f"container {self.pool}:{self.id}"
        check_name("user", self.user)
        if self.hostname is not None:
            check_hostname(self.hostname)
        self.dns_resolvers = check_resolvers(self.dns_resolvers)
        self.devices = [g if isinstance(g, DeviceGrant) else DeviceGrant.from_dict(g)
                        for g in self.devices]
        self.group = check_group_path(self.group)
        if isinstance(self.limits, dict):
            self.limits = Limits.from_dict(self.limits, where)
        self.disk = SIZE_RANGE.clamp(f"{where}: disk", self.disk)
        self.prlimits = loaded_prlimits(self.prlimits, where)
        self.netifs = [n if isinstance(n, NetIf) else NetIf.from_dict(n, where) for n in self.netifs]
        self.deletion = Deletion.from_dict(self.deletion)
        self.send_log = SendLog.from_dict(self.send_log)

    @property
    def running(self) -> bool:
        return self.state in (RUNNING, FROZEN)

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.PERSISTED}
        d["devices"] = [g.to_dict() for g in self.devices]
        d["limits"] = self.limits.to_dict()
        d["netifs"] = [n.to_dict() for n in self.netifs]
        d["deletion"] = self.deletion and self.deletion.to_dict()
        d["send_log"] = self.send_log and self.send_log.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict, pool: str) -> "Container":
        ct = cls(pool=pool, **{k: d[k] for k in cls.PERSISTED if k in d})
        if ct.deletion:
            ct.state = ct.deletion.held_state(ct.state)
        if ct.send_log:
            ct.state = held_state(ct.send_log, ct.state)
        return ct

    def netif(self, name: str) -> NetIf:
        for n in self.netifs:
            if n.name == name:
                return n
        raise OsctlError(NOT_FOUND, f"container {self.id} has no netif {name!r}")

    def public(self) -> dict:
        d = self.to_dict()
        d.update(pool=self.pool, state=self.state, init_pid=self.init_pid, last_stop=self.last_stop)
        return d
