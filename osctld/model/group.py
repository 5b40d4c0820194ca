"""A resource group: a cgroup subtree whose limits bind everything below it.

Groups form a tree per pool: "/" is the pool's root, "/default" holds
containers created without ``--group``. A setting a group does not set is
inherited; since cgroups charge every level, what binds a group is the
tightest value on its path to the root.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from osctl.protocol import INVALID, OsctlError

from .limits import Limits
from .naming import check_name

ROOT_GROUP = "/"
DEFAULT_GROUP = "/default"
MAX_DEPTH = 8


def check_group_path(path: object) -> str:
    """"/prod/web" style: absolute, each part a valid name; normalised."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise OsctlError(INVALID, f"invalid group path {path!r}: give an absolute path like /prod/web")
    parts = [p for p in path.split("/") if p]
    if len(parts) > MAX_DEPTH:
        raise OsctlError(INVALID, f"group path {path!r} is deeper than {MAX_DEPTH}")
    for p in parts:
        check_name("group", p)
    return "/" + "/".join(parts)


def parent_of(path: str) -> str | None:
    if path == ROOT_GROUP:
        return None
    return path.rsplit("/", 1)[0] or ROOT_GROUP


def ancestors(path: str) -> list[str]:
    """``path`` and every group above it, root last."""
    out = [path]
    while (p := parent_of(out[-1])) is not None:
        out.append(p)
    return out


def store_name(path: str) -> str:
    """Its config file below conf/group/: "/prod/web" -> "prod/web"; the root "_root"
    (a leading "_" is no valid group name, so it cannot clash)."""
    return path.strip("/") or "_root"


@dataclass
class Group:
    path: str
    pool: str
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        self.path = check_group_path(self.path)

    def to_dict(self) -> dict:
        return {"path": self.path, "limits": self.limits.to_dict()}

    @classmethod
    def from_dict(cls, d: dict, pool: str) -> "Group":
        return cls(path=d["path"], pool=pool,
                   limits=Limits.from_dict(d.get("limits"), f"group {pool}:{d['path']}"))
