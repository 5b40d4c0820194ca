"""Maintenances: restarts into changes that wait for a group's window.

A change that needs a restart (a VM's cores or memory; a container's
features or devices staged with ``--no-restart``) is saved at once and, for
an instance that runs, planned as a maintenance (``plan``) into the first
window of its group that starts at least the notification lead time later;
planning publishes the announcement event. The daemon's timer (``watch``)
runs what is due inside its window, or at once in a group an operator has
put in maintenance; ``maintenance.run`` and ``--now`` run one at once.

Maintenances are kept in the pool (conf/maintenance/<id>.yml, written
atomically), so a restarted daemon knows them. One whose window passed
while the node was down is moved to the next window (the one open now, if
any), never done outside one. A run restarts the instance back into the
state it was in; if it cannot start with its changes, the old settings come
back (kept in the maintenance) and it starts as it was, and the failure is
the maintenance's result.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable

from .locks import ct_key, pool_key, vm_key
from .model.container import Container
from .model.group import effective, in_maintenance
from .model.maintenance import (ACTIVE, CANCELLED, DONE, FAILED, OPEN, PLANNED, Maintenance,
                                Schedule, Window)
from .model.vm import VM
from .state import PoolState

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger(__name__)
# A restart's time beyond the clean stop: for estimated_duration.
START_ALLOWANCE = 30
# How long ended maintenances stay listed (the platform's tenants look back).
KEEP_ENDED = 30 * 86400
Clock = Callable[[], float]


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, timezone.utc)


def schedule(node: Node, pstate: PoolState, group: str) -> Schedule:
    """The effective window settings of ``group``."""
    g = pstate.groups
    return Schedule(effective(g, group, "maintenance_start"), effective(g, group, "maintenance_end"),
                    effective(g, group, "timezone"), effective(g, group, "notification_leadtime"),
                    node.config.maintenance.unit)


def pending(server: Container | VM) -> bool:
    """Whether the running instance waits for a restart into saved changes."""
    return server.pending_restart


def _shown(key: str, value: object) -> str:
    return f"{value >> 20} MiB" if key == "memory" and isinstance(value, int) else str(value)


def activities(old: dict, server: Container | VM) -> list[str]:
    new = server.to_dict()
    return [f"{k}: {_shown(k, v)} -> {_shown(k, new[k])}" for k, v in old.items()]


def open_for(pstate: PoolState, server: Container | VM) -> Maintenance | None:
    """The planned maintenance of an instance, if it has one."""
    kind = server.kind
    return next((m for m in pstate.maintenances.values()
                 if m.kind == kind and m.machine == server.id and m.state in OPEN), None)


def _publish(node: Node, phase: str, m: Maintenance) -> None:
    node.events.publish("maintenance", phase=phase, object="maintenance", **m.public())


def plan(node: Node, pstate: PoolState, server: Container | VM, old: dict, timeout: int,
         at_once: bool = False, clock: Clock = time.time) -> Maintenance:
    """Plan the restart of ``server`` into its saved changes (``old``: the
    settings they replaced). An instance with a planned maintenance gets the
    changes added to it (its first old values kept); otherwise a new one
    goes into the group's next window far enough ahead (``at_once``: now),
    and is announced."""
    now = clock()
    m = open_for(pstate, server)
    if m is not None:
        m.old = {**old, **m.old}
        m.activities = activities(m.old, server)
        pstate.save_maintenance(m)
        _publish(node, "changed", m)
        return m
    if at_once:
        w = Window(_dt(now), _dt(now + timeout + START_ALLOWANCE))
    else:
        w = schedule(node, pstate, server.group).first_window(_dt(now))
    m = Maintenance(kind=server.kind, machine=server.id, pool=pstate.pool.name, group=server.group,
                    starts=w.start.timestamp(), ends=w.end.timestamp(),
                    estimated_duration=timeout + START_ALLOWANCE, activities=activities(old, server),
                    old=dict(old), announced=now)
    pstate.maintenances[m.id] = m
    pstate.save_maintenance(m)
    _publish(node, "announced", m)
    log.info("maintenance %s of %s %s:%s planned for %s", m.id, m.kind, m.pool, m.machine,
             m.public()["starts"])
    return m


async def _put_back(node: Node, pstate: PoolState, server: Container | VM, old: dict) -> None:
    """The settings ``old`` holds back in force, and the instance running again."""
    back = type(server).from_dict({**server.to_dict(), **old}, pstate.pool.name)
    for key in old:
        setattr(server, key, getattr(back, key))
    pstate.save_instance(server)
    if isinstance(server, Container):
        node.containers.write_config(pstate, server)
    if not server.running:
        await node.driver(server.kind).start(pstate, server)


async def run_held(node: Node, pstate: PoolState, m: Maintenance, clock: Clock = time.time) -> None:
    """Run ``m`` now; its instance's lock (and its pool's, shared) is held.
    The result is recorded, never raised: a failure is the maintenance's."""
    if m.state not in OPEN:  # ACTIVE here: a daemon died while running it
        return
    server = pstate.instances(m.kind).get(m.machine)
    if server is None:
        _finish(node, pstate, m, CANCELLED, f"{m.kind} {m.machine} is gone", clock)
        return
    if not pending(server):
        why = ("applied by an earlier restart" if server.running
               else f"{server.state}: the changes apply at its next start")
        _finish(node, pstate, m, DONE, why, clock)
        return
    m.state = ACTIVE
    pstate.save_maintenance(m)
    _publish(node, "started", m)
    timeout = max(m.estimated_duration - START_ALLOWANCE, 0)
    try:
        await node.driver(server.kind).restart(pstate, server, timeout)
    except Exception as e:
        log.error("maintenance %s of %s:%s failed: %s", m.id, m.pool, m.machine, e)
        try:
            await _put_back(node, pstate, server, m.old)
            why = f"{e}; the old settings are back"
        except Exception as e2:
            why = f"{e}; putting the old settings back failed too: {e2}"
        _finish(node, pstate, m, FAILED, why, clock)
        return
    _finish(node, pstate, m, DONE, "restarted into: " + "; ".join(m.activities), clock)


