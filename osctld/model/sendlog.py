"""The send log: how far a container's transfer to another node has come.

Kept apart from any I/O, as the lifecycle table is: a stage and a step go in,
the next stage comes out, or a ``conflict`` for a step that may not come
now. Both ends keep one (the source in the container's config, the
destination in its staged container's), saved after each stage, so a
restarted daemon knows where a transfer stands and can go on or cancel.

Stages, as vpsAdminOS names its steps: ``config`` (the destination has a
staged container), ``rootfs`` (the full copy arrived), ``sync`` (one or more
incrementals since), ``state`` (the source stopped, the last incremental
arrived, the destination took the container over; the source waits for
``cleanup``). ``cancel`` ends a transfer before ``state``; afterwards the
destination holds it and only ``cleanup`` is left.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any

from osctl.protocol import CONFLICT, INVALID, OsctlError

from .lifecycle import State

SOURCE, DESTINATION = "source", "destination"
# How the root filesystem travels: btrfs send/receive between two btrfs
# pools, zfs send/receive between two zfs pools, rsync otherwise; a VM's
# files (its replica) from a pool without snapshots go as a whole (sparse)
# tar each pass.
STREAMS = ("btrfs", "zfs", "rsync", "tar")
ORIGINS = (None, "vz6")


class Stage(StrEnum):
    CONFIG = "config"
    ROOTFS = "rootfs"
    SYNC = "sync"
    STATE = "state"


class Step(StrEnum):
    CONFIG = "config"
    ROOTFS = "rootfs"
    SYNC = "sync"
    STATE = "state"
    CLEANUP = "cleanup"
    CANCEL = "cancel"


S = Stage
_LIVE = (S.CONFIG, S.ROOTFS, S.SYNC)
# role -> step -> {stage it may come at (None: no transfer): stage it leads to
# (None: the transfer is over)}.
TABLE: dict[str, dict[Step, dict[Stage | None, Stage | None]]] = {
    SOURCE: {
        Step.CONFIG: {None: S.CONFIG},
        Step.ROOTFS: {S.CONFIG: S.ROOTFS},
        Step.SYNC: {S.ROOTFS: S.SYNC, S.SYNC: S.SYNC},
        Step.STATE: {S.ROOTFS: S.STATE, S.SYNC: S.STATE},
        Step.CLEANUP: {S.STATE: None},
        Step.CANCEL: {s: None for s in _LIVE},
    },
    # The destination is done at ``state``: it holds the container then.
    DESTINATION: {
        Step.CONFIG: {None: S.CONFIG},
        Step.ROOTFS: {S.CONFIG: S.ROOTFS},
        Step.SYNC: {S.ROOTFS: S.SYNC, S.SYNC: S.SYNC},
        Step.STATE: {S.ROOTFS: None, S.SYNC: None},
        Step.CANCEL: {s: None for s in _LIVE},
    },
}


def next_stage(role: str, stage: Stage | None, step: Step, what: str = "the container") -> Stage | None:
    """The stage ``step`` leads ``role``'s transfer to from ``stage``; a
    conflict where it may not come now."""
    moves = TABLE[role].get(step, {})
    if stage not in moves:
        now = f"at stage {stage}" if stage else "not being sent"
        if stage is None and step != Step.CONFIG:
            raise OsctlError(CONFLICT, f"{what} is not being sent: begin with ct send config")
        hint = " (cancel comes before state; after it, cleanup)" if step == Step.CANCEL else ""
        raise OsctlError(CONFLICT, f"{what} is {now}: no {step} now{hint}")
    return moves[stage]


@dataclass(frozen=True)
class SendLog:
    role: str  # source or destination
    token: str  # names the transfer on both ends
    stage: Stage
    # The source's: where it sends (host[:port]); the destination's: the key
    # the transfer came with (its later calls must come with it too).
    peer: str
    as_id: str  # the container's id at the destination
    pool: str  # its pool at the destination
    stream: str  # btrfs, zfs or rsync
    snapshot: str | None = None  # btrfs, zfs: the last snapshot both ends hold, the next parent
    clone: bool = False  # source: kept after state (its copy started again, if it ran)
    user_created: bool = False  # destination: its user was made for this transfer
    # destination: where it comes from when not an osctld node: "vz6", an
    # OpenVZ Legacy node (osctl-convert), whose rootfs is fixed at take-over.
    origin: str | None = None
    # When the copy the last pass carried was taken (the pass's start on the
    # source): how old the data a replica holds is (cluster HA).
    taken: float | None = None
    # A replica (``ct replicate``): kept at sync passes, never handed over
    # by the schedule; the cluster drops it when HA is turned off.
    replica: bool = False

    def __post_init__(self) -> None:
        if self.role not in (SOURCE, DESTINATION) or self.stream not in STREAMS \
                or self.origin not in ORIGINS:
            raise OsctlError(INVALID, f"send log: bad role {self.role!r}, stream {self.stream!r} "
                                      f"or origin {self.origin!r}")
        object.__setattr__(self, "stage", Stage(self.stage))

    @property
    def next_pass(self) -> Step:
        """The step of the next copy: the full one after the config, else a sync."""
        return Step.ROOTFS if self.stage == Stage.CONFIG else Step.SYNC

    def after(self, step: Step, what: str = "the container", **changes: Any) -> SendLog | None:
        """The log once ``step`` is done (None: the transfer is over)."""
        stage = next_stage(self.role, self.stage, step, what)
        return None if stage is None else replace(self, stage=stage, **changes)

    @property
    def handed_over(self) -> bool:
        """The source after ``state``: the destination holds the container."""
        return self.role == SOURCE and self.stage == S.STATE

    def to_dict(self) -> dict:
        return {**asdict(self), "stage": str(self.stage)}

    @classmethod
    def from_dict(cls, d: dict | SendLog | None) -> SendLog | None:
        if d is None or isinstance(d, SendLog):
            return d
        return cls(**d)


def held_state(log: SendLog, state: State) -> State:
    """What a loaded container with a send log is held as: staged while it
    is being received, migrating once the source handed it over (unless it
    was a clone, which stays as it was)."""
    if log.role == DESTINATION:
        return State.STAGED
    return State.MIGRATING if log.handed_over and not log.clone else state
