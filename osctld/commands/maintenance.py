"""Maintenances: list them, run one at once (see osctld/maintenance.py)."""

from __future__ import annotations

from osctl.protocol import CONFLICT, OsctlError

from .. import maintenance
from ..model.account import Perm
from ..model.group import check_group_path
from ..model.maintenance import OPEN
from . import Context, Target, command


@command("maintenance.ls", needs=Perm.STATS)
async def ls(ctx: Context, pool: str | None = None, group: str | None = None) -> list:
    """Planned, active and ended maintenances, soonest first; ``group``: only
    of instances in that group or below it."""
    pools = [ctx.node.registry.pool(pool)] if pool else list(ctx.node.registry.pools.values())
    if group is not None:
        group = check_group_path(group)
        for p in pools:
            p.group(group)
    prefix = (group or "").rstrip("/") + "/"
    out = [m for p in pools for m in p.maintenances.values()
           if (group is None or m.group == group or m.group.startswith(prefix))
           and ctx.access.may(Perm.STATS, m.pool, m.group)]
    return [m.public() for m in sorted(out, key=lambda m: (m.starts, m.pool, m.machine))]


@command("maintenance.show", target=Target("maintenance", "id"), needs=Perm.STATS)
async def show(ctx: Context, id: str) -> dict:
    """One maintenance, by ``[pool:]id``."""
    return ctx.node.registry.maintenance(id)[1].public()


@command("maintenance.run", mutating=True, target=Target("maintenance", "id"), needs=Perm.SUDO_SRV)
async def run(ctx: Context, id: str) -> dict:
    """Do a planned maintenance now, outside its window: the instance
    restarts into its changes (or gets the old settings back if it cannot)."""
    pstate, m = ctx.node.registry.maintenance(id)
    if m.state not in OPEN:
        raise OsctlError(CONFLICT, f"maintenance {m.id} is {m.state}: nothing to run")
    await maintenance.run(ctx.node, pstate, m)
    return m.public()
