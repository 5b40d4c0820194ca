"""Accounts: host users who may use the account socket, and their permissions.

A frontend acting for a tenant connects as a host user of its own; SO_PEERCRED
names the account. An account holds permissions on resource groups, as the
seeds' platform grants them (``stats``, ``login``, ``sudo-srv``) plus
``manager``; each includes the ones before it. A permission on a group
applies to its child groups unless a child has a permission of its own for
that account: the nearest one on the way to the root decides.

A service account (``s-`` names, as in the seeds) belongs to one group: its
name is unique in that group, and it holds permissions only there and below.
Its reference is ``<name>@<pool>:<group>``.

Root is no account: it keeps every right (``ROOT``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from osctl.protocol import INVALID, OsctlError

from .group import ancestors, check_group_path
from .naming import check_name

SERVICE_PREFIX = "s-"
# Host users an account may be: not root, not (uid_t)-1.
MAX_UID = 2**32 - 2


class Perm(enum.IntEnum):
    """What an account may do in a group; each includes those below it."""

    STATS = 1  # read-only: ls, show, usage, consumption, events
    LOGIN = 2  # stats plus exec, attach, console
    SUDO_SRV = 3  # login plus start, stop, restart, maintenance run
    MANAGER = 4  # sudo-srv plus new, set, del, netif changes (within the quotas)

    @property
    def wire(self) -> str:
        return self.name.lower().replace("_", "-")

    @classmethod
    def parse(cls, value: object) -> "Perm":
        for p in cls:
            if value == p.wire:
                return p
        raise OsctlError(INVALID, f"unknown permission {value!r}: one of "
                                  + ", ".join(p.wire for p in cls))


def group_ref(pool: str, group: str) -> str:
    """How a group is named across pools: ``<pool>:<path>``."""
    return f"{pool}:{group}"


@dataclass
class Account:
    name: str
    uid: int
    # A service account's group (``<pool>:<path>``); None for a person's.
    group: str | None = None
    # Permissions by group reference (``<pool>:<path>``).
    grants: dict[str, Perm] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_name("account", self.name)
        if not isinstance(self.uid, int) or isinstance(self.uid, bool) \
                or not 1 <= self.uid <= MAX_UID:
            raise OsctlError(INVALID, f"account {self.name}: uid must be a host user "
                                      f"other than root (1 to {MAX_UID}), got {self.uid!r}")
        if (self.group is not None) != self.name.startswith(SERVICE_PREFIX):
            raise OsctlError(INVALID, f"account {self.name}: service accounts, and only they, "
                                      f"are named {SERVICE_PREFIX}... and belong to a group")

    @property
    def ref(self) -> str:
        """What names it: its name, and a service account's group."""
        return f"{self.name}@{self.group}" if self.group else self.name

    def within(self, ref: str) -> bool:
        """Whether group ``ref`` is one this account may hold permissions on."""
        if self.group is None:
            return True
        pool, path = self.group.split(":", 1)
        return ref == self.group or ref.startswith(group_ref(pool, path.rstrip("/") + "/"))

    def level(self, pool: str, group: str) -> Perm | None:
        """Its permission in a group: the nearest one granted on the way up."""
        for path in ancestors(check_group_path(group)):
            if (perm := self.grants.get(group_ref(pool, path))) is not None:
                return perm
        return None

    def may(self, perm: Perm, pool: str, group: str) -> bool:
        level = self.level(pool, group)
        return level is not None and level >= perm

    def public(self) -> dict:
        return {"account": self.ref, "name": self.name, "uid": self.uid,
                "service": self.group is not None, "group": self.group,
                "permissions": {g: p.wire for g, p in sorted(self.grants.items())}}

    def to_dict(self) -> dict:
        return {"name": self.name, "uid": self.uid, "group": self.group,
                "grants": {g: p.wire for g, p in sorted(self.grants.items())}}

    @classmethod
    def from_dict(cls, d: dict) -> "Account":
        return cls(name=d["name"], uid=d["uid"], group=d.get("group"),
                   grants={g: Perm.parse(p) for g, p in (d.get("grants") or {}).items()})


class Root:
    """Root, on the root socket: every right, everywhere."""

    ref = "root"

    def may(self, perm: Perm, pool: str, group: str) -> bool:
        return True


ROOT = Root()
# Who a request runs as: root, or an account.
Access = Account | Root
