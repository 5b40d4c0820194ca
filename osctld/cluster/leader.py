"""Leadership: etcd's election service picks one node, and that node alone
runs the leader's loop (placement, and D's evacuation and recovery).

Every node campaigns in election ``osctld-leader`` on its membership lease,
with its name as the value; a campaign is a request that waits until it is
elected, made again every few seconds (a request that times out withdraws
the candidacy, so nothing is left behind). The leader's key lives on its
lease: a leader that dies or loses its lease stops being leader within the
TTL, and the next candidate is elected.

While leader, each second the loop reads which nodes have a key: one whose
key vanished (its lease expired) is passed once to the ``on_node_lost``
hooks with the time it was first seen gone, until it is back. A new leader
starts from every node the cluster knows (node-state), so a node that died
with the old leader, or before, is reported to it too: the hooks must be
idempotent (the instance records say what was done already).
``on_elected`` hooks run when this node becomes leader: what must run only
on the leader (D's evacuations, recoveries) checks ``is_leader``.
Hooks run as tasks of their own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

from .errors import EtcdError, EtcdUnavailable
from .membership import Membership, spawn
from .store import ELECTION, ClusterStore, key

log = logging.getLogger(__name__)

NodeLost = Callable[[str, float], Awaitable[None]]
# Seconds one campaign request waits before it is made again.
CAMPAIGN_WAIT = 5.0
TICK = 1.0


class Leader:
    def __init__(self, store: ClusterStore, membership: Membership, name: str):
        self.store = store
        self.membership = membership
        self.name = name
        self.leader_key: dict | None = None  # ours, while we lead
        self.on_node_lost: list[NodeLost] = []
        self.on_elected: list[Callable[[], Awaitable[None]]] = []
        self._seen: set[str] = set()  # nodes with a key at the last look
        self._lost: dict[str, float] = {}  # reported gone, since when

    @property
    def is_leader(self) -> bool:
        return self.leader_key is not None

    async def run(self) -> None:
        """Campaign while a member; lead while elected. Until cancelled."""
        etcd = self.store.etcd
        while True:
            await self.membership.joined.wait()
            lease = self.membership.lease
            if lease is None:
                continue
            try:
                won = await etcd.call(etcd.campaign, ELECTION, lease, self.name, CAMPAIGN_WAIT)
            except (EtcdUnavailable, EtcdError) as e:
                log.debug("cluster: campaign: %s", e)
                await asyncio.sleep(TICK)
                continue
            if won is None or self.membership.lease != lease:
                continue
            self.leader_key = won
            log.info("cluster: node %s is the leader", self.name)
            try:
                await self._lead(lease)
            finally:
                self.leader_key = None
                log.info("cluster: node %s is no longer the leader", self.name)

    async def _lead(self, lease: int) -> None:
        self._seen = set((await self.store.view()).nodes)  # whom we may find gone
        self._lost = {}
        for hook in self.on_elected:
            spawn(hook(), "on_elected")
        while self.membership.lease == lease:
            try:
                if await self.store.leader() != self.name:
                    return
                await self._look()
            except (EtcdUnavailable, EtcdError) as e:
                log.warning("cluster: leader loop: %s", e)
            await asyncio.sleep(TICK)

    async def _look(self) -> None:
        etcd = self.store.etcd
        present = {kv.key.rsplit("/", 1)[1]
                   for kv in await etcd.call(etcd.get_prefix, key("nodes", ""))}
        now = time.time()
        for name in sorted((self._seen | set(self._lost)) - present):
            if name in self._lost or name == self.name:  # our own key: membership's business
                continue
            self._lost[name] = now
            log.warning("cluster: node %s lost its lease", name)
            for hook in self.on_node_lost:
                spawn(hook(name, now), "on_node_lost")
        for name in present:
            self._lost.pop(name, None)
        self._seen = present

    def lost_since(self, name: str) -> float | None:
        """Since when node ``name``'s key is gone as this leader saw it (None:
        present at the last look, or not this leader's to say)."""
        return self._lost.get(name)

    async def resign(self) -> None:
        """Give leadership up (the daemon stops): the next is elected at once."""
        if self.leader_key is not None:
            etcd = self.store.etcd
            try:
                await etcd.call(etcd.resign, self.leader_key)
            except (EtcdUnavailable, EtcdError) as e:
                log.warning("cluster: resign: %s", e)
