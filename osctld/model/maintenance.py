"""Maintenance windows and the maintenances planned into them.

A group's window is a span of wall-clock time in its timezone, every day,
from ``maintenance_start`` to ``maintenance_end`` (counted in the node's
maintenance unit: hours, or seconds on a test node); an end at or before
the start is on the next day (22 to 5 wraps midnight; equal ones are a
whole day). Windows are computed from wall-clock times in the zone and
compared in UTC, so a DST change makes a window an hour longer or shorter,
never shifts it: 22:00 stays 22:00.

A ``Maintenance`` is one instance's restart into changes that wait for it:
planned into a window, announced when planned, run inside the window (or at
once, asked for), with its result kept.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Iterator
from zoneinfo import ZoneInfo

from .group import check_timezone

UTC = timezone.utc
PLANNED, ACTIVE, DONE, FAILED, CANCELLED = "planned", "active", "done", "failed", "cancelled"
OPEN = (PLANNED, ACTIVE)


@dataclass(frozen=True)
class Window:
    start: datetime  # aware, UTC
    end: datetime

    def holds(self, t: datetime) -> bool:
        return self.start <= t < self.end


def _wall(day: date, seconds: int, tz: ZoneInfo) -> datetime:
    """``seconds`` after midnight on ``day``, as a wall clock in ``tz`` shows
    it, in UTC. A time a DST change skips counts by the offset before it."""
    h, rest = divmod(seconds, 3600)
    return datetime(day.year, day.month, day.day, h, rest // 60, rest % 60, tzinfo=tz).astimezone(UTC)


def windows(start: int, end: int, tz: ZoneInfo, unit: int, after: datetime) -> Iterator[Window]:
    """A group's windows in order, from the first that ends after ``after``."""
    day = after.astimezone(tz).date() - timedelta(days=1)
    span = 1 if end <= start else 0
    while True:
        w = Window(_wall(day, start * unit, tz), _wall(day + timedelta(days=span), end * unit, tz))
        if w.end > after:
            yield w
        day += timedelta(days=1)


@dataclass(frozen=True)
class Schedule:
    """A group's effective maintenance settings (see model/group.effective)."""

    start: int
    end: int
    timezone: str
    leadtime: int
    unit: int

    def __post_init__(self) -> None:
        check_timezone(self.timezone)

    def windows(self, after: datetime) -> Iterator[Window]:
        return windows(self.start, self.end, ZoneInfo(self.timezone), self.unit, after)

    def first_window(self, now: datetime) -> Window:
        """The window a change made ``now`` is planned into: the first that
        starts at least the notification lead time later, so tenants hear of
        it in time."""
        earliest = now + timedelta(seconds=self.leadtime * self.unit)
        return next(w for w in self.windows(earliest) if w.start >= earliest)

    def current_or_next(self, now: datetime) -> Window:
        """The window open ``now``, else the next one: where a maintenance
        whose own window has passed (the node was down) is done."""
        return next(self.windows(now))


def iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()


@dataclass
class Maintenance:
    """One instance's restart into changes that wait for it."""

    kind: str  # "ct" or "vm"
    machine: str  # its id
    pool: str
    group: str
    starts: float  # the window, epoch seconds
    ends: float
    estimated_duration: int  # seconds
    activities: list[str]
    # The instance's settings before the changes: put back if it cannot
    # start with them (as reconfigure does).
    old: dict = field(default_factory=dict)
    announced: float | None = None
    state: str = PLANNED
    result: str | None = None
    finished: float | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    PERSISTED = ("id", "kind", "machine", "group", "starts", "ends", "estimated_duration",
                 "activities", "old", "announced", "state", "result", "finished")

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.PERSISTED}

    @classmethod
    def from_dict(cls, d: dict, pool: str) -> "Maintenance":
        return cls(pool=pool, **{k: d[k] for k in cls.PERSISTED if k in d})

    def due(self, now: float) -> bool:
        return self.state in OPEN and self.starts <= now < self.ends

    def public(self) -> dict:
        return {"id": self.id, "pool": self.pool, "machine": f"{self.kind}:{self.machine}",
                "group": self.group, "starts": iso(self.starts), "ends": iso(self.ends),
                "estimated_duration": self.estimated_duration, "activities": list(self.activities),
                "announced": iso(self.announced), "state": self.state, "result": self.result,
                "finished": iso(self.finished)}
