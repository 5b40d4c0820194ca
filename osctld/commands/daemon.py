"""Verbs about the daemon itself: status, healthcheck, shutdown, events, history, operations, templates."""

from __future__ import annotations

import asyncio
from typing import Annotated

from osctl.protocol import CONFLICT, INVALID, UNSUPPORTED, OsctlError

from .. import healthcheck, history
from ..events import Filter
from ..model.account import ROOT, Perm
from ..model.container import STOPPED, Container
from ..model.vm import VM
from . import REGISTRY, Between, Context, Seconds, aliases_of, command, hold_instance
from .ct import STOP_TIMEOUT

# How long a shutdown's answer has to go out before the daemon closes its connections.
REPLY_GRACE = 0.5


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


@command("daemon.healthcheck")
async def healthcheck_(ctx: Context, repair: bool = False) -> dict:
    """Every object's pieces checked against what the node has: each
    mismatch with its repair; ``repair``: do those that are safe, and say
    which worked (checked again). ``ok``: nothing is left wrong."""
    findings = await healthcheck.check(ctx.node)
    if repair:
        await healthcheck.repair(ctx.node, findings)
    return {"findings": [f.public() for f in findings],
            "ok": all(f.repaired for f in findings)}


@command("daemon.shutdown")
async def shutdown(ctx: Context, timeout: Seconds = STOP_TIMEOUT) -> dict:
    """Take the node down: stop every container and VM (a clean stop, killed
    after ``timeout`` seconds), then lxcfs and the statfs proxy, which
    outlive the daemon otherwise, and then the daemon, once it has answered.
    Autostart containers and online VMs start again with the next daemon.
    It targets no pool (so it is in no pool's history) and, like a read,
    ends where it is when its caller goes: Ctrl-C calls a shutdown off."""
    node = ctx.node

    def every() -> list[Container | VM]:
        return [*node.registry.all_cts(), *node.registry.all_vms()]

    insts = [i for i in every() if i.running]

    async def down(inst: Container | VM) -> None:
        async with hold_instance(ctx, inst, "daemon.shutdown"):
            ctx.progress({"step": "stop", inst.kind: inst.id, "pool": inst.pool})
            await node.driver(inst.kind).stop(inst, timeout)

    results = await asyncio.gather(*(down(i) for i in insts), return_exceptions=True)
    failed = {f"{i.pool}:{i.id}": str(r) for i, r in zip(insts, results) if r is not None}
    running = sorted(f"{s.pool}:{s.id}" for s in every() if s.state != STOPPED)
    if running:  # they still use lxcfs (and the proxy): the node stays up
        raise OsctlError(CONFLICT, f"still running: {', '.join(running)}: the daemon, lxcfs and "
                                   "the statfs proxy stay", details={"failed": failed})
    await asyncio.to_thread(node.containers.lxcfs.stop)
    await asyncio.to_thread(node.containers.statfs.stop)
    # The answer goes out first: the server closes its connections as the daemon stops.
    asyncio.get_running_loop().call_later(REPLY_GRACE, node.stop_requested.set)
    return {"stopped": sorted(f"{i.pool}:{i.id}" for i in insts)}


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
