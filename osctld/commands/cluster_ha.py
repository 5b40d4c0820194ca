"""What a cluster node does for maintenance and high availability: move an
instance to another node, fence itself, keep replicas, recover a dead
node's instances (issue 15; the decisions are ``cluster/decide.py``'s, the
etcd side ``cluster/``'s).

Moving: a container by ``ct send`` (its replica dropped first: a send log
holds one transfer), a VM by ``vm migrate`` (live while it runs).

Fencing (Proxmox's self-fencing, with a lease instead of a watchdog): a node
that cannot refresh its lease kills its HA instances at once, without
waiting for their locks (a replication pass may hold one for long), so that
they are down before the leader may start them elsewhere: the lease's TTL
plus the fencing margin after the last good refresh.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Awaitable, Callable, Iterable

from osctl.protocol import BUSY, CONFLICT, INVALID, NOT_FOUND, UNSUPPORTED, OsctlError

from ..cluster import decide, tasks
from ..cluster.errors import EtcdError, EtcdUnavailable
from ..cluster.decide import Move
from ..cluster.tasks import Progress, task
from ..model.cluster import EVACUATE, KINDS, ClusterView, InstanceRecord
from . import Context, command
from .cluster import NOUN, via_etcd, agent
from .ct_replica import drop, recover, replicate
from .ct_send import STOP_TIMEOUT, send
from .instance import lifecycle
from .vm_migrate import migrate

if TYPE_CHECKING:
    from ..node import Node

log = logging.getLogger(__name__)


async def move(ctx: Context, kind: str, id: str, dest: str) -> dict:
    """Move instance ``kind``/``id`` to the node at ``dest``: running, it
    runs there afterwards (a VM live), stopped it stays stopped."""
    if kind == "ct":
        await drop(ctx, id)
        return await send(ctx, id, dest)
    return await migrate(ctx, id, dest)


async def fence(node, instances: Iterable[tuple[str, str]], deadline: float) -> list[str]:
    """Kill the running instances named (``(kind, id)``) at once, all
    together, by ``deadline`` (time.monotonic()); returns what is still not
    stopped then (logged as an error: the leader may start it elsewhere)."""
    todo = []
    for kind, id in instances:
        try:
            pstate, inst = node.registry.instance(kind, id)
        except OsctlError:
            continue
        if inst.running:
            todo.append(inst)

    async def kill(inst) -> None:
        driver = node.driver(inst.kind)
        try:
            driver.keep_stopped(node.registry.pools[inst.pool], inst)
            await driver.stop(inst, 0, kill=True)
        except Exception as e:
            log.error("fencing: %s %s not killed: %s", inst.kind, inst.id, e)

    if not todo:
        return []
    log.warning("fencing: killing %s", ", ".join(f"{i.kind}/{i.id}" for i in todo))
    jobs = [asyncio.ensure_future(kill(i)) for i in todo]
    await asyncio.wait(jobs, timeout=max(0.0, deadline - time.monotonic()))
    left = [f"{i.kind}/{i.id}" for i in todo if i.running]
    if left:
        log.error("fencing: still running at the deadline: %s", ", ".join(left))
    return left


@dataclass(frozen=True)
class Outcome:
    """How one move of an evacuation or restore went."""

    key: str
    target: str | None
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
    outcomes = [Outcome(m.instance_key, None, False, f"{m.instance_key} cannot move: {m.reason}; "
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
                o = Outcome(m.instance_key, m.target, False,
                            f"{m.instance_key}: {m.action} failed: {message}")
            else:
                o = Outcome(m.instance_key, m.target, True,
                            f"{m.instance_key}: {done} ({time.monotonic() - began:.1f} s)")
            say(o.message)
            return o

    # Live moves first, before the others: a running VM keeps its
    # interconnect /30, which a container arriving at the same node first
    # could be given.
    live = [m for m in todo if m.action == "live-migrate"]
    outcomes += await asyncio.gather(*(run(m) for m in live))
    return outcomes + list(await asyncio.gather(*(run(m) for m in todo if m not in live)))


# --- the tasks: what a node does when the leader asks ----------------------------

def _split(ikey: str) -> tuple[str, str]:
    kind, _, id = ikey.partition("/")
    return kind, id


def _ctx(node: Node, what: str, progress: Progress) -> Context:
    return Context(node=node, op=f"task:{what}",
                   progress=lambda d: progress(str(d.get("message") or d)))


@task("move")
async def move_task(node: Node, args: dict, progress: Progress) -> str:
    """(The instance's node) one step of an evacuation or restore: move the
    instance to the target (at ``address``), stop it here, or start it
    here again; then its record says so (``decide.after``)."""
    cluster = agent(node)
    m = Move(**args["move"])
    kind, id = _split(m.instance_key)
    ctx = _ctx(node, f"move {m.instance_key}", progress)
    if m.action == "stop":
        await lifecycle(ctx, kind, id, "stop", STOP_TIMEOUT)
        done = f"stopped on {m.source}"
    elif m.action == "start":
        await lifecycle(ctx, kind, id, "start")
        done = f"started on {m.source}"
    else:
        _, inst = node.registry.instance(kind, id)
        cold = kind == "vm" and m.action == "migrate" and inst.running
        done = f"on {m.target}"
        if cold:  # a VM's cold move: stopped here, started there
            await lifecycle(ctx, kind, id, "stop", STOP_TIMEOUT)
        try:
            await move(ctx, kind, id, args["address"])
        except OsctlError as e:
            # A running VM keeps its interconnect /30, which the target may
            # have given another instance meanwhile: it moves stopped then.
            if kind != "vm" or not inst.running or e.code != CONFLICT or "interconnect" not in e.message:
                raise
            progress(f"{m.instance_key}: {e.message}: moving it stopped")
            await lifecycle(ctx, kind, id, "stop", STOP_TIMEOUT)
            await move(ctx, kind, id, args["address"])
            cold, done = True, f"on {m.target} (moved stopped: its interconnect was taken there)"
        if cold and m.target is not None:
            await tasks.call(cluster.store, m.target, "instance.start", {"kind": kind, "id": id},
                             by=cluster.name)
    await cluster.store.update_instance(m.instance_key,
                                        lambda r: None if r is None else decide.after(r, m))
    return done


@task("instance.start")
async def start_task(node: Node, args: dict, progress: Progress) -> dict:
    """Start an instance here (a VM that came by a cold move)."""
    return await lifecycle(_ctx(node, "start", progress), args["kind"], args["id"], "start")


@task("ha.recover")
async def recover_task(node: Node, args: dict, progress: Progress) -> dict:
    """(The standby) start a dead node's HA container from the replica
    here. Its record is taken over first, by compare-and-swap, only if it
    still names the dead node: a recovery runs once, and a node that came
    back in between keeps its container."""
    cluster = agent(node)
    step = decide.Recover(**args["recover"])
    kind, id = _split(step.instance_key)
    if kind != "ct":
        raise OsctlError(UNSUPPORTED, f"{step.instance_key}: only containers have replicas")
    rec = await cluster.store.update_instance(
        step.instance_key, lambda r: decide.after(r, step) if r is not None and r.node == step.source else r)
    if rec is None or rec.node != node_name(node):
        raise OsctlError(CONFLICT, f"{step.instance_key} lives on node "
                                   f"{rec.node if rec else '(none)'} now: not recovered")
    out = await recover(_ctx(node, f"recover {step.instance_key}", progress), id)
    log.warning("recovered %s of dead node %s here from a replica %.0f s old (what it wrote since "
                "is lost)%s", step.instance_key, step.source, out["data_age"] or 0,
                "" if out["started"] else f"; it did not start: {out['start_error']}")
    return out


def node_name(node: Node) -> str:
    return agent(node).name


# --- the leader: evacuate, restore, recover ---------------------------------------

@task("maintenance")
async def maintenance_task(node: Node, args: dict, progress: Progress) -> dict:
    """(Leader) node ``name`` into maintenance and emptied (``enable``), or
    online again and what was evacuated brought back."""
    cluster = agent(node)
    if not cluster.leader.is_leader:
        raise OsctlError(BUSY, f"node {cluster.name} is not the leader now: try again")
    name, enable = args["node"], args["enable"] is True
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


async def on_node_lost(node: Node, name: str, since: float) -> None:
    """(Leader) a node's lease expired: once the fencing margin passed (it
    has killed its HA instances by then, or is dead), each of its HA
    containers starts on its standby from the last replica. The node is
    marked fenced afterwards: a leader after us does not look at it again
    (one that took over half way recovers the rest: each recovery takes
    its record over only if it still names the dead node)."""
    cluster = agent(node)
    await asyncio.sleep(max(0.0, since + cluster.config.fence_margin - time.time()))
    store = cluster.store
    view = await store.view()
    if not cluster.leader.is_leader or view.nodes.get(name) is None \
            or view.nodes[name].state != "offline":
        return  # back, or not ours to decide, or done already
    for step in decide.recovery_plan(view, name, time.time()):
        if isinstance(step, decide.Skip):
            log.warning("node %s lost: %s not recovered: %s", name, step.instance_key, step.reason)
            continue
        log.warning("node %s lost: recovering %s on %s from a replica %.0f s old", name,
                    step.instance_key, step.target, step.age)
        try:
            await tasks.call(store, step.target, "ha.recover", {"recover": asdict(step)},
                             by=cluster.name)
        except OsctlError as e:
            log.error("node %s lost: %s not recovered on %s: %s", name, step.instance_key,
                      step.target, e.message)
    await store.set_node_state(name, "fenced")


# --- every member: fencing and replicas -----------------------------------------

@dataclass
class Fenced:
    """What this node killed when it fenced itself, and under which lease."""

    lease: int | None = None
    keys: list[str] = field(default_factory=list)
    # Held while a fencing runs: a lease regained meanwhile starts again what
    # was killed only once the kills are over (else a kill still under way
    # would stop the instance just started again).
    busy: asyncio.Lock = field(default_factory=asyncio.Lock)


async def on_lease_lost(node: Node, fenced: Fenced, deadline: float) -> None:
    """This node's lease could not be refreshed: its HA instances (as the
    records last read say) are killed before ``deadline``, after which the
    leader may start them on their standby. While the lease may still be
    alive (its TTL since the last good refresh) the kills wait for a good
    refresh of it: one refresh that was only slow (a loaded node) is most
    often followed by a good one, and then nothing is killed; the fencing
    margin is the kills' time. A lease etcd said expired is fenced at once."""
    cluster = agent(node)
    membership = cluster.membership
    lease = membership.lease  # None: expired already
    async with fenced.busy:
        kill_at = deadline - cluster.config.fence_margin
        while lease is not None and membership.lost and time.monotonic() < kill_at:
            await asyncio.sleep(0.1)
        if lease is not None and membership.lease == lease and not membership.lost:
            log.warning("cluster: node %s refreshed its lease again in time: nothing fenced",
                        cluster.name)
            return
        view = ClusterView(instances=dict(cluster.records))
        keys = decide.self_fence(view, cluster.name)
        fenced.lease = lease
        fenced.keys = [k for k in keys if _running(node, k)]
        left = await fence(node, [_split(k) for k in keys], deadline)
    log.error("cluster: node %s fenced itself: %s killed%s", cluster.name,
              ", ".join(fenced.keys) or "nothing", f"; NOT stopped: {', '.join(left)}" if left else "")


