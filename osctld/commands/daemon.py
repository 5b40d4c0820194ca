"""Verbs about the daemon itself: status, events, history, operations, templates."""

from __future__ import annotations

from typing import Annotated

from osctl.protocol import INVALID, UNSUPPORTED, OsctlError

from .. import history
from ..model.account import Perm
from . import REGISTRY, Between, Context, aliases_of, command


@command("daemon.status")
async def status(ctx: Context) -> dict:
    """What the daemon is and holds."""
    return ctx.node.status()


@command("daemon.commands")
async def commands(ctx: Context) -> list:
    """Every wire verb with its arguments and its old names (``aliases``,
    kept for one release; an old ``netif.*`` name runs the ``vm.`` verb when
    its ``vm`` argument is true, else the ``ct.`` one)."""
    return [{"cmd": s.name, "args": sorted(s.hints), "required": sorted(s.required),
             "mutating": s.mutating, "summary": s.summary, "aliases": aliases_of(s.name)}
            for s in sorted(REGISTRY.values(), key=lambda s: s.name)]


@command("event.subscribe", needs=Perm.STATS)
async def subscribe(ctx: Context, types: list[str] | None = None) -> dict:
    """Turn this connection into a stream of events (an account's: of what
    it may see, and of its own commands)."""
    if ctx.subscribe is None:
        raise OsctlError(UNSUPPORTED, "this caller cannot take a stream of events")
    ctx.subscribe({"types": types or []})
    return {"subscribed": True}


@command("op.ls")
async def op_ls(ctx: Context) -> list:
    """Operations in flight."""
    return [op for op in ctx.node.ops.names() if op != ctx.op]


@command("op.cancel")
async def op_cancel(ctx: Context, op: str) -> dict:
    """Cancel an operation in flight; it rolls back what it did."""
    if op == ctx.op:
        raise OsctlError(INVALID, "an operation cannot cancel itself")
    ctx.node.ops.cancel(op)
    return {"cancelled": op}


@command("history.ls")
async def history_ls(ctx: Context, pool: str | None = None,
                     limit: Annotated[int, Between(0, 100_000)] = 50) -> list:
    """The last state-changing commands of a pool."""
    return history.read(ctx.node.registry.pool(pool), limit)


@command("template.ls")
async def template_ls(ctx: Context) -> list:
    """Templates this node can build containers from."""
    return [t.public() for t in ctx.node.templates.all()]
