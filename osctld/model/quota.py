"""Per-user quotas: how much of the node a tenant's containers may hold together.

A quota is opt-in per user (``osctl user set NAME quota ...``), or given to
every new user by the node's ``default_quota``. Each resource is optional;
``None`` is no quota on it. The seeds' staging tier is the preset
``staging``. Checking is pure: the caller computes the usage before and
after a change and gets one error naming every quota it would break.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, fields, replace
from typing import Iterable

from osctl.protocol import CONFLICT, INVALID, OsctlError

from .bounds import Range, shown
from .container import Container
from .netif import IPNetwork
from .units import SIZE_RANGE, parse_size
from .vm import VM

GIB = 1 << 30
# On the wire a quota has its field's name (the CLI turns ipv6-64 into it);
# the spelling the wire had before is accepted for one release.
QUOTA_NAMES = ("cpus", "memory", "disk", "ipv4", "ipv6_64", "containers")
OLD_NAMES = {"ipv6-64": "ipv6_64"}
SIZES = ("memory", "disk")
# What each may be: sizes as any size; every IPv4 address there is; the
# /64s a 64-bit counter holds; CPU cores and instances far beyond any node.
RANGES = {"cpus": Range(0, 1 << 16), "memory": SIZE_RANGE, "disk": SIZE_RANGE,
          "ipv4": Range(0, 1 << 32), "ipv6_64": Range(0, (1 << 63) - 1),
          "containers": Range(0, 1 << 20)}
# A container's own limit that each quota sums up (None: counted, not a limit).
LIMIT_OF = {"cpus": "cpu_limit", "memory": "memory", "disk": "disk"}


@dataclass
class Quota:
    cpus: float | None = None  # sum of the containers' cpu_limit
    memory: int | None = None  # sum of their memory limits, bytes
    disk: int | None = None  # sum of their disk quotas, bytes
    ipv4: int | None = None  # IPv4 addresses
    ipv6_64: int | None = None  # distinct IPv6 /64 prefixes
    containers: int | None = None  # containers and VMs together

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, d: dict | None, where: str = "quota") -> "Quota":
        """As saved; a value out of range (saved before there were bounds) is
        clamped, with a warning naming ``where``."""
        return cls(**{f.name: RANGES[f.name].clamp(f"{where}: {f.name}", (d or {}).get(f.name))
                      for f in fields(cls)})

    def updated(self, changes: dict[str, str | None]) -> "Quota":
        """A copy with operator-given values (``none`` lifts one)."""
        out = replace(self)
        for name, value in changes.items():
            field = OLD_NAMES.get(name, name)
            if field not in QUOTA_NAMES:
                raise OsctlError(INVALID, f"unknown quota {shown(name)}: use {', '.join(QUOTA_NAMES)}")
            if value is None or (isinstance(value, str)
                                 and value.strip().lower() in ("none", "unlimited")):
                setattr(out, field, None)
            else:
                setattr(out, field, _parse(field, value))
        return out


def _parse(field: str, value: object) -> int | float:
    """One quota value: a size, cores (a fraction is fine) or a whole count."""
    what = f"{field} quota"
    if field in SIZES:
        return parse_size(value, what, RANGES[field])
    parsed = None
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        try:
            parsed = float(value) if field == "cpus" else int(value)
        except (ValueError, OverflowError):
            pass
    if parsed is None:
        kind = "a number of cores" if field == "cpus" else "a whole number"
        raise OsctlError(INVALID, f"invalid {what} {shown(value)}: give {kind}")
    return RANGES[field].check(what, parsed, value)


PRESETS = {
    # The seeds' staging tier: 8 CPUs, 4 GiB, 120 GiB, 4 IPv4, 32 IPv6 /64, 4 servers.
    "staging": Quota(cpus=8, memory=4 * GIB, disk=120 * GIB, ipv4=4, ipv6_64=32, containers=4),
}


def preset(name: str) -> Quota:
    try:
        return replace(PRESETS[name])
    except KeyError:
        raise OsctlError(INVALID, f"unknown quota preset {name!r}: use {', '.join(PRESETS)}") from None


@dataclass
class Usage:
    """What a user's containers hold, summed over the limits they have."""

    cpus: float = 0
    memory: int = 0
    disk: int = 0
    ipv4: int = 0
    ipv6_64: int = 0
    containers: int = 0

    @classmethod
    def of(cls, servers: Iterable[Container | VM]) -> "Usage":
        """What ``servers`` (a user's containers and VMs) hold together."""
        u = cls()
        servers = list(servers)
        for server in servers:
            u.containers += 1
            for field, value in _summed(server).items():
                if value is not None:
                    setattr(u, field, getattr(u, field) + value)
        return u.with_addresses(prefix for s in servers for n in s.netifs for prefix, _ in n.held())

    def with_addresses(self, addresses: Iterable[str | IPNetwork]) -> "Usage":
        """Count addresses (the servers' netifs'): IPv4 ones, and IPv6 /64s;
        each once, where one lies inside another (an address inside a prefix
        routed to the same netif)."""
        v4, v6 = [], []
        for a in addresses:
            net = ipaddress.ip_network(a, strict=False)
            if net.version == 4:
                v4.append(net)
            else:
                v6.append(net.supernet(new_prefix=64) if net.prefixlen > 64 else net)
        n4 = sum(n.num_addresses for n in ipaddress.collapse_addresses(v4))
        n64 = sum(1 << (64 - n.prefixlen) for n in ipaddress.collapse_addresses(v6))
        return replace(self, ipv4=n4, ipv6_64=n64)


def _summed(inst: Container | VM) -> dict:
    """What a container or VM holds of each summed quota; a VM's cores, memory and
    disk are its limits."""
    if isinstance(inst, VM):
        return {"cpus": inst.cores, "memory": inst.memory, "disk": inst.disk}
    return {"cpus": inst.limits.cpu_limit, "memory": inst.limits.memory, "disk": inst.disk}


def _show(field: str, value) -> str:
    if field in SIZES:
        return f"{value / GIB:g}G" if value >= GIB else f"{value / (1 << 20):g}M"
    return f"{value:g}"


def check(user: str, quota: Quota, before: Usage, after: Usage,
          changed: Container | None = None, previous: Container | None = None,
          unenforceable: frozenset[str] = frozenset()) -> None:
    """Refuse a change that takes ``user`` over a quota it is not over already.

    ``changed``, the container being created (``previous`` None) or changed,
    must have its own limit for each summed quota the user has, where the
    change touches that limit: an unlimited container would make the quota
    meaningless. Except for ``unenforceable`` ones: "disk" where the pool has
    no disk quotas (a dir pool), which would otherwise refuse all.
    """
    missing, over = [], []
    for f in fields(Quota):
        limit = getattr(quota, f.name)
        if limit is None:
            continue
        if changed is not None and f.name in LIMIT_OF and f.name not in unenforceable:
            value = _summed(changed)[f.name]
            touched = previous is None or _summed(previous)[f.name] != value
            if value is None and touched:
                missing.append(f"quota {f.name} of user {user} is {_show(f.name, limit)}: "
                               f"container {changed.id} needs a {LIMIT_OF[f.name]} of its own")
        now, then = getattr(before, f.name), getattr(after, f.name)
        if then > limit and then > now:
            over.append(f"quota {f.name} of user {user} is {_show(f.name, limit)}: "
                        f"this would make it {_show(f.name, then)} (in use now: {_show(f.name, now)})")
    if missing or over:  # all of them at once: one refusal, one fix
        raise OsctlError(CONFLICT, "; ".join(missing + over))
