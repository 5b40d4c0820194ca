"""The copy at the other end of a send or replica, told to go.

A container being sent (``ct send`` before ``state``) or replicated, and a
replicated VM, have a staged copy at another node, named by the source's
send log (``model/sendlog.py``). It goes when the send is cancelled or the
replica dropped (``ct send cancel``, ``vm drop-replica``), and when the
instance itself is deleted here (``ct del``, ``vm del --force``, the hard
stage of a staged deletion): a copy of nothing would wait there for ever,
staged, holding its name and addresses. The passes kept here go with the
instance (``Node.remove_ct`` / ``remove_vm``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from osctl.protocol import NOT_FOUND, OsctlError

from ..model.sendlog import SOURCE, SendLog, Stage
from . import channel

if TYPE_CHECKING:
    from ..model.container import Container
    from ..model.vm import VM
    from ..node import Node

log = logging.getLogger(__name__)
# A peer that answers no more (its sshd up, its osctld stuck) must not hold
# a deletion, and the staged deletions queued behind it, for longer.
TAKE_DOWN_TIMEOUT = 60.0


async def cancel_at(node: Node, kind: str, slog: SendLog) -> None:
    """The other end of send log ``slog`` (this node its source) drops its
    staged copy and every pass it received; gone there already: done."""
    if kind == "ct":
        verb, args = "ct.receive.cancel", {"token": slog.token}
    else:
        verb, args = "vm.receive.replica.cancel", {"pool": slog.pool, "id": slog.as_id,
                                                   "token": slog.token}
    try:
        await channel.call(node, slog.peer, verb, args)
    except OsctlError as e:
        if e.code != NOT_FOUND:
            raise


async def take_down(node: Node, inst: Container | VM) -> None:
    """Before ``inst`` is deleted here: the copy its send log names at the
    other end goes, if that node answers; if not, it stays there (logged;
    ``del --force`` there removes it), since a node that is down must not
    keep a deletion from happening."""
    slog = inst.send_log
    if slog is None or slog.role != SOURCE or slog.stage == Stage.STATE:
        return  # no copy, or a sent one: the other node's own container now
    try:
        await asyncio.wait_for(cancel_at(node, inst.kind, slog), TAKE_DOWN_TIMEOUT)
    except (OsctlError, OSError, asyncio.TimeoutError) as e:
        log.warning("%s %s:%s is deleted, its copy at %s stays (delete it there with del "
                    "--force): %s", inst.noun, inst.pool, inst.id, slog.peer,
                    str(e) or f"no answer in {TAKE_DOWN_TIMEOUT:g} s")
