"""A user: one tenant, whose containers share one UID/GID map."""

from __future__ import annotations

from dataclasses import dataclass, field

from .attrs import loaded as loaded_attrs
from .idmap import MapEntry, check_map
from .naming import check_name
from .quota import Quota


@dataclass
class User:
    name: str
    pool: str
    uid_map: list[MapEntry]
    gid_map: list[MapEntry]
    block: int | None = None  # id-range block it came from; None for explicit maps
    quota: Quota = field(default_factory=Quota)  # what its containers may hold together
    attrs: dict[str, str] = field(default_factory=dict)  # frontends' metadata (model/attrs.py)

    def __post_init__(self) -> None:
        check_name("user", self.name)
        check_map("UID", self.uid_map)
        check_map("GID", self.gid_map)

    @property
    def root_uid(self) -> int:
        return next(e.host_id for e in self.uid_map if e.ns_id == 0)

    @property
    def root_gid(self) -> int:
        return next(e.host_id for e in self.gid_map if e.ns_id == 0)

    def host_ranges(self) -> list[tuple[str, int, int]]:
        """(kind, start, end) of every host range it holds, for overlap checks."""
        return [("uid", e.host_id, e.host_end) for e in self.uid_map] + [
            ("gid", e.host_id, e.host_end) for e in self.gid_map
        ]

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "uid_map": [str(e) for e in self.uid_map],
            "gid_map": [str(e) for e in self.gid_map],
            "block": self.block,
            "quota": self.quota.to_dict(),
            "attrs": dict(self.attrs),
        }

    @classmethod
    def from_dict(cls, d: dict, pool: str) -> "User":
        return cls(
            name=d["name"],
            pool=pool,
            uid_map=[MapEntry.parse(x) for x in d["uid_map"]],
            gid_map=[MapEntry.parse(x) for x in d["gid_map"]],
            block=d.get("block"),
            quota=Quota.from_dict(d.get("quota"), f"user {pool}:{d['name']}"),
            attrs=loaded_attrs(d.get("attrs"), f"user {pool}:{d['name']}"),
        )

    def public(self) -> dict:
        return {
            "pool": self.pool,
            "name": self.name,
            "uid_map": [str(e) for e in self.uid_map],
            "gid_map": [str(e) for e in self.gid_map],
            "root_uid": self.root_uid,
            "root_gid": self.root_gid,
            "quota": self.quota.to_dict(),
            "attrs": dict(self.attrs),
        }
