"""prlimits of a container: set (at start and live) and unset."""

from __future__ import annotations

from osctl.protocol import NOT_FOUND, OsctlError

from ..model.prlimit import check_name, check_pair
from ..runtime import prlimits
from . import Context, Target, command, hold_instance
from .ct import find


@command("ct.prlimit.set", mutating=True, target=Target("ct", "id"))
async def set_(ctx: Context, id: str, name: str, soft: str | int, hard: str | int | None = None) -> dict:
    """Set a prlimit: LXC sets it on init at start, and the processes
    running now get it at once."""
    pair = list(check_pair(check_name(name), soft, hard, prlimits.ceiling(name)))
    pstate, ct = find(ctx, id)
    async with hold_instance(ctx, ct, "ct.prlimit.set"):
        ct.prlimits = {**ct.prlimits, name: pair}
        pstate.save_ct(ct)
        ctx.node.containers.write_config(pstate, ct)
        applied, refused = (prlimits.apply(ct.init_pid, name, *pair) if ct.running and ct.init_pid
                            else (0, 0))
    return {**ct.public(), "applied_to": applied, "refused_by": refused}


@command("ct.prlimit.del", mutating=True, target=Target("ct", "id"))
async def delete(ctx: Context, id: str, name: str) -> dict:
    """Drop a prlimit from the config: the next start gets the default."""
    check_name(name)
    pstate, ct = find(ctx, id)
    async with hold_instance(ctx, ct, "ct.prlimit.del"):
        if name not in ct.prlimits:
            raise OsctlError(NOT_FOUND, f"container {ct.id} sets no prlimit {name}")
        ct.prlimits = {k: v for k, v in ct.prlimits.items() if k != name}
        pstate.save_ct(ct)
        ctx.node.containers.write_config(pstate, ct)
    return ct.public()