def _running(node: Node, ikey: str) -> bool:
    try:
        return node.registry.instance(*_split(ikey))[1].running
    except OsctlError:
        return False


async def on_lease_regained(node: Node, fenced: Fenced) -> None:
    """Back in the cluster (also after a restart). Its lease never expired
    (a short blip): nobody started its HA instances elsewhere, so the ones
    it killed start again here. Else the leader recovers them on their
    standby (the records say where they live); a node it marked fenced is
    online again."""
    cluster = agent(node)
    await cluster.membership.joined.wait()
    async with fenced.busy:
        if fenced.keys and fenced.lease is not None and cluster.membership.lease == fenced.lease:
            ctx = Context(node=node, op="cluster:unfence")
            for k in fenced.keys:
                try:
                    await lifecycle(ctx, *_split(k), "start")
                except OsctlError as e:
                    log.error("cluster: %s fenced and not started again: %s", k, e.message)
            log.warning("cluster: node %s kept its lease: %s started again", cluster.name,
                        ", ".join(fenced.keys))
        fenced.keys = []
    states = await cluster.store.node_states()
    if (states.get(cluster.name) or {}).get("state") == "fenced":
        await cluster.store.set_node_state(cluster.name, "online")


async def replicate_here(node: Node) -> None:
    """One replica pass of each HA container this node holds, to its
    standby (a replica at another node is dropped first; one of a container
    no longer HA goes), its record's ``replica_at`` set. A pass that fails
    is logged: the next round tries again."""
    cluster = agent(node)
    view = await cluster.store.view()
    ctx = Context(node=node, op="cluster:replicate")
    for rec in view.on(cluster.name):
        if rec.kind != "ct" or rec.id not in {c.id for c in node.registry.all_cts()}:
            continue
        _, ct = node.registry.ct(rec.id)
        standby = view.nodes.get(rec.standby) if rec.ha and rec.standby else None
        old = ct.send_log if ct.send_log is not None and ct.send_log.replica else None
        try:
            if old is not None and (standby is None or old.peer != standby.address):
                await drop(ctx, rec.id)
            if standby is None or standby.state not in ("online", "maintenance"):
                continue
            out = await replicate(ctx, rec.id, standby.address)
        except OsctlError as e:
            log.warning("replica of %s on %s: %s", rec.key, rec.standby, e.message)
            continue
        taken = out["taken"]
        await cluster.store.update_instance(
            rec.key, lambda r: replace(r, replica_at=taken)
            if r is not None and r.node == cluster.name and r.standby == rec.standby else r)


