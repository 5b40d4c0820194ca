"""Looking at running containers from outside: their processes, which
container a host process is in, what each uses, waiting for a state, and
LXC's log. All reading verbs (``stats``): they change nothing."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Annotated

from osctl.protocol import BUSY, INVALID, OsctlError

from ..asker import telling
from ..model.account import Perm
from ..model.container import Container
from ..model.lifecycle import State
from ..runtime import logtail, usage
from . import Between, Context, LogLines, Seconds, Target, command

# A state to wait for, or "up": running, and its service manager done starting.
UP = "up"
POLL = 0.2


def server_usage(ctx: Context, rel: str, pid: int | None, now: float) -> dict | None:
    """CPU seconds and % (over the meter's last interval), memory, processes
    and uptime of a running server with cgroup ``rel`` and init (or QEMU)
    ``pid``; None when it is not running."""
    u = usage.usage(ctx.node.containers.cgroups, rel, pid, now)
    return None if u is None else {**u, "cpu_percent": ctx.node.cpu.percent(rel)}


def ct_usage(ctx: Context, ct: Container, now: float, links: dict | None = None) -> dict | None:
    """``server_usage``, and with ``links`` its netifs' traffic."""
    tree = ctx.node.containers.cgroups
    u = server_usage(ctx, tree.ct(ct.pool, ct.group, ct.id), ct.init_pid if ct.running else None, now)
    return u if u is None or links is None else {**u, **traffic(ctx, ct, links)}


def traffic(ctx: Context, ct: Container, links: dict[str, tuple[int, dict]]) -> dict:
    """Bytes its netifs received and sent (as it sees them) since their veths
    were made, from one dump of the node's links (``Network.all_counters``)."""
    totals = {"rx_bytes": 0, "tx_bytes": 0}
    for n in ct.netifs:
        _, counters = links.get(ctx.node.net.veth(n), (None, {}))
        for k in totals:
            totals[k] += counters.get(k, 0)
    return totals


USAGE_COLUMNS = ("cpu_seconds", "cpu_percent", "memory", "pids", "uptime", "rx_bytes", "tx_bytes")


def usage_columns(ctx: Context, pstate, ct: Container, now: float, links: dict) -> dict:
    """The usage as flat columns of ``ct ls`` (None while stopped), and the
    disk it uses (stopped too; None where that is not cheap to know)."""
    u = ct_usage(ctx, ct, now, links) or {}
    return {**{("memory_used" if k == "memory" else k): u.get(k) for k in USAGE_COLUMNS},
            "disk_used": usage.disk_used(pstate.pool, ct)}


@command("ct.ps", target=Target("ct", "id"), needs=Perm.STATS)
async def ps(ctx: Context, id: str) -> list:
    """The container's processes: host and container PID and UID, command."""
    pstate, ct = ctx.node.registry.ct(id)
    if not ct.running:
        return []
    tree = ctx.node.containers.cgroups
    uid_map = pstate.users[ct.user].uid_map
    return [p.public() for p in usage.processes(tree, tree.ct(ct.pool, ct.group, ct.id), uid_map)]


@command("ct.pid", needs=Perm.STATS)
async def pid(ctx: Context, pids: list[Annotated[int, Between(1, 1 << 22)]]) -> list:
    """Which container (or VM) each host process belongs to, from its
    cgroup; ``None`` for one in none (or one this account may not see)."""
    if not pids:
        raise OsctlError(INVALID, "ct.pid needs at least one PID")
    root = ctx.node.containers.cgroups.root
    out: list[dict] = []
    for p in pids:
        o = usage.owner(p, root)
        if o is None or not ctx.access.may(Perm.STATS, o.pool, o.group or "/"):
            out.append({"pid": p, "kind": None, "pool": None, "id": None})
        else:
            out.append({"pid": p, "kind": o.kind, "pool": o.pool, "id": o.id})
    return out


async def system_up(ctx: Context, ct: Container) -> bool:
    """Whether the container's init is done starting: at once for a plain
    init, for systemd when ``systemctl is-system-running`` is past ``starting``
    (asked inside, bounded: the tenant's systemctl may hang)."""
    if not ct.running or not ct.init_pid:
        return False
    try:  # its program, not its comm: exec'd as /sbin/init, systemd's comm is "init"
        program = os.path.basename(os.readlink(f"/proc/{ct.init_pid}/exe"))
    except OSError:
        return False
    if program != "systemd":
        return True
    try:
        _, out, _ = await ctx.node.containers.lxc.attach(
            ct.pool, ct.id, ["systemctl", "is-system-running"], None, timeout=10)
    except OsctlError:
        return False
    return out.decode(errors="replace").strip() not in ("", "initializing", "starting")


async def wait_until(ctx: Context, ct: Container, state: str, timeout: float) -> None:
    """Return when ``ct`` is in ``state`` (or ``up``); ``busy`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    what = "its system to be up" if state == UP else f"it to be {state}"
    async with telling(f"waiting up to {timeout:g} s for container {ct.id}: {what}"):
        while True:
            if state == UP:
                if await system_up(ctx, ct):
                    return
            elif ct.state == state:
                return
            if time.monotonic() >= deadline:
                raise OsctlError(BUSY, f"container {ct.id} is {ct.state}, not {state}, "
                                       f"after {timeout} s")
            await asyncio.sleep(POLL)


@command("ct.wait", target=Target("ct", "id"), needs=Perm.STATS)
async def wait(ctx: Context, id: str, state: str, timeout: Seconds = 60) -> dict:
    """Wait until the container is in ``state``, or ``up`` (running and its
    init done starting); ``busy`` when ``timeout`` seconds pass first."""
    wanted = {s.value for s in State} | {UP}
    if state not in wanted:
        raise OsctlError(INVALID, f"unknown state {state!r}: one of {', '.join(sorted(wanted))}")
    _, ct = ctx.node.registry.ct(id)
    await wait_until(ctx, ct, state, timeout)
    return ct.public()


@command("ct.log", target=Target("ct", "id"), needs=Perm.STATS)
async def log(ctx: Context, id: str, lines: LogLines = 200) -> dict:
    """LXC's log of the container (its last ``lines``), and why it last
    failed to start or stopped, where known."""
    _, ct = ctx.node.registry.ct(id)
    text = await asyncio.to_thread(logtail.tail, ctx.node.containers.lxc.log_file(ct.pool, ct.id), lines)
    return {"id": ct.id, "pool": ct.pool, "last_start_error": ctx.node.containers.read_start_error(ct),
            "last_stop": ct.last_stop, "log": text}


@command("ct.top", needs=Perm.STATS)
async def top(ctx: Context, interval: Annotated[int, Between(0, 60)] = 1) -> list:
    """Every running container this account may see, with its CPU use
    over ``interval`` seconds (percent of one core), memory and processes."""
    cts = [c for c in ctx.node.registry.all_cts()
           if c.running and ctx.access.may(Perm.STATS, c.pool, c.group)]
    t0 = time.monotonic()
    before = {(c.pool, c.id): ct_usage(ctx, c, time.time()) for c in cts}
    await asyncio.sleep(interval)
    elapsed = time.monotonic() - t0
    out = []
    for c in cts:
        now, then = ct_usage(ctx, c, time.time()), before[(c.pool, c.id)]
        if now is None:
            continue
        cpu = None
        if then and then["cpu_seconds"] is not None and now["cpu_seconds"] is not None and elapsed > 0:
            cpu = round(100 * (now["cpu_seconds"] - then["cpu_seconds"]) / elapsed, 1)
        out.append({"pool": c.pool, "id": c.id, "user": c.user, "cpu_percent": cpu, **now})
    return out
