"""Consumption records: what instances and resource groups used, per month."""

from __future__ import annotations

import asyncio
import re

from osctl.protocol import INVALID, OsctlError

from .. import consumption
from ..model.account import Perm
from ..model.group import check_group_path
from . import Context, command

PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


@command("consumption.ls", needs=Perm.STATS)
async def ls(ctx: Context, period: str | None = None, pool: str | None = None,
             group: str | None = None, type: str | None = None) -> list:
    """Records of a month (default: this one): per instance, then per group
    (its instances' and child groups' together); deleted instances' too.
    An account sees the records of the groups it may see."""
    if period is not None and not PERIOD.match(period):
        raise OsctlError(INVALID, f"period must be a month as YYYY-MM, got {period!r}")
    if type is not None and type not in consumption.TYPES:
        raise OsctlError(INVALID, f"type must be one of {', '.join(consumption.TYPES)}, got {type!r}")
    if group is not None:
        group = check_group_path(group)
    node = ctx.node
    month = period or consumption.period_of(node.consumption.clock.now(),
                                            consumption.zone_of(None, "/"))
    pools = [node.registry.pool(pool)] if pool else list(node.registry.pools.values())
    out: list = []
    for pstate in pools:  # the journals are read off the event loop: a month is long
        out += await asyncio.to_thread(consumption.records, pstate.pool, month, group, type)
    return [r for r in out if ctx.access.may(Perm.STATS, r["pool"], r["group"])]