async def replication(node: Node) -> None:
    """Replica passes every ``cluster.replication_interval`` seconds, until cancelled."""
    every = agent(node).config.replication_interval
    while True:
        began = time.monotonic()
        try:
            await replicate_here(node)
        except (EtcdUnavailable, EtcdError) as e:
            log.debug("cluster: replicas: %s", e)
        except Exception:
            log.exception("cluster: replicas")
        await asyncio.sleep(max(1.0, every - (time.monotonic() - began)))


def attach(node: Node) -> None:
    """Hook this module into the node's cluster member (the daemon calls
    this once it made ``node.cluster``): fencing, recovery, replicas."""
    cluster = agent(node)
    fenced = Fenced()
    cluster.membership.on_lease_lost.append(lambda deadline: on_lease_lost(node, fenced, deadline))
    cluster.membership.on_lease_regained.append(lambda: on_lease_regained(node, fenced))
    cluster.leader.on_node_lost.append(lambda name, since: on_node_lost(node, name, since))
    cluster.run(replication(node))
    cluster.run(on_lease_regained(node, fenced))  # the first join, after a restart


# --- the verbs ---------------------------------------------------------------------

@command("cluster.node.maintenance")
async def maintenance(ctx: Context, node: str, enable: bool) -> dict:
    """Node ``node`` into maintenance (``enable``: it receives nothing new,
    and the leader moves its instances away, a few at a time, each line of
    progress said), or out of it (online; what left it comes back)."""
    cluster = agent(ctx.node)
    leader = await via_etcd(cluster.store.leader())
    if leader is None:
        raise OsctlError(BUSY, "the cluster has no leader at the moment: try again in a few seconds")
    return await via_etcd(tasks.call(
        cluster.store, leader, "maintenance", {"node": node, "enable": enable}, by=cluster.name,
        progress=lambda text: ctx.progress({"step": "maintenance", "message": text})))


