"""Verbs about the daemon itself: status, events, history, operations, templates."""

from __future__ import annotations

from typing import Annotated

from osctl.protocol import INVALID, UNSUPPORTED, OsctlError

from .. import history
from ..events import Filter
from ..model.account import ROOT, Perm
from . import REGISTRY, Between, Context, aliases_of, command


@command("daemon.status")
async def status(ctx: Context) -> dict:
    """What the daemon is and holds."""
    return ctx.node.status()


@command("daemon.commands", needs=Perm.STATS)
async def commands(ctx: Context) -> list:
    """Every wire verb with its arguments, the permission an account needs
    for it (``root``: root's alone) and its old names (``aliases``, kept
    for one release; an old ``netif.*`` name runs the ``vm.`` verb when its
    ``vm`` argument is true, else the ``ct.`` one)."""
    return [{"cmd": s.name, "args": sorted(s.hints), "required": sorted(s.required),
             "mutating": s.mutating, "summary": s.summary, "aliases": aliases_of(s.name),
             "permission": s.needs.wire if s.needs else "root"}
            for s in sorted(REGISTRY.values(), key=lambda s: s.name)]


@command("event.subscribe", needs=Perm.STATS)
async def subscribe(ctx: Context, types: list[str] | None = None, pools: list[str] | None = None,
                    objects: list[str] | None = None, ids: list[str] | None = None) -> dict:
    """Turn this connection into a stream of events (an account's: of what
    it may see, and of its own commands), of the types, pools, object kinds
    and object ids given (any, for one not given)."""
    if ctx.subscribe is None:
        raise OsctlError(UNSUPPORTED, "this caller cannot take a stream of events")
    ctx.subscribe(Filter.of(types or (), pools or (), objects or (), ids or ()))
    return {"subscribed": True}


def _own(ctx: Context) -> str | None:
    """Whose operations the caller may see and cancel (None: all, root)."""
    return None if ctx.access is ROOT else ctx.access.ref


@command("op.ls", needs=Perm.STATS)
async def op_ls(ctx: Context) -> list:
    """Operations in flight (an account's: its own)."""
    return [op for op in ctx.node.ops.names(_own(ctx)) if op != ctx.op]


@command("op.cancel", needs=Perm.STATS)
async def op_cancel(ctx: Context, op: str) -> dict:
    """Cancel an operation in flight (an account: one of its own); it rolls
    back what it did."""
    if op == ctx.op:
        raise OsctlError(INVALID, "an operation cannot cancel itself")
    ctx.node.ops.cancel(op, _own(ctx))
    return {"cancelled": op}


@command("history.ls")
async def history_ls(ctx: Context, pool: str | None = None, id: str | None = None,
                     since: float | None = None, account: str | None = None,
                     limit: Annotated[int, Between(0, 100_000)] = 50) -> list:
    """The last state-changing commands of a pool (of all pools when none is
    named), optionally only on object ``id``, since a time (seconds since
    the epoch) or by an account (``root``: root's own)."""
    registry = ctx.node.registry
    pools = [registry.pool(pool)] if pool is not None else list(registry.pools.values())
    return history.read(pools, limit, history.Query(id, since, account))


@command("template.ls")
async def template_ls(ctx: Context) -> list:
    """Templates this node can build containers from."""
    return [t.public() for t in ctx.node.templates.all()]
