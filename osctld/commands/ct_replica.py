"""A container's replica on another node (cluster HA), made of ``ct send``'s
stages and never its ``state``.

``ct.replicate`` on the node that runs the container: the first pass is the
send's config and rootfs stages (the other node keeps a *staged* container
that is never started), every later one a ``sync`` (a btrfs incremental
from the last snapshot, or an rsync pass on dir pools). A send in progress
to another node is refused (``drop`` ends a replica: the cluster does so
when the standby changes or the container moves). Each pass records when
its copy was taken (``SendLog.taken``, on both ends).

``ct.recover`` on the node holding the replica, once the container's own
node is gone: the staged container becomes an ordinary one from the last
pass that arrived (as ``state`` would have done) and is started with its
addresses; the reply says how old its data is. Whatever was written on the
dead node after that pass is lost: at most one replication interval.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Awaitable, Callable

from osctl.protocol import CONFLICT, OsctlError

from ..model.container import Container
from ..model.sendlog import DESTINATION, SOURCE, SendLog, Stage
from ..model.vm import VM
from . import Context, Target, command, hold_instance
from .ct_send import adopt, save_log, send_cancel, send_config, send_rootfs, send_sync, started


@command("ct.replicate", mutating=True, target=Target("ct", "id"))
async def replicate(ctx: Context, id: str, dest: str, to_pool: str | None = None) -> dict:
    """One pass of container ``id``'s replica at ``dest`` (``host[:port]``,
    in ``to_pool`` there): the full copy the first time, then what changed.
    A send to another node in progress is a conflict."""
    pstate, ct = ctx.node.registry.ct(id)
    slog = ct.send_log
    if slog is not None and slog.role != SOURCE:
        raise OsctlError(CONFLICT, f"container {ct.id} is being received here: no replica of it")
    if slog is not None and (slog.peer != dest or not slog.replica):
        raise OsctlError(CONFLICT, f"container {ct.id} is being sent to {slog.peer} "
                                   f"(stage {slog.stage}): drop that first (osctl ct send cancel)")
    if slog is None:
        await send_config(ctx, id, dest, None, to_pool)
        async with hold_instance(ctx, ct, "ct.replicate"):
            assert ct.send_log is not None
            save_log(pstate, ct, replace(ct.send_log, replica=True))
    if ct.send_log is not None and ct.send_log.stage == Stage.CONFIG:
        await send_rootfs(ctx, id)
    else:
        await send_sync(ctx, id)
    done = ct.send_log
    assert done is not None
    return {"id": ct.id, "pool": ct.pool, "dest": dest, "taken": done.taken,
            "stream": done.stream}


async def drop(ctx: Context, id: str) -> None:
    """The container's replica goes (at its node too if that answers), if
    it has one: it stops being replicated, or moves (a send cannot start
    while a replica's send log is open)."""
    _, ct = ctx.node.registry.ct(id)
    await drop_with(ct, lambda local: send_cancel(ctx, id, local=local))


async def drop_with(inst: Container | VM, cancel: Callable[[bool], Awaitable]) -> None:
    """``cancel(local)`` the replica of ``inst`` if it has one: at its node
    too (False) if that answers, else only here (True)."""
    if inst.send_log is None or not inst.send_log.replica or inst.send_log.role != SOURCE:
        return
    try:
        await cancel(False)
    except OsctlError:  # its node is gone or refuses: only this end
        await cancel(True)


def unrecoverable(inst: Container | VM) -> str | None:
    """Why container (or VM) ``inst`` here cannot be recovered (no complete
    replica of it is staged here); None if it can."""
    slog = inst.send_log
    if slog is None or slog.role != DESTINATION:
        return f"{inst.noun} {inst.id} is no replica here (it is {inst.state})"
    if slog.stage == Stage.CONFIG:
        return f"the replica of {inst.noun} {inst.id} is not complete: its full copy never arrived"
    return None


def replica_here(inst: Container | VM) -> SendLog:
    """The send log of the complete replica ``inst`` here; a conflict if it is none."""
    why = unrecoverable(inst)
    if why is not None:
        raise OsctlError(CONFLICT, why)
    assert inst.send_log is not None
    return inst.send_log


@command("ct.recover", mutating=True, target=Target("ct", "id"))
async def recover(ctx: Context, id: str, start: bool = True) -> dict:
    """Turn the replica of container ``id`` held here into the container and
    start it (``start`` false: leave it stopped). For when its own node is
    gone: what it wrote after the last pass is lost (the reply's
    ``data_age`` says how much time that is)."""
    node = ctx.node
    pstate, ct = node.registry.ct(id)
    taken = replica_here(ct).taken
    await adopt(ctx, pstate, ct)
    result = await started(node, pstate, ct, start)
    return {**result, "taken": taken, "data_age": None if taken is None else time.time() - taken}
