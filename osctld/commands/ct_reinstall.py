"""Reinstall a container: a fresh root filesystem from its template (or
another), everything else kept: its id, config, addresses, features, limits.

The new rootfs is made beside the old one (``rootfs.new``) and swapped in by
two renames; the old one (``rootfs.old``) goes only once the container is
whole again (started, where it ran). A failure on the way puts the old one
back (and starts it again, where it ran), so a tenant's data is never lost
to a reinstall that did not happen.
"""

from __future__ import annotations

import logging

from osctl.protocol import CONFLICT, OsctlError

from ..model.account import Perm
from ..model.container import STOPPED
from ..storage import backend_for
from ..undo import Undo
from . import Context, Seconds, Target, command, hold_instance
from .ct import STOP_TIMEOUT, find, fresh_rootfs

log = logging.getLogger(__name__)


@command("ct.reinstall", mutating=True, target=Target("ct", "id"), needs=Perm.MANAGER)
async def reinstall(ctx: Context, id: str, template: str | None = None, version: str | None = None,
                    restart: bool = False, timeout: Seconds = STOP_TIMEOUT) -> dict:
    """A fresh rootfs from ``template`` (default: the one it was made from)
    at ``version`` (default: its own, or the other template's default). A
    running container is refused unless ``restart``: stopped (killed after
    ``timeout`` s), reinstalled, started."""
    node = ctx.node
    pstate, ct = find(ctx, id)
    tpl = node.templates.get(template or ct.template or ct.distribution)
    same = tpl.distribution == ct.distribution
    version = tpl.version(version or (ct.version if same else None))
    backend = backend_for(pstate.pool)
    async with hold_instance(ctx, ct, "ct.reinstall"), Undo() as undo:
        was_running = ct.running
        if ct.state != STOPPED and not (was_running and restart):
            how = ("stop it, or reinstall with --restart (stopped, reinstalled, started again)"
                   if was_running else "only a stopped or running container is reinstalled")
            raise OsctlError(CONFLICT, f"container {ct.id} is {ct.state}: {how}")
        rootfs = pstate.pool.rootfs(ct.id)
        fresh, old = rootfs.with_name("rootfs.new"), rootfs.with_name("rootfs.old")
        for left in (fresh, old):  # by a reinstall the daemon did not live through
            await backend.destroy(left)
        # Built (the first time: minutes) before a running tenant is stopped.
        await node.templates.ensure(backend, tpl, version, ctx.progress)
        if was_running:
            await node.containers.stop(ct, timeout)
            undo.push(node.containers.start, pstate, ct)  # last: with its old rootfs back
        before = (ct.template, ct.distribution, ct.version)
        ct.template, ct.distribution, ct.version = tpl.name, tpl.distribution, version
        undo.push(_put_back, pstate, ct, before)
        await fresh_rootfs(ctx, pstate, ct, tpl, fresh, undo)
        await backend.rename(rootfs, old)
        undo.push(backend.rename, old, rootfs)
        await backend.rename(fresh, rootfs)
        undo.push(backend.rename, rootfs, fresh)
        pstate.save_ct(ct)
        await node.containers.write_netconfig(pstate, ct)  # its addresses, in the new rootfs
        node.containers.write_config(pstate, ct)
        if was_running:
            try:
                await node.containers.start(pstate, ct)
            except OsctlError as e:
                raise OsctlError(e.code, f"reinstall of {ct.id} failed: {e.message}; its old root "
                                         "filesystem is back and it starts again as it was") from None
        undo.commit()  # reinstalled: removing the old one cannot undo it
        try:  # under the lock: the next reinstall's rootfs.old is its own
            await backend.destroy(old)
        except (OsctlError, OSError) as e:  # reinstalled all the same; the next one removes it
            log.warning("cannot remove the old rootfs of %s:%s: %s", ct.pool, ct.id, e)
    node.events.publish("change", object="ct", pool=ct.pool, id=ct.id, group=ct.group,
                        settings=["rootfs", "template", "version"])
    return ct.public()


def _put_back(pstate, ct, before: tuple) -> None:
    ct.template, ct.distribution, ct.version = before
    pstate.save_ct(ct)
