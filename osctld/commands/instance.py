"""What the commands of containers and VMs share: their lifecycle verbs and
the skeleton of their creation. What differs by kind their driver does
(runtime/driver.py); these never ask which kind they hold."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, AsyncIterator, Literal

from osctl.protocol import DENIED, EXISTS, NOT_FOUND, OsctlError

from ..model.account import Perm
from ..model.group import check_group_path
from ..undo import Undo
from . import Context, hold_instance

if TYPE_CHECKING:
    from ..model.container import Container
    from ..model.user import User
    from ..model.vm import VM

Verb = Literal["start", "stop", "restart", "kill"]


def group_to(ctx: Context, pstate, path: str, what: str) -> str:
    """The group a container or VM (``what``) moves to: there, and (for an
    account) one it manages too, not only the one the server is in."""
    group = pstate.group(check_group_path(path)).path
    if not ctx.access.may(Perm.MANAGER, pstate.pool.name, group):
        raise OsctlError(DENIED, f"moving a {what} to group {group} needs manager there")
    return group


async def lifecycle(ctx: Context, kind: str, id: str, verb: Verb, timeout: int = 0) -> dict:
    """``<kind>.<verb>`` of the instance ``id`` names, under its locks: a
    start, a stop (``timeout`` s before the kill), a kill, or the driver's
    restart (which never leaves a running instance stopped by a failed
    start). Stopped by stop or kill, it is meant to stay stopped (a VM is
    marked offline). The driver refuses what the lifecycle table does."""
    node = ctx.node
    driver = node.driver(kind)
    pstate, inst = node.registry.instance(kind, id)
    async with hold_instance(ctx, inst, f"{kind}.{verb}"):
        if verb in ("stop", "kill"):
            driver.keep_stopped(pstate, inst)
        if verb in ("start", "restart"):
            await node.check_home(inst)
        if verb == "restart":
            await driver.restart(pstate, inst, timeout)
        elif verb == "start":
            await driver.start(pstate, inst)
        else:
            await driver.stop(inst, 0 if verb == "kill" else timeout, kill=verb == "kill")
    return inst.public()


@contextlib.asynccontextmanager
async def creating(ctx: Context, pstate, inst: Container | VM, user: User,
                   disk_quotas: bool = True) -> AsyncIterator[Undo]:
    """Create ``inst`` of ``user`` in ``pstate``'s pool under its locks: its
    id checked free (also of a deleted one until its recycle stage), its user and group still there, its user's quotas checked (see
    ``PoolState.check_quota`` for ``disk_quotas``), then the id reserved
    while the body makes its files with the undo stack it is given. Saved
    last and published once all is done; a step that fails undoes them all."""
    table = pstate.instances(inst.kind)
    async with hold_instance(ctx, inst, f"{inst.kind}.new", new=True), Undo() as undo:
        if inst.id in table:
            raise OsctlError(EXISTS, f"{inst.noun} {inst.id!r} exists in pool {pstate.pool.name}")
        pstate.check_name_free(inst.kind, inst.noun, inst.id)  # a deleted one's, until recycled
        if pstate.users.get(user.name) is not user:
            raise OsctlError(NOT_FOUND, f"user {user.name} is gone")
        pstate.group(inst.group)  # and its group, deleted while we waited?
        pstate.check_quota(inst, disk_quotas)
        table[inst.id] = inst  # reserve the id (and the quota) while the files are made
        undo.push(table.pop, inst.id)
        yield undo
        undo.push(pstate.store.delete, inst.kind, inst.id)
        pstate.save_instance(inst)
    ctx.node.events.publish("add", object=inst.kind, pool=inst.pool, id=inst.id, group=inst.group)
