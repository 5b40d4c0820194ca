"""CPU use of each running server in percent of one core, over the last
sampling interval, so that ``ct ls``/``ct show`` have a recent figure
without waiting for one (``ct top`` samples twice, waiting between).

Kept in memory only: after a daemon restart the first figure comes one
interval later. A server's cgroup made anew (a restart) starts counting
from zero, and is not compared with the old one.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Callable

from .runtime.cgroup.tree import CgroupTree

INTERVAL = 10.0  # seconds between samples


@dataclass(frozen=True)
class Sample:
    at: float  # time.monotonic()
    cgroup: int | None  # the cgroup's identity: a new one counts from zero
    cpu: float  # CPU seconds


@dataclass
class CpuMeter:
    interval: float = INTERVAL
    _last: dict[str, Sample] = field(default_factory=dict)
    _percent: dict[str, float] = field(default_factory=dict)

    def percent(self, rel: str) -> float | None:
        """CPU % of cgroup ``rel`` over the last interval; None before two samples."""
        return self._percent.get(rel)

    def sample(self, now: dict[str, Sample]) -> None:
        """Take a reading of every running server's cgroup (by its path)."""
        percent = {}
        for rel, s in now.items():
            before = self._last.get(rel)
            if (before is not None and before.cgroup == s.cgroup and s.at > before.at
                    and s.cpu >= before.cpu):
                percent[rel] = round(100 * (s.cpu - before.cpu) / (s.at - before.at), 1)
        self._last, self._percent = now, percent

    async def run(self, tree: CgroupTree, running: Callable[[], list[str]]) -> None:
        """Sample the cgroups ``running()`` names, every ``interval`` seconds."""
        while True:
            rels = running()
            self.sample(await asyncio.to_thread(read, tree, rels))
            await asyncio.sleep(self.interval)


def read(tree: CgroupTree, rels: list[str]) -> dict[str, Sample]:
    out = {}
    for rel in rels:
        cpu = tree.usage(rel)["cpu_seconds"]
        if cpu is not None:
            out[rel] = Sample(time.monotonic(), tree.ident(rel), cpu)
    return out
