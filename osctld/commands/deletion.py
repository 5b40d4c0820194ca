"""Staged deletion asked for and cancelled (``ct del --at``, ``--cancel``; the
same for VMs). The stages themselves are the daemon's (osctld/deletion.py)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone, tzinfo

from osctl.protocol import CONFLICT, INVALID, OsctlError

from ..deletion import announce
from ..model.container import Container
from ..model.deletion import SOFT, Deletion, earliest, parse_at
from ..model.group import group_timezone
from ..model.lifecycle import Event, State, check
from ..model.vm import VM
from ..state import split_ref
from . import Context, hold_instance


# Far enough for any notice, near enough that every stage's time is a date.
MAX_AHEAD = timedelta(days=3650)


def staged_args(force: bool, at: str | None, cancel: bool) -> bool:
    """Whether a ``del`` asks for a staged deletion (``at``) or calls one off
    (``cancel``) rather than deleting now; refuses what does not go together."""
    if cancel and at is not None:
        raise OsctlError(INVALID, "give a deletion date or cancel, not both")
    if force and (cancel or at is not None):
        raise OsctlError(INVALID, "force deletes at once: not with a deletion date or cancel")
    return cancel or at is not None


def past_hard(ctx: Context, kind: str, ref: str) -> None:
    """Say so when a cancel names a container or VM whose hard stage has been:
    it is gone, its name only is kept."""
    pool, name = split_ref(ref)
    for pstate in ctx.node.registry.pools.values():
        if (kind, name) in pstate.deleted and pool in (None, pstate.pool.name):
            raise OsctlError(CONFLICT, f"{'VM' if kind == 'vm' else 'container'} "
                                       f"{pstate.pool.name}:{name} is past its hard deletion "
                                       "stage: its data is gone, the deletion cannot be cancelled")


def group_zone(pstate, group: str) -> tzinfo:
    """The time zone deletion dates of ``group``'s instances are in: the
    group's effective one (its own or inherited)."""
    return group_timezone(pstate.groups, group)


def _words(server: Container | VM) -> tuple[str, str]:
    """Its kind on the wire and in messages."""
    return server.kind, f"{server.noun} {server.id}"


def first_date(ctx: Context, zone: tzinfo, now: datetime) -> datetime:
    """The earliest deletion date: tomorrow at midnight in ``zone``, or
    the node's ``deletion.notice`` seconds from now where it sets one (tests)."""
    notice = ctx.node.config.deletion.notice
    return earliest(now, zone) if notice is None else now + timedelta(seconds=notice)


async def schedule(ctx: Context, pstate, server: Container | VM, at: str) -> dict:
    """Plan the deletion's stages around date ``at``; nothing changes until the first is due."""
    kind, what = _words(server)
    zone = group_zone(pstate, server.group)
    when = parse_at(at, zone)
    now = datetime.now(timezone.utc)
    first = first_date(ctx, zone, now)
    if when < first:
        raise OsctlError(INVALID, f"{what} cannot be deleted before "
                                  f"{first.isoformat(timespec='seconds')}, asked for "
                                  f"{when.isoformat(timespec='seconds')}")
    if when > now + MAX_AHEAD:
        raise OsctlError(INVALID, f"a deletion date is at most {MAX_AHEAD.days} days away, "
                                  f"asked for {when.isoformat(timespec='seconds')}")
    async with hold_instance(ctx, server, f"{kind}.del"):
        if server.state == State.STAGED:  # its stages would stop and hold what is not its own
            raise OsctlError(CONFLICT, f"{what} is staged (a copy received from another node, "
                                       "or a replica): delete it with --force")
        if server.deletion is not None:
            due = datetime.fromtimestamp(server.deletion.at, zone).isoformat(timespec="seconds")
            raise OsctlError(CONFLICT, f"{what} is to be deleted on {due} already: "
                                       "cancel that first")
        server.deletion = Deletion.plan(when.timestamp(), time.time(),
                                        ctx.node.config.deletion.offsets())
        try:
            pstate.save_instance(server)
        except BaseException:
            server.deletion = None
            raise
    announce(ctx.node, server.pool, kind, server.id, "scheduled", at=server.deletion.at)
    return server.public()


async def cancel(ctx: Context, pstate, server: Container | VM) -> dict:
    """Call a deletion off before its hard stage; a soft-deleted instance is
    stopped again, as it was, and can start."""
    kind, what = _words(server)
    driver = ctx.node.driver(kind)
    async with hold_instance(ctx, server, f"{kind}.del"):
        deletion = server.deletion
        if deletion is None:
            raise OsctlError(CONFLICT, f"{what} is not scheduled for deletion")
        if deletion.has(SOFT):
            check(what, server.state, Event.RESTORE)
        server.deletion = None
        try:
            pstate.save_instance(server)
        except BaseException:
            server.deletion = deletion
            raise
        if deletion.has(SOFT):
            driver.apply(server, Event.RESTORE)
    announce(ctx.node, server.pool, kind, server.id, "cancelled", at=deletion.at)
    return server.public()
