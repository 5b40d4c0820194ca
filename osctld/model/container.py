"""A system container: what is configured (persisted) and what is running (not)."""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field

from osctl.protocol import INVALID, NOT_FOUND, OsctlError

from .naming import check_hostname, check_name
from .netif import NetIf

# Container states, as LXC names them, lower case. "starting" and "stopping"
# are the daemon's own while a command is at work.
STOPPED, STARTING, RUNNING, STOPPING, ABORTING, FROZEN = (
    "stopped", "starting", "running", "stopping", "aborting", "frozen",
)


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
    netifs: list[NetIf] = field(default_factory=list)
    # Runtime, never persisted: the daemon learns it from LXC.
    state: str = field(default=STOPPED, compare=False)
    init_pid: int | None = field(default=None, compare=False)

    PERSISTED = (
        "id", "user", "distribution", "version", "hostname", "dns_resolvers",
        "autostart", "autostart_priority", "created",
    )

    def __post_init__(self) -> None:
        check_name("container", self.id)
        check_name("user", self.user)
        if self.hostname is not None:
            check_hostname(self.hostname)
        self.dns_resolvers = check_resolvers(self.dns_resolvers)

    @property
    def running(self) -> bool:
        return self.state in (RUNNING, FROZEN)

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.PERSISTED}
        d["netifs"] = [n.to_dict() for n in self.netifs]
        return d

    @classmethod
    def from_dict(cls, d: dict, pool: str) -> "Container":
        netifs = [NetIf.from_dict(n) for n in d.get("netifs") or []]
        return cls(pool=pool, netifs=netifs, **{k: d[k] for k in cls.PERSISTED if k in d})

    def netif(self, name: str) -> NetIf:
        for n in self.netifs:
            if n.name == name:
                return n
        raise OsctlError(NOT_FOUND, f"container {self.id} has no netif {name!r}")

    def public(self) -> dict:
        d = self.to_dict()
        d.update(pool=self.pool, state=self.state, init_pid=self.init_pid)
        return d
