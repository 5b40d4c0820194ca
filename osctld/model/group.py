"""A resource group: a cgroup subtree whose limits bind everything below it.

Groups form a tree per pool: "/" is the pool's root, "/default" holds
containers created without ``--group``. A setting a group does not set is
inherited; since cgroups charge every level, what binds a group is the
tightest value on its path to the root.

Groups also carry the platform's settings (``SETTINGS``): the maintenance
window, its timezone, how long ahead tenants are told, production, and an
operator's open maintenance. A group that does not set one inherits its
parent's; ``effective`` is the one lookup for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from osctl.protocol import INVALID, OsctlError

from .attrs import loaded as loaded_attrs
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


# --- the platform's settings --------------------------------------------------------

# The values a group has when neither it nor a group above it sets one (the
# platform's record). Start, end and lead time count in the node's
# maintenance unit (config maintenance.unit: hours, or seconds on a test node).
DEFAULTS: dict[str, Any] = {
    "maintenance_start": 22, "maintenance_end": 5, "timezone": "Europe/Berlin",
    "notification_leadtime": 12, "production": True,
    "in_maintenance": False, "maintenance_until": None,
}
SETTINGS = tuple(DEFAULTS)
INHERIT = "inherit"  # the value that drops a group's own setting
MAX_LEADTIME_DAYS = 60
TRUE, FALSE = ("yes", "true", "on", "1"), ("no", "false", "off", "0")


def check_timezone(name: object) -> ZoneInfo:
    """An IANA timezone name, as zoneinfo knows it."""
    try:
        if not isinstance(name, str) or not name:
            raise ValueError
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise OsctlError(INVALID, f"unknown timezone {name!r}: give an IANA name like "
                                  "Europe/Berlin or UTC") from None


def parse_time(value: object, what: str) -> datetime:
    """An ISO 8601 time with its zone (a time without one means nothing on a node
    whose tenants live in other zones)."""
    try:
        if not isinstance(value, str):
            raise ValueError
        t = datetime.fromisoformat(value)
    except ValueError:
        raise OsctlError(INVALID, f"{what}: {value!r} is no ISO 8601 time, e.g. "
                                  "2026-12-01T05:00+01:00") from None
    if t.tzinfo is None:
        raise OsctlError(INVALID, f"{what}: {value!r} has no zone: add one, e.g. +01:00 or Z")
    return t


def _bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in TRUE + FALSE:
        return value.lower() in TRUE
    raise OsctlError(INVALID, f"{name} must be yes or no, got {value!r}")


def _count(name: str, value: object, hi: int, unit_name: str) -> int:
    try:
        if isinstance(value, bool):
            raise ValueError
        n = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise OsctlError(INVALID, f"{name} must be a whole number of {unit_name}, got {value!r}") from None
    if not 0 <= n <= hi:
        raise OsctlError(INVALID, f"{name} must be 0 to {hi} ({unit_name}), got {n}")
    return n


def parse_settings(changes: Mapping[str, object], unit: int, now: datetime) -> dict[str, Any]:
    """Operator-given settings (names with - or _, values as typed or as
    strings) checked and typed; ``inherit`` (None) drops a group's own value.
    in_maintenance and maintenance_until given together must agree."""
    unit_name = "hours" if unit == 3600 else f"units of {unit} s"
    out: dict[str, Any] = {}
    for raw, value in changes.items():
        name = str(raw).replace("-", "_")
        if name not in DEFAULTS:
            raise OsctlError(INVALID, f"unknown group setting {raw!r}: one of "
                                      + ", ".join(s.replace("_", "-") for s in SETTINGS))
        if value is None or value == INHERIT:
            out[name] = None
        elif name in ("maintenance_start", "maintenance_end"):
            out[name] = _count(name, value, 86400 // unit - 1, unit_name)
        elif name == "notification_leadtime":
            out[name] = _count(name, value, MAX_LEADTIME_DAYS * 86400 // unit, unit_name)
        elif name == "timezone":
            out[name] = check_timezone(value).key
        elif name == "maintenance_until":
            out[name] = "" if value in ("", "none") else parse_time(value, name).isoformat()
        else:
            out[name] = _bool(name, value)
    if out.get("in_maintenance") is not None and out.get("maintenance_until") is not None:
        until = out["maintenance_until"]
        ahead = bool(until) and parse_time(until, "maintenance_until") > now
        if out["in_maintenance"] != ahead:
            raise OsctlError(INVALID, "in_maintenance and maintenance_until contradict each other: "
                                      + ("in maintenance, but maintenance_until is empty or past"
                                         if out["in_maintenance"] else
                                         "not in maintenance, but maintenance_until is ahead"))
    return out


@dataclass
class Group:
    path: str
    pool: str
    limits: Limits = field(default_factory=Limits)
    settings: dict[str, Any] = field(default_factory=dict)  # its own: see SETTINGS
    # When in_maintenance was set, so that the daemon can reset it after its cap.
    in_maintenance_since: float | None = None
    attrs: dict[str, str] = field(default_factory=dict)  # frontends' metadata (model/attrs.py)

    def __post_init__(self) -> None:
        self.path = check_group_path(self.path)

    def to_dict(self) -> dict:
        return {"path": self.path, "limits": self.limits.to_dict(), "settings": dict(self.settings),
                "in_maintenance_since": self.in_maintenance_since, "attrs": dict(self.attrs)}

    @classmethod
    def from_dict(cls, d: dict, pool: str) -> "Group":
        return cls(path=d["path"], pool=pool,
                   limits=Limits.from_dict(d.get("limits"), f"group {pool}:{d['path']}"),
                   settings={k: v for k, v in (d.get("settings") or {}).items() if k in DEFAULTS},
                   in_maintenance_since=d.get("in_maintenance_since"),
                   attrs=loaded_attrs(d.get("attrs"), f"group {pool}:{d['path']}"))


def effective(groups: Mapping[str, Group], path: str, name: str) -> Any:
    """Setting ``name`` as it holds for group ``path``: its own, else the
    nearest group's above it that sets it, else the default."""
    for p in ancestors(path):
        own = groups[p].settings
        if name in own:
            return own[name]
    return DEFAULTS[name]


def effective_settings(groups: Mapping[str, Group], path: str) -> dict[str, Any]:
    return {name: effective(groups, path, name) for name in SETTINGS}


def group_timezone(groups: Mapping[str, Group], path: str) -> ZoneInfo:
    """The timezone of group ``path`` (its "midnight", its windows' hours)."""
    return ZoneInfo(effective(groups, path, "timezone"))


def in_maintenance(groups: Mapping[str, Group], path: str, now: datetime) -> bool:
    """Whether an operator has opened maintenance for the group: in_maintenance
    (the daemon resets it after its cap) or a maintenance_until ahead."""
    until = effective(groups, path, "maintenance_until")
    return bool(effective(groups, path, "in_maintenance")) or (
        bool(until) and datetime.fromisoformat(until) > now)

