"""Staged deletion: a container's or VM's deletion date and the stages around it.

A tenant's server is not deleted at once: at ``prepare`` (before the date) it
is announced, at ``soft`` (the date) it stops and is kept as it is, not
startable; at ``hard`` its data, addresses and config go; at ``purge`` what
was kept of it elsewhere goes; at ``recycle`` its name may be used again.
Until ``hard`` the deletion can be cancelled.

Each stage's time is fixed when the deletion is asked for (from the node's
``deletion`` config), so a config change moves no deletion already
announced. The schedule is saved in the instance's own config (and, after
``hard``, in a record of the name, ``Deleted``), each stage marked reached in
the same atomic write as what it changed: a stage is never done twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time as dtime, timedelta, tzinfo

from osctl.protocol import INVALID, OsctlError

from .bounds import shown
from .lifecycle import State

# In the order they come.
PREPARE, SOFT, HARD, PURGE, RECYCLE = STAGES = ("prepare", "soft", "hard", "purge", "recycle")


@dataclass
class Deletion:
    """When each stage is due (epoch seconds) and which were reached, when."""

    at: float  # the deletion date: the soft stage
    requested: float
    due: dict[str, float]
    reached: dict[str, float] = field(default_factory=dict)

    @classmethod
    def plan(cls, at: float, now: float, offsets: dict[str, float]) -> "Deletion":
        """A schedule for deletion date ``at``; ``offsets``: each stage's
        seconds from the date (prepare's negative)."""
        return cls(at=at, requested=now, due={s: at + offsets[s] for s in STAGES})

    def due_now(self, now: float) -> list[str]:
        """The stages due and not reached, in order."""
        return [s for s in STAGES if s not in self.reached and self.due[s] <= now]

    def next_due(self) -> float | None:
        """When the next stage is due; None when all were reached."""
        left = [self.due[s] for s in STAGES if s not in self.reached]
        return min(left) if left else None

    def has(self, stage: str) -> bool:
        return stage in self.reached

    def held_state(self, state: State) -> State:
        """What a loaded instance is held as: soft-deleted once the soft stage was reached."""
        return State.SOFT_DELETED if self.has(SOFT) else state

    def to_dict(self) -> dict:
        return {"at": self.at, "requested": self.requested, "due": dict(self.due),
                "reached": dict(self.reached)}

    @classmethod
    def from_dict(cls, d: "dict | Deletion | None") -> "Deletion | None":
        if d is None or isinstance(d, Deletion):
            return d
        return cls(at=float(d["at"]), requested=float(d["requested"]),
                   due={s: float(d["due"][s]) for s in STAGES},
                   reached={s: float(t) for s, t in (d.get("reached") or {}).items() if s in STAGES})


@dataclass
class Deleted:
    """What is left of an instance after its hard stage: its name, its owner and
    the rest of its schedule. It keeps the name from being used until recycle."""

    kind: str  # "ct" or "vm"
    id: str
    pool: str
    user: str
    deletion: Deletion

    def to_dict(self) -> dict:
        return {"kind": self.kind, "id": self.id, "user": self.user,
                "deletion": self.deletion.to_dict()}

    @classmethod
    def from_dict(cls, d: dict, pool: str) -> "Deleted":
        deletion = Deletion.from_dict(d["deletion"])
        assert deletion is not None
        return cls(kind=d["kind"], id=d["id"], pool=pool, user=d["user"], deletion=deletion)


def earliest(now: datetime, zone: tzinfo) -> datetime:
    """The earliest deletion date a tenant may be given: tomorrow, midnight,
    in ``zone`` (``now`` must carry a zone)."""
    tomorrow = now.astimezone(zone).date() + timedelta(days=1)
    return datetime.combine(tomorrow, dtime(0), tzinfo=zone)


def parse_at(text: str, zone: tzinfo) -> datetime:
    """An ISO 8601 date or date and time; one without a zone is in ``zone``."""
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise OsctlError(INVALID, f"invalid deletion date {shown(text)}: give an ISO 8601 date "
                                  "or time, e.g. 2026-12-24 or 2026-12-24T18:00+01:00") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=zone)