@command("cluster.instance.set")
async def instance_set(ctx: Context, kind: str, id: str, ha: bool | None = None,
                       standby: str | None = None, evacuate: str | None = None) -> dict:
    """An instance's cluster settings: ``ha`` (containers: replicated to
    ``standby`` every replication interval, started there if its node
    dies; off: its replica goes) and ``evacuate`` (what maintenance does
    with it: migrate, live-migrate or stop)."""
    cluster = agent(ctx.node)
    if kind not in KINDS:
        raise OsctlError(INVALID, f"kind must be one of {', '.join(KINDS)}")
    if evacuate is not None and evacuate not in EVACUATE:
        raise OsctlError(INVALID, f"evacuate must be one of {', '.join(EVACUATE)}")
    if ha and kind != "ct":
        raise OsctlError(UNSUPPORTED, "only containers are replicated (HA): a VM is moved live by "
                                      "maintenance, not restarted elsewhere")
    if ha and standby is None:
        raise OsctlError(INVALID, "ha needs a standby node (--standby NODE)")
    if standby is not None and not ha:
        raise OsctlError(INVALID, "a standby node goes with ha on")
    view = await via_etcd(cluster.store.view())
    ikey = f"{kind}/{id}"
    rec = view.instances.get(ikey)
    if rec is None:
        raise OsctlError(NOT_FOUND, f"no {NOUN[kind]} {id} in the cluster")
    if standby is not None and standby not in view.nodes:
        raise OsctlError(NOT_FOUND, f"no node {standby} in the cluster")
    if standby is not None and standby == rec.node:
        raise OsctlError(INVALID, f"{NOUN[kind]} {id} lives on {standby}: its standby is another node")

    def fn(r: InstanceRecord | None) -> InstanceRecord:
        if r is None:
            raise OsctlError(NOT_FOUND, f"no {NOUN[kind]} {id} in the cluster")
        if standby is not None and r.node == standby:
            raise OsctlError(INVALID, f"{NOUN[kind]} {id} lives on {standby} now")
        changes: dict = {} if evacuate is None else {"evacuate": evacuate}
        if ha is not None:
            changes.update(ha=ha, standby=standby if ha else None,
                           replica_at=r.replica_at if ha and r.standby == standby else None)
        return replace(r, **changes)
    new = await via_etcd(cluster.store.update_instance(ikey, fn))
    assert new is not None
    return {**asdict(new), "size": asdict(new.size)}
