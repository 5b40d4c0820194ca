"""The cluster member as the daemon runs it: the store, membership,
leadership, task runner and record sync of one node, started and stopped
together. ``node.cluster`` is this object on a node with a ``cluster:``
section, None on one without.

What commands need without waiting on etcd is kept here too: the instance
records as last read (``where``), refreshed every second, so that a command
about an instance of another node is refused with that node's name at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Coroutine

from osctl.protocol import BUSY, CONFLICT, OsctlError

from ..config import ClusterConfig
from ..model.cluster import InstanceRecord
from . import decide
from .errors import EtcdError, EtcdUnavailable
from .etcd import Etcd
from .leader import Leader
from .membership import Membership
from .store import ClusterStore, Conflict, Excluded
from .sync import RecordSync, node_record
from .tasks import TaskRunner

if TYPE_CHECKING:
    from ..node import Node

log = logging.getLogger(__name__)

REFRESH = 1.0


class ClusterAgent:
    def __init__(self, node: Node, config: ClusterConfig):
        self.config = config
        self.name = config.node
        self.store = ClusterStore(Etcd(config.endpoints))
        self.membership = Membership(self.store, config, lambda: node_record(node))
        self.leader = Leader(self.store, self.membership, self.name)
        self.tasks = TaskRunner(self.store, self.name, node)
        self.sync = RecordSync(self.store, node)
        self.records: dict[str, InstanceRecord] = {}  # as last read
        # Set once the records were read: until then nothing is started at
        # start-up (an instance may have been recovered elsewhere meanwhile).
        self.loaded = asyncio.Event()
        self._jobs: list[asyncio.Task] = []

    def where(self, kind: str, id: str) -> str | None:
        """The node another than this one that instance ``kind/id`` lives on,
        as last read; None if it is not known to live elsewhere."""
        rec = self.records.get(f"{kind}/{id}")
        return rec.node if rec is not None and rec.node != self.name else None

    async def claim(self, ikey: str) -> str | None:
        """Claim instance ``ikey``'s record for this node (``decide.claim``,
        by compare-and-swap) before starting an HA instance that a recovery
        may have been decided for while this node was away: the node its
        record names afterwards, this one if the claim won (None: it has no
        record). A claim is written only while the node's key exists (in
        the compare-and-swap's transaction) and a recovery's take-over only
        while it does not, so they exclude each other whatever the leader
        read: Excluded (at once, without asking etcd when this node is not
        a member now) when the key is gone. The records as last read are
        updated with it (``Node.check_home`` judges on them)."""
        if not self.membership.joined.is_set():
            raise Excluded(f"{ikey} not claimed: node {self.name} is not a cluster member now")
        now = time.time()
        rec = await self.store.update_instance(ikey, lambda r: decide.claim(r, self.name, now),
                                               member=self.name)
        if rec is None:
            return None
        self.records = {**self.records, ikey: rec}
        return rec.node

    async def claim_to_start(self, kind: str, id: str, noun: str) -> None:
        """Before instance ``kind/id`` is started here (by hand, by a task,
        at start-up): if its record is HA and names this node, a recovery
        may have been decided for it while this node was away, so it is
        claimed first (``claim``), and refused (CONFLICT) while this node is
        not a member: its standby may be starting it meanwhile."""
        rec = self.records.get(f"{kind}/{id}")
        if rec is None or not rec.ha or rec.node != self.name:
            return
        if not self.membership.alive:
            raise OsctlError(CONFLICT, f"{noun} {id} is HA and node {self.name} is not a cluster "
                                       f"member now (etcd out of reach?): it may be recovered on "
                                       f"its standby {rec.standby} meanwhile, so it is not started "
                                       "here; start it once the node is back")
        try:
            await self.claim(rec.key)
        except Conflict as e:
            raise OsctlError(CONFLICT, f"{noun} {id} not started: {e}") from None
        except (EtcdUnavailable, EtcdError) as e:
            raise OsctlError(BUSY, f"{noun} {id} not started: its record not claimed (the "
                                   f"cluster's etcd: {e})") from None

    async def _refresh(self) -> None:
        while True:
            try:
                self.records = await self.store.instances()
                self.loaded.set()
            except (EtcdUnavailable, EtcdError) as e:
                log.debug("cluster: records: %s", e)
            await asyncio.sleep(REFRESH)

    def start(self) -> None:
        for job in (self.membership.run(), self.leader.run(), self.tasks.run(),
                    self.sync.run(), self._refresh()):
            self._jobs.append(asyncio.create_task(job))
        log.info("cluster: node %s, etcd at %s", self.name, ", ".join(self.config.endpoints))

    def run(self, job: Coroutine[Any, Any, None]) -> None:
        """Run ``job`` while the node is a member (cancelled at close):
        what the commands layer adds (commands/cluster_ha.py: replicas)."""
        self._jobs.append(asyncio.create_task(job))

    async def close(self) -> None:
        """Stop taking part: leadership is resigned (another node leads at
        once). The lease is left to expire rather than revoked: the node's
        containers and VMs keep running while the daemon is away, as on a
        node without a cluster."""
        await self.leader.resign()
        for job in self._jobs:
            job.cancel()
        await asyncio.gather(*self._jobs, return_exceptions=True)