async def run(node: Node, pstate: PoolState, m: Maintenance, clock: Clock = time.time) -> None:
    """``run_held`` under the instance's lock."""
    key = vm_key if m.kind == "vm" else ct_key
    async with node.locks.hold(pool_key(m.pool), "maintenance", shared=True), \
            node.locks.hold(key(m.pool, m.machine), "maintenance"):
        await run_held(node, pstate, m, clock)


def _finish(node: Node, pstate: PoolState, m: Maintenance, state: str, result: str,
            clock: Clock) -> None:
    m.state, m.result, m.finished = state, result, clock()
    pstate.save_maintenance(m)
    _publish(node, state, m)
    node.history.write(m.pool, {"cmd": "maintenance", "id": m.id, "machine": f"{m.kind}:{m.machine}",
                                "result": "ok" if state != FAILED else "error",
                                "state": state, "detail": result})


def _close_expired(node: Node, pstate: PoolState, now: float) -> None:
    """Reset the in_maintenance marks older than the node's cap."""
    cap = node.config.maintenance.in_maintenance_cap
    for g in pstate.groups.values():
        if g.settings.get("in_maintenance") and (g.in_maintenance_since or 0) + cap <= now:
            g.settings["in_maintenance"] = False
            g.in_maintenance_since = None
            pstate.save_group(g)
            log.info("group %s:%s: in_maintenance reset after %d s", pstate.pool.name, g.path, cap)
            node.events.publish("change", object="group", pool=pstate.pool.name, id=g.path,
                                settings={"in_maintenance": False})


def due(node: Node, pstate: PoolState, now: float) -> list[Maintenance]:
    """The planned maintenances to run now. One whose window passed unrun
    (the node was down) moves to the window open now or the next one."""
    out = []
    for m in list(pstate.maintenances.values()):
        if m.state not in OPEN:
            continue
        server = pstate.instances(m.kind).get(m.machine)
        group = server.group if server is not None else m.group
        if m.ends <= now and server is not None:
            w = schedule(node, pstate, group).current_or_next(_dt(now))
            m.starts, m.ends, m.state = w.start.timestamp(), w.end.timestamp(), PLANNED
            pstate.save_maintenance(m)
            _publish(node, "rescheduled", m)
        if server is None or m.due(now) or in_maintenance(pstate.groups, group, _dt(now)):
            out.append(m)
    return out


def _forget_old(pstate: PoolState, now: float) -> None:
    """Ended maintenances stay listed for ``KEEP_ENDED`` seconds, then go."""
    for m in list(pstate.maintenances.values()):
        if m.state not in OPEN and (m.finished or 0) + KEEP_ENDED <= now:
            pstate.store.delete("maintenance", m.id)
            del pstate.maintenances[m.id]


async def tick(node: Node, clock: Clock = time.time) -> None:
    """One look: expired in_maintenance marks reset, old records dropped, due
    maintenances run. Cancelled (the daemon stops), it waits for the runs
    under way: an instance stopped for a restart must come up again."""
    now = clock()
    work = []
    for pstate in list(node.registry.pools.values()):
        _close_expired(node, pstate, now)
        _forget_old(pstate, now)
        work += [run(node, pstate, m, clock) for m in due(node, pstate, now)]
    runs = asyncio.ensure_future(asyncio.gather(*work, return_exceptions=True))
    try:
        results = await asyncio.shield(runs)
    except asyncio.CancelledError:
        await asyncio.wait([runs])
        raise
    for r in results:
        if isinstance(r, BaseException):
            log.error("maintenance: %s", r)


async def watch(node: Node) -> None:
    """The daemon's timer: a look at start (what came due while it was
    down), then every ``maintenance.check_every`` seconds."""
    while True:
        try:
            await tick(node)
        except Exception:
            log.exception("maintenance check failed")
        await asyncio.sleep(node.config.maintenance.check_every)
