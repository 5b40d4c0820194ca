"""Verbs about the daemon itself: status, events, history, operations, templates."""

from __future__ import annotations

import json
from typing import Annotated

from osctl.protocol import INVALID, OsctlError

from . import REGISTRY, Between, Context, command


@command("daemon.status")
async def status(ctx: Context) -> dict:
    """What the daemon is and holds."""
    return ctx.daemon.status()


@command("daemon.commands")
async def commands(ctx: Context) -> list:
    """Every wire verb with its arguments."""
    return [{"cmd": s.name, "args": sorted(s.hints), "required": sorted(s.required),
             "mutating": s.mutating, "summary": s.summary} for s in sorted(REGISTRY.values(), key=lambda s: s.name)]


@command("event.subscribe")
async def subscribe(ctx: Context, types: list[str] | None = None) -> dict:
    """Turn this connection into a stream of events."""
    ctx.subscribe({"types": types or []})
    return {"subscribed": True}


@command("op.ls")
async def op_ls(ctx: Context) -> list:
    """Operations in flight."""
    return [op for op in ctx.daemon.ops.names() if op != ctx.op]


@command("op.cancel")
async def op_cancel(ctx: Context, op: str) -> dict:
    """Cancel an operation in flight; it rolls back what it did."""
    if op == ctx.op:
        raise OsctlError(INVALID, "an operation cannot cancel itself")
    ctx.daemon.ops.cancel(op)
    return {"cancelled": op}


@command("history.ls")
async def history(ctx: Context, pool: str | None = None,
                  limit: Annotated[int, Between(0, 100_000)] = 50) -> list:
    """The last state-changing commands of a pool."""
    pstate = ctx.daemon.registry.pool(pool)
    try:
        lines = pstate.pool.history_file.read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines[-limit:] if limit > 0 else lines:
        try:
            out.append({"pool": pstate.pool.name, **json.loads(line)})
        except ValueError:
            continue  # a line cut short by a crash
    return out


@command("template.ls")
async def template_ls(ctx: Context) -> list:
    """Templates this node can build containers from."""
    return [t.public() for t in ctx.daemon.templates.all()]
