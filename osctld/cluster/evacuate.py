"""Maintenance, done: the leader's run of an evacuation or restore plan
(``decide.evacuation_plan``/``restore_plan``), each move a ``move`` task on
the instance's node, and that node's step (``move_step``): a container by
``ct send`` (its replica dropped first: a send log holds one transfer), a
VM by ``vm migrate`` (live while it runs), stopped or started where it is.
The node that did a step writes its record, not the leader, which may die
meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Awaitable, Callable

from osctl.protocol import BUSY, CONFLICT, NOT_FOUND, OsctlError

from ..model.lifecycle import State, at_rest
from . import decide, tasks
from .actions import Actions, split_key
from .decide import Move
from .tasks import Progress

if TYPE_CHECKING:
    from ..node import Node
    from .agent import ClusterAgent


@dataclass(frozen=True)
class Outcome:
    """How one move of an evacuation or restore went."""

    key: str
    ok: bool
    message: str


async def run_moves(moves: list[Move], one: Callable[[Move], Awaitable[str]], parallel: int,
                    say: Callable[[str], None]) -> list[Outcome]:
    """Run ``one(move)`` for each move, ``parallel`` at a time, saying
    when each begins and ends (``say``: a progress line). A move without a
    target is not run (unless it is a stop): reported with its reason.
    ``one`` returns what it did (a line); its failure is that move's, not
    the others'. Live moves go first, the others once they are done."""
    sem = asyncio.Semaphore(parallel)
    todo = [m for m in moves if m.target is not None or m.action == "stop"]
    outcomes = [Outcome(m.instance_key, False, f"{m.instance_key} cannot move: {m.reason}; "
                                                     f"it stays on {m.source}")
                for m in moves if m not in todo]
    for o in outcomes:
        say(o.message)

    async def run(m) -> Outcome:
        async with sem:
            say(f"{m.instance_key}: {m.action} on {m.source}" if m.target in (None, m.source)
                else f"{m.instance_key}: {m.action} {m.source} -> {m.target}")
            began = time.monotonic()
            try:
                done = await one(m)
            except Exception as e:
                message = e.message if isinstance(e, OsctlError) else str(e)
                o = Outcome(m.instance_key, False,
                            f"{m.instance_key}: {m.action} failed: {message}")
            else:
                o = Outcome(m.instance_key, True,
                            f"{m.instance_key}: {done} ({time.monotonic() - began:.1f} s)")
            say(o.message)
            return o

    # Live moves first, before the others: a running VM keeps its
    # interconnect /30, which a container arriving at the same node first
    # could be given.
    live = [m for m in todo if m.action == "live-migrate"]
    outcomes += await asyncio.gather(*(run(m) for m in live))
    return outcomes + list(await asyncio.gather(*(run(m) for m in todo if m not in live)))


async def maintain(cluster: ClusterAgent, name: str, enable: bool, progress: Progress) -> dict:
    """(Leader) node ``name`` into maintenance and emptied (``enable``), or
    online again and what was evacuated brought back."""
    if not cluster.leader.is_leader:
        raise OsctlError(BUSY, f"node {cluster.name} is not the leader now: try again")
    store = cluster.store
    view = await store.view()
    if name not in view.nodes:
        raise OsctlError(NOT_FOUND, f"no node {name} in the cluster")
    await store.set_node_state(name, "maintenance" if enable else "online")
    view = await store.view()
    plan = (decide.evacuation_plan if enable else decide.restore_plan)(view, name)
    what = "evacuating" if enable else "restoring"
    progress(f"{what} {name}: {len(plan)} instance{'s' if len(plan) != 1 else ''}")

    async def one(m: Move) -> str:
        address = view.nodes[m.target].address if m.target else None
        return await tasks.call(store, m.source, "move", {"move": asdict(m), "address": address},
                                by=cluster.name)

    outcomes = await run_moves(plan, one, cluster.config.max_parallel_moves, progress)
    return {"node": name, "state": "maintenance" if enable else "online",
            "done": [o.message for o in outcomes if o.ok],
            "not_done": [o.message for o in outcomes if not o.ok]}


async def move_step(node: Node, m: Move, address: str | None, act: Actions,
                    progress: Progress) -> str:
    """(The instance's node) one step of an evacuation or restore: move the
    instance to the target (at ``address``), stop it here, or start it
    here again; then its record says so (``decide.after``). A stop of one
    already stopped, or a start of one already running, does nothing."""
    cluster = node.cluster
    assert cluster is not None
    kind, id = split_key(m.instance_key)
    _, inst = node.registry.instance(kind, id)
    if m.action == "stop" and at_rest(inst.state):
        # Its record unchanged: the restore starts only what the evacuation stopped.
        return f"stopped on {m.source} already"
    if m.action == "start" and inst.state == State.RUNNING:
        done = f"running on {m.source} already"
    elif m.action == "stop":
        await act.stop(kind, id)
        done = f"stopped on {m.source}"
    elif m.action == "start":
        await act.start(kind, id)
        done = f"started on {m.source}"
    else:
        assert address is not None
        cold = kind == "vm" and m.action == "migrate" and inst.running
        done = f"on {m.target}"
        stopped_here = False
        try:
            if cold:  # a VM's cold move: stopped here, started there
                await act.stop(kind, id)
                stopped_here = True
            try:
                await act.move(kind, id, address)
            except OsctlError as e:
                # A running VM keeps its interconnect /30, which the target may
                # have given another instance meanwhile: it moves stopped then.
                if kind != "vm" or not inst.running or e.code != CONFLICT or "interconnect" not in e.message:
                    raise
                progress(f"{m.instance_key}: {e.message}: moving it stopped")
                await act.stop(kind, id)
                stopped_here = True
                await act.move(kind, id, address)
                cold, done = True, f"on {m.target} (moved stopped: its interconnect was taken there)"
        except BaseException:
            if stopped_here:  # the move failed: it runs on here, as it did
                with contextlib.suppress(Exception):
                    await act.start(kind, id)
            raise
        # Its record first: a start failing there must not leave it recorded here.
        await _record(cluster, m)
        if cold and m.target is not None:
            await tasks.call(cluster.store, m.target, "instance.start", {"kind": kind, "id": id},
                             by=cluster.name)
        return done
    await _record(cluster, m)
    return done


async def _record(cluster, m: Move) -> None:
    """The instance's record once ``m`` is done (``decide.after``)."""
    await cluster.store.update_instance(m.instance_key,
                                        lambda r: None if r is None else decide.after(r, m))
