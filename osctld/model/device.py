"""A device grant: a device a container may use, and where its node appears.

The grant is enforced by the devices cgroup (``c 10:200 rw``); the node is
made by osctld on the host and bind-mounted into the container's /dev,
because an unprivileged container cannot mknod. A grant without a path
only opens the cgroup (for nodes the container gets some other way).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from osctl.protocol import INVALID, OsctlError

TYPES = {"char": "c", "block": "b", "c": "c", "b": "b"}
# A node path inside /dev: plain components, no "..", no leading dot tricks.
PATH_RE = re.compile(r"^/dev(/[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}){1,4}$")


@dataclass(frozen=True)
class DeviceGrant:
    type: str  # "c" or "b"
    major: int | None  # None: any ("*")
    minor: int | None
    mode: str  # a subset of "rwm", in that order
    path: str | None = None  # the node inside the container, under /dev

    def __post_init__(self) -> None:
        t = TYPES.get(self.type)
        if t is None:
            raise OsctlError(INVALID, f"device type must be char or block, not {self.type!r}")
        object.__setattr__(self, "type", t)
        for what, v in (("major", self.major), ("minor", self.minor)):
            if v is not None and not (isinstance(v, int) and 0 <= v < 2**20):
                raise OsctlError(INVALID, f"device {what} must be 0..{2**20 - 1} or '*', not {v!r}")
        if not self.mode or set(self.mode) - set("rwm") or len(set(self.mode)) != len(self.mode):
            raise OsctlError(INVALID, f"device mode must be made of r, w and m, not {self.mode!r}")
        object.__setattr__(self, "mode", "".join(c for c in "rwm" if c in self.mode))
        if self.path is not None:
            if not PATH_RE.match(self.path) or "/../" in self.path + "/":
                raise OsctlError(INVALID, f"device path must be a plain path under /dev, not {self.path!r}")
            if self.major is None or self.minor is None:
                raise OsctlError(INVALID, "a device node needs a fixed major and minor, not '*'")

    @classmethod
    def parse(cls, type: str, major: str | int, minor: str | int, mode: str,
              path: str | None = None) -> "DeviceGrant":
        def num(what: str, v: str | int) -> int | None:
            if v == "*":
                return None
            try:
                return int(v)
            except (TypeError, ValueError):
                raise OsctlError(INVALID, f"device {what} must be a number or '*', not {v!r}") from None
        return cls(type, num("major", major), num("minor", minor), mode, path or None)

    @property
    def rule(self) -> str:
        """The devices cgroup rule: ``c 10:200 rwm``."""
        star = lambda v: "*" if v is None else str(v)  # noqa: E731
        return f"{self.type} {star(self.major)}:{star(self.minor)} {self.mode}"

    def same_device(self, other: "DeviceGrant") -> bool:
        return (self.type, self.major, self.minor) == (other.type, other.major, other.minor)

    def to_dict(self) -> dict:
        return {"type": self.type, "major": "*" if self.major is None else self.major,
                "minor": "*" if self.minor is None else self.minor, "mode": self.mode,
                "path": self.path}

    @classmethod
    def from_dict(cls, d: dict) -> "DeviceGrant":
        return cls.parse(d["type"], d["major"], d["minor"], d["mode"], d.get("path"))
