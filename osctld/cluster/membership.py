"""This node's membership: its NodeRecord under a lease of ``lease_ttl``
seconds, refreshed every third of it.

A refresh that fails (etcd unreachable or too slow, or the lease expired:
-1) means the others may soon count this node dead and act on its
instances. The first such failure calls the ``on_lease_lost`` hooks once
with the deadline (on ``time.monotonic()``'s clock) by which the node must
have fenced itself: the last good refresh plus the TTL plus
``fence_margin``, the time after which the leader may restart its HA
instances elsewhere. Membership keeps trying: a later refresh of the same
lease, or (once it has expired) a new lease with the key put again, calls
the ``on_lease_regained`` hooks.

A lease given up here (its TTL passed without a good refresh) is refreshed
once more when etcd answers again, before a new one is taken: etcd extends
every lease when it elects a new leader of its own, so after a stall of
etcd itself (the member that led it gone: every node's refreshes fail for
a few seconds) the lease is most often still alive. The node is then a
member as before: its key never vanished, so nobody recovered its HA
instances, and those it killed start again here (same lease). Under a new
lease they are claimed back first (fencing.on_lease_regained): a recovery
may have been decided meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

from ..config import ClusterConfig
from ..model.cluster import NodeRecord
from .errors import EtcdError, EtcdUnavailable
from .store import ClusterStore

log = logging.getLogger(__name__)

LeaseLost = Callable[[float], Awaitable[None]]


_running: set[asyncio.Task] = set()


def spawn(coro: Awaitable[None], what: str) -> None:
    """Run a hook as a task of its own (it must not hold up the refreshes or
    the leader's loop), its failure logged."""
    task = asyncio.ensure_future(coro)
    _running.add(task)

    def done(t: asyncio.Task) -> None:
        _running.discard(t)
        if not t.cancelled() and t.exception() is not None:
            log.error("cluster: %s hook failed", what, exc_info=t.exception())

    task.add_done_callback(done)


class Membership:
    def __init__(self, store: ClusterStore, config: ClusterConfig,
                 record: Callable[[], NodeRecord]):
        self.store = store
        self.config = config
        self.record = record  # this node's record as it is now (capacity read anew)
        self.lease: int | None = None  # None: not a member now
        self.given_up: int | None = None  # the lease dropped here, maybe alive in etcd
        self.last_ok = 0.0  # monotonic time of the last good refresh
        self.lost = False  # on_lease_lost said, on_lease_regained not yet
        self.on_lease_lost: list[LeaseLost] = []
        self.on_lease_regained: list[Callable[[], Awaitable[None]]] = []
        self.joined = asyncio.Event()  # set while a member

    @property
    def alive(self) -> bool:
        return self.lease is not None

    async def join(self) -> None:
        """A new lease with this node's key on it, and its node-state made
        online unless it has one (maintenance and fenced outlive a restart)."""
        etcd = self.store.etcd
        lease = await etcd.call(etcd.grant, self.config.lease_ttl)
        await self.store.put_node(self.record(), lease)
        await self.store.set_node_state(self.config.node, "online", only_if_absent=True)
        self.lease, self.last_ok = lease, time.monotonic()
        self.joined.set()
        log.info("cluster: joined as node %s (lease %x, TTL %d s)", self.config.node, lease,
                 self.config.lease_ttl)

    async def run(self) -> None:
        """Join, then keep the lease until cancelled. A refresh waits half
        the TTL at most: a node cut off from etcd (where a connection hangs
        rather than fails) learns it while there is time left to fence."""
        every = self.config.lease_ttl / 3
        etcd = self.store.etcd
        while True:
            try:
                if self.lease is None:
                    if not await self._resume():
                        await self.join()
                    self._back()
                else:
                    ttl = await asyncio.wait_for(etcd.call(etcd.refresh, self.lease),
                                                 self.config.lease_ttl / 2)
                    if ttl <= 0:
                        self.lease = None  # expired: the key went with it; join anew
                        self.joined.clear()
                        raise EtcdError("the lease expired")
                    self.last_ok = time.monotonic()
                    self._back()
            except (EtcdUnavailable, EtcdError, asyncio.TimeoutError) as e:
                if self.last_ok and not self.lost:
                    self._lost(str(e) or "etcd did not answer in time")
                if self.lease is not None and time.monotonic() - self.last_ok > self.config.lease_ttl:
                    # Gone by now as far as this node can tell: nothing may lean on it.
                    self.given_up, self.lease = self.lease, None
                    self.joined.clear()
                log.debug("cluster: membership: %s", e)
            await asyncio.sleep(every)

    async def _resume(self) -> bool:
        """The lease given up here taken again if etcd still keeps it (a
        refresh answers with its TTL); False if there is none, or etcd says
        it expired. etcd out of reach raises: asked again next round."""
        lease = self.given_up
        if lease is None:
            return False
        etcd = self.store.etcd
        ttl = await asyncio.wait_for(etcd.call(etcd.refresh, lease), self.config.lease_ttl / 2)
        self.given_up = None
        if ttl <= 0:
            return False
        self.lease, self.last_ok = lease, time.monotonic()
        self.joined.set()
        log.warning("cluster: node %s kept its lease %x: etcd still had it", self.config.node, lease)
        return True

    def _lost(self, why: str) -> None:
        deadline = self.last_ok + self.config.lease_ttl + self.config.fence_margin
        log.error("cluster: node %s cannot refresh its lease (%s); fencing deadline in %.1f s",
                  self.config.node, why, deadline - time.monotonic())
        self.lost = True
        for hook in self.on_lease_lost:
            spawn(hook(deadline), "on_lease_lost")

    def _back(self) -> None:
        if self.lost:
            self.lost = False
            log.warning("cluster: node %s is a member again", self.config.node)
            for hook in self.on_lease_regained:
                spawn(hook(), "on_lease_regained")

    async def update(self) -> None:
        """Write this node's record again (its capacity changed)."""
        if self.lease is not None:
            await self.store.put_node(self.record(), self.lease)
