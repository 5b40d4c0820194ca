"""The life of a container or VM: its states, and which event leads from which
state to which. One table for both kinds, so that "can it start now?" has one
answer, given by the table rather than by an ``if`` in each command.

The runtimes (``runtime/container.py``, ``runtime/vm.py``) are the only ones that
change an instance's state, through ``transition``; commands that must refuse
early (before they change anything) ask ``check``. What LXC or QEMU report at
re-adoption or on ``refresh`` is taken as it is (``observed``): the daemon
records the world there, it does not ask the table for leave.
"""

from __future__ import annotations

from enum import StrEnum

from osctl.protocol import CONFLICT, OsctlError


class State(StrEnum):
    """A StrEnum: each state is its lower-case name as a string, on the wire and
    in messages (``f"{state}"`` is ``running``). The first five are LXC's own
    (``starting``/``stopping`` also the daemon's while a command is at work);
    a VM is never ``frozen``."""
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    FROZEN = "frozen"
    # Received from another node, not yet taken over: not startable.
    STAGED = "staged"
    # Being sent to another node: neither started nor stopped meanwhile.
    MIGRATING = "migrating"
    # Deleted, restorable for a while: not startable.
    SOFT_DELETED = "soft-deleted"


class Event(StrEnum):
    START = "start"          # a start command begins
    STARTED = "started"      # its init (LXC start-host hook) or QEMU's monitor is up
    FAIL = "fail"            # a start failed: back to stopped
    STOP = "stop"            # a stop (or kill) command begins
    STOPPED = "stopped"      # it went down (LXC post-stop hook, QEMU closed its monitor)
    REBOOT = "reboot"        # rebooted from inside: LXC starts it again at once
    STAGE = "stage"          # received from another node
    ADOPT = "adopt"          # a staged one taken over: an ordinary stopped instance
    MIGRATE = "migrate"      # sending it away begins (once sent, it is deleted here)
    STAY = "stay"            # sending it failed or was cancelled: it stays here
    SOFT_DELETE = "soft-delete"
    RESTORE = "restore"      # a soft-deleted one brought back
    # VMs only: live migration, while QEMU runs.
    MIGRATE_LIVE = "migrate-live"  # a running VM's live migration begins
    RESUME = "resume"        # the live migration failed or was cancelled: it runs on here
    ARRIVE = "arrive"        # a live-migrated VM resumed here (it was staged)
    EXITED = "exited"        # its QEMU exited (closed its monitor)


S = State
_LIVE = (S.STARTING, S.RUNNING, S.STOPPING, S.FROZEN)
# event -> {state it may come in: state it leads to}. Hook-driven events
# (started, stopped, reboot) are taken in every state a running instance can be
# in, as LXC and QEMU tell what happened rather than ask; stopped in stopped is
# a post-stop after a refresh saw it first (no change, no event).
TABLE: dict[Event, dict[State, State]] = {
    Event.START: {S.STOPPED: S.STARTING},
    Event.STARTED: {S.STOPPED: S.RUNNING, S.STARTING: S.RUNNING, S.RUNNING: S.RUNNING,
                    S.STOPPING: S.RUNNING},
    Event.FAIL: {S.STARTING: S.STOPPED, S.RUNNING: S.STOPPED, S.STOPPED: S.STOPPED},
    Event.STOP: {s: S.STOPPING for s in _LIVE},
    Event.STOPPED: {s: S.STOPPED for s in (S.STOPPED, *_LIVE)},
    Event.REBOOT: {s: S.STARTING for s in _LIVE},
    Event.STAGE: {S.STOPPED: S.STAGED},
    Event.ADOPT: {S.STAGED: S.STOPPED},
    Event.MIGRATE: {S.STOPPED: S.MIGRATING},
    Event.STAY: {S.MIGRATING: S.STOPPED},
    Event.SOFT_DELETE: {S.STOPPED: S.SOFT_DELETED},
    Event.RESTORE: {S.SOFT_DELETED: S.STOPPED},
    Event.MIGRATE_LIVE: {S.RUNNING: S.MIGRATING},
    Event.RESUME: {S.MIGRATING: S.RUNNING},
    Event.ARRIVE: {S.STAGED: S.RUNNING},
    # A migrating VM's QEMU quits once the guest runs elsewhere (or dies);
    # the incoming QEMU of a staged one may die before the guest arrived.
    Event.EXITED: {**{s: S.STOPPED for s in (S.STOPPED, S.MIGRATING, *_LIVE)}, S.STAGED: S.STAGED},
}


def check(what: str, state: str, event: Event) -> State:
    """The state ``event`` leads ``what`` (``"container c1"``) to from ``state``;
    a conflict error where the table has no such transition."""
    nxt = TABLE[event].get(State(state))
    if nxt is None:
        raise OsctlError(CONFLICT, f"{what} is {state}: cannot {event}")
    return nxt


# Stopped instances the daemon holds back: LXC and QEMU know only "stopped".
HELD_BACK = frozenset({S.STAGED, S.MIGRATING, S.SOFT_DELETED})


def at_rest(state: State) -> bool:
    """Stopped, or stopped and held back: nothing of it runs."""
    return state == S.STOPPED or state in HELD_BACK


def seen(held: State, reported: State) -> State:
    """The state to record when LXC or QEMU report ``reported`` of an
    instance held as ``held``: a held-back one they call stopped stays held
    back (a soft-deleted container is not made startable by a refresh)."""
    return held if reported == S.STOPPED and held in HELD_BACK else reported
