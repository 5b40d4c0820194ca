"""Consumption records: what each instance and resource group used, per month.

What is recorded is what the seeds' platform bills: traffic (bytes and
packets in and out of each netif), running time of each container and VM
(seconds, with the cores and memory it held, and the CPU seconds it used)
and disk allocated (bytes held for how long). Each record is for one
calendar month in its group's time zone (``zone_of``).

A sampler reads the counters every ``consumption.interval`` seconds and
appends one line per pool to that pool's journal,
``<pool>/log/consumption/<YYYY-MM>.jsonl`` (named for the UTC month of the
sample), written with O_APPEND and fsynced. A line holds the sample's
records (what was used since the last line, split between months where the
interval crosses a boundary) and the absolute readings the next sample
counts from, so a line is the checkpoint of its own deltas: after a kill -9
the daemon goes on from the last whole line, and nothing is counted twice
(a line cut short is skipped, and its deltas are counted again from the
line before). A file is compacted (``compact``: replaced by one line of
its records added up and its last readings) when it passes ``COMPACT_AT``
and once its month is over, so it is append-only between compactions.
What is lost is at most what happened after the last sample
on a source that is gone by the next one (a container's veth ends with its
container). Counters that start again from zero are told apart by an
identity in their reading: a veth's ifindex, a cgroup's inode, the init's
or QEMU's PID and start time, the boot. The journal lives in the pool, so
it moves with a pool export and import, and records of deleted instances
stay.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator
from zoneinfo import ZoneInfo

from osctl.protocol import OsctlError

from .config import ConsumptionConfig
from .locks import Locks, pool_key
from .model.container import Container
from .model.group import DEFAULTS, ancestors, group_timezone
from .model.pool import Pool
from .model.vm import VM
from .net.network import Network
from .runtime.cgroup.tree import CgroupTree
from .state import PoolState, Registry
from .store import atomic_write, fsync_dir, private_dirs

log = logging.getLogger(__name__)

TYPES = ("traffic", "ct", "vm", "disk")
TRAFFIC = ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets")
AMOUNTS = TRAFFIC + ("seconds", "cpu_seconds")  # what a record adds up; the rest tell it apart
# A journal file larger than this is compacted at the next sample: a month
# of lines is never read whole into memory, and a listing stays quick.
COMPACT_AT = 4 << 20
CLK_TCK = os.sysconf("SC_CLK_TCK")


def zone_of(pstate: PoolState | None, group: str) -> datetime.tzinfo:
    """The time zone a group's months are counted in: its effective
    ``timezone`` setting (no pool: the groups' default)."""
    if pstate is None:
        return ZoneInfo(DEFAULTS["timezone"])
    return group_timezone(pstate.groups, group)


# --- periods ---------------------------------------------------------------------

def period_of(t: float, zone: datetime.tzinfo) -> str:
    """The month ``t`` is in, in ``zone``: ``2026-11``."""
    d = datetime.datetime.fromtimestamp(t, zone)
    return f"{d.year:04d}-{d.month:02d}"


def _next_month(t: float, zone: datetime.tzinfo) -> float:
    d = datetime.datetime.fromtimestamp(t, zone)
    year, month = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
    return datetime.datetime(year, month, 1, tzinfo=zone).timestamp()


def split(start: float, end: float, zone: datetime.tzinfo) -> list[tuple[str, float]]:
    """The months of ``zone`` that the interval from ``start`` to ``end``
    falls in, each with its share of it (the shares add up to 1); an
    interval of no length is all in the month of ``end``."""
    if end <= start:
        return [(period_of(end, zone), 1.0)]
    out, t = [], start
    while t < end:
        b = min(end, _next_month(t, zone))
        out.append((period_of(t, zone), (b - t) / (end - start)))
        t = b
    return out


def month_before(period: str) -> str:
    year, month = map(int, period.split("-"))
    return f"{year - 1:04d}-12" if month == 1 else f"{year:04d}-{month - 1:02d}"


def month_after(period: str) -> str:
    year, month = map(int, period.split("-"))
    return f"{year + 1:04d}-01" if month == 12 else f"{year:04d}-{month + 1:02d}"


class Clock:
    """The records' clock: the system's, or for tests one that showed
    ``start`` when the daemon started and runs on at the real pace."""

    def __init__(self, start: str | None = None):
        self.offset = (datetime.datetime.fromisoformat(start).timestamp() - time.time()
                       if start else 0.0)

    def now(self) -> float:
        return time.time() + self.offset


# --- the journal -----------------------------------------------------------------

def journal_dir(pool: Pool) -> Path:
    return pool.log_dir / "consumption"


def append(directory: Path, t: float, doc: dict) -> None:
    """One line in the journal file of ``t``'s UTC month, on disk before this
    returns. A line a kill cut short is ended first, so that this one is
    whole on a line of its own."""
    private_dirs(directory)
    path = directory / f"{period_of(t, datetime.timezone.utc)}.jsonl"
    new = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            os.write(fd, b"\n")
        os.write(fd, (json.dumps(doc, separators=(",", ":")) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    if new:
        fsync_dir(directory)


def _parsed(raw: bytes) -> dict | None:
    try:
        doc = json.loads(raw)
    except ValueError:
        return None  # cut short by a crash
    return doc if isinstance(doc, dict) and isinstance(doc.get("readings"), dict) else None


def _last_line(path: Path) -> dict | None:
    """The last whole line of a journal file, read from its end."""
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        chunk = 1 << 16
        while True:
            start = max(0, end - chunk)
            f.seek(start)
            lines = f.read(end - start).split(b"\n")
            for raw in reversed(lines[1:] if start else lines):
                doc = _parsed(raw)
                if doc is not None:
                    return doc
            if start == 0:
                return None
            chunk *= 4


def last_line(directory: Path) -> dict | None:
    """The newest whole line of a pool's journal."""
    for path in sorted(directory.glob("*.jsonl"), reverse=True):
        doc = _last_line(path)
        if doc is not None:
            return doc
    return None


def _docs(raw_lines: Iterable[bytes]) -> Iterator[dict]:
    for raw in raw_lines:
        doc = _parsed(raw)
        if doc is not None:
            yield doc


def lines(directory: Path, months: list[str]) -> Iterator[dict]:
    for month in months:
        try:
            with open(directory / f"{month}.jsonl", "rb") as f:
                yield from _docs(f)
        except FileNotFoundError:
            continue


def compact(path: Path) -> bool:
    """Replace a journal file by one line: its records added up, and its
    last readings (so the line is a checkpoint as its last one was).
    Atomic: a kill leaves the file as it was or compacted. Whether it changed."""
    with open(path, "rb") as f:
        docs = list(_docs(f))
    if len(docs) < 2:
        return False
    sums: dict[str, dict] = {}
    for doc in docs:
        for row in doc.get("rows") or []:
            ident = {k: v for k, v in row.items() if k not in AMOUNTS}
            total = sums.setdefault(json.dumps(ident, sort_keys=True), ident)
            for k in AMOUNTS:
                if k in row:
                    total[k] = total.get(k, 0) + row[k]
    last = docs[-1]
    atomic_write(path, (json.dumps({**last, "rows": list(sums.values())},
                                   separators=(",", ":")) + "\n").encode())
    return True


# --- reading the node ------------------------------------------------------------

def boottime() -> float:
    """Seconds since boot, sleep included: durations that outlive the daemon."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def started(pid: int) -> float | None:
    """When process ``pid`` started, in seconds since boot (``boottime``)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19]) / CLK_TCK


@dataclass
class Checkpoint:
    """A pool's last line: when (records' clock, boot time) and the readings."""

    t: float
    up: float
    boot: str
    readings: dict[str, Any]

    @classmethod
    def of(cls, doc: dict) -> "Checkpoint":
        return cls(float(doc["t"]), float(doc["up"]), str(doc["boot"]), doc["readings"])


def _add(rows: list[dict], key: dict, values: dict[str, float], start: float, end: float,
         zone: datetime.tzinfo) -> None:
    """Records of ``values`` used from ``start`` to ``end``, one per month
    they fall in; counts are shared out whole, the last month taking the rest."""
    parts = split(start, end, zone)
    given: dict[str, float] = dict.fromkeys(values, 0)
    for i, (period, share) in enumerate(parts):
        row = {**key, "period": period}
        for k, v in values.items():
            part = v - given[k] if i == len(parts) - 1 else (
                round(v * share) if isinstance(v, int) else v * share)
            given[k] += part
            row[k] = part
        rows.append(row)


class Consumption:
    """The sampler and what it has written last, per pool."""

    def __init__(self, cfg: ConsumptionConfig, registry: Registry, locks: Locks, tree: CgroupTree,
                 net: Network):
        self.cfg = cfg
        self.registry = registry
        self.locks = locks
        self.tree = tree
        self.net = net
        self.clock = Clock(cfg.clock_start)
        self.boot = boot_id()
        # Pool name -> (the pool's state object, its last line): a pool
        # imported again is read from its journal again.
        self._last: dict[str, tuple[PoolState, Checkpoint | None]] = {}
        self._compacted: set[Path] = set()  # closed months' files, compacted

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.interval)
            try:
                await self.sample()
            except Exception:
                log.exception("consumption sample failed")

    def _checkpoint(self, pstate: PoolState) -> Checkpoint | None:
        held = self._last.get(pstate.pool.name)
        if held is not None and held[0] is pstate:
            return held[1]
        doc = last_line(journal_dir(pstate.pool))
        try:
            return Checkpoint.of(doc) if doc else None
        except (KeyError, TypeError, ValueError):
            return None

    async def sample(self) -> None:
        """Read every instance's counters, append each pool's records."""
        links = await self.net.all_counters()
        t, up = self.clock.now(), boottime()
        for name in list(self.registry.pools):
            try:  # shared, as a command within the pool: an export waits for it
                async with self.locks.hold(pool_key(name), "consumption", shared=True):
                    pstate = self.registry.pools.get(name)
                    if pstate is not None:  # not exported meanwhile
                        await self._pool(pstate, links, t, up)
            except OsctlError as e:  # busy: this pool's next sample counts it
                log.warning("consumption of pool %s not sampled: %s", name, e.message)

    async def _pool(self, pstate: PoolState, links: dict, t: float, up: float) -> None:
        prev = self._checkpoint(pstate)
        rows: list[dict] = []
        readings: dict[str, Any] = {}
        for inst in pstate.all_instances():
            self._instance(pstate, inst, links, t, up, prev, rows, readings)
        if not readings and prev is None:
            return  # a pool that never had an instance
        doc = {"t": t, "up": up, "boot": self.boot, "rows": rows, "readings": readings}
        try:
            await asyncio.to_thread(append, journal_dir(pstate.pool), t, doc)
        except OSError as e:  # counted at the next sample, from the last line
            log.error("cannot write consumption of pool %s: %s", pstate.pool.name, e)
            return
        self._last[pstate.pool.name] = (pstate, Checkpoint.of(doc))
        await asyncio.to_thread(self._compact, journal_dir(pstate.pool), t)

    def _compact(self, directory: Path, t: float) -> None:
        """Compact the files of months before ``t``'s, once, and this
        month's whenever it has grown past ``COMPACT_AT``. Only the sampler
        appends, and not meanwhile; a compacted file's line is a checkpoint
        as good as the last line it replaces."""
        current = f"{period_of(t, datetime.timezone.utc)}.jsonl"
        for path in sorted(directory.glob("*.jsonl")):
            if path.name < current and path not in self._compacted:
                compact(path)
                self._compacted.add(path)
            elif path.name == current and path.stat().st_size > COMPACT_AT:
                compact(path)

    def _instance(self, pstate: PoolState, inst: Container | VM, links: dict, t: float, up: float,
                  prev: Checkpoint | None, rows: list[dict], readings: dict) -> None:
        kind = "vm" if isinstance(inst, VM) else "ct"
        zone = zone_of(pstate, inst.group)
        key = f"{kind}:{inst.id}"
        base = {"object": kind, "id": inst.id, "group": inst.group}
        # What counts from the last line: anything of this boot; disk held, of any.
        old = prev.readings if prev is not None and prev.boot == self.boot else {}
        if inst.disk:
            readings[f"{key}:disk"] = inst.disk
            # (A clock set back counts nothing, rather than less than nothing.)
            since = min(t, prev.t) if prev is not None and f"{key}:disk" in prev.readings else t
            _add(rows, {**base, "type": "disk", "bytes": inst.disk},
                 {"seconds": t - since}, since, t, zone)
        pid = inst.pid if isinstance(inst, VM) else inst.init_pid
        begun = started(pid) if inst.running and pid else None
        if begun is None:
            return
        run, rel = f"{pid}@{begun}", (self.tree.vm if kind == "vm" else self.tree.ct)(
            pstate.pool.name, inst.group, inst.id)
        last = old.get(key) or {}
        since = prev.up if prev is not None and last.get("run") == run else begun
        seconds = max(0.0, up - max(since, begun))
        cgroup, cpu = self.tree.ident(rel), self.tree.usage(rel)["cpu_seconds"] or 0.0
        same = last.get("cg") == cgroup and cgroup is not None and cpu >= last.get("cpu", 0.0)
        readings[key] = {"run": run, "cg": cgroup, "cpu": cpu}
        cores, memory = self._held(pstate, inst)
        _add(rows, {**base, "type": kind, "cores": cores, "memory": memory},
             {"seconds": seconds, "cpu_seconds": cpu - last["cpu"] if same else cpu},
             t - seconds, t, zone)
        for n in inst.netifs:
            veth = self.net.veth(n)
            if veth not in links:
                continue
            index, counters = links[veth]
            last = old.get(f"net:{veth}") or {}
            same = last.get("index") == index and all(counters[k] >= last.get(k, 0) for k in TRAFFIC)
            readings[f"net:{veth}"] = {"index": index, **counters}
            delta = {k: counters[k] - last[k] if same else counters[k] for k in TRAFFIC}
            if any(delta.values()):
                start = prev.t if same and prev is not None else t
                _add(rows, {**base, "type": "traffic", "netif": n.name}, delta, start, t, zone)

    @staticmethod
    def _held(pstate: PoolState, inst: Container | VM) -> tuple[float | None, int | None]:
        """The cores and memory an instance holds: a VM's, or a container's
        limits (its own or its groups'); None where unlimited."""
        if isinstance(inst, VM):
            return inst.running_cores or inst.cores, inst.running_memory or inst.memory
        limits = pstate.effective_limits(inst.group, inst.limits)
        return limits.cpu_limit, limits.memory


# --- the records -----------------------------------------------------------------

# What a record of each type is told apart by, besides its instance.
_KEYS = {"traffic": ("netif",), "ct": ("cores", "memory"), "vm": ("cores", "memory"),
         "disk": ("bytes",)}


def _derived(row: dict) -> dict[str, float]:
    """The amounts a group's record adds up: a held size times how long."""
    values = {k: v for k, v in row.items() if k in AMOUNTS}
    if row["type"] in ("ct", "vm"):
        for held, name in (("cores", "core_seconds"), ("memory", "memory_seconds")):
            if row.get(held) is not None:
                values[name] = row[held] * row["seconds"]
    elif row["type"] == "disk":
        values = {"seconds": row["seconds"], "byte_seconds": row["bytes"] * row["seconds"]}
    return values


def records(pool: Pool, period: str, group: str | None = None,
            type_: str | None = None) -> list[dict]:
    """A pool's records of ``period``: one per instance (and netif, or held
    size), then one per group with what its instances and child groups used;
    ``group`` keeps that group and those below it."""
    prefix = None if group is None else group.rstrip("/") + "/"

    def within(path: str) -> bool:
        return group is None or path == group or path.startswith(prefix or "")

    months = [month_before(period), period, month_after(period)]
    inst: dict[tuple, dict] = {}
    groups: dict[tuple, dict] = {}
    for doc in lines(journal_dir(pool), months):
        for row in doc.get("rows") or []:
            if row.get("period") != period or type_ not in (None, row.get("type")):
                continue
            if not within(row["group"]) or row.get("type") not in _KEYS:
                continue
            values = _derived(row)
            ident = (row["type"], row["object"], row["id"], row["group"],
                     *(row.get(k) for k in _KEYS[row["type"]]))
            _sum(inst, ident, {"period": period, "pool": pool.name, **{
                k: row[k] for k in ("type", "object", "id", "group", *_KEYS[row["type"]])}}, values)
            for g in ancestors(row["group"]):
                if within(g):
                    _sum(groups, (row["type"], g), {"period": period, "pool": pool.name,
                                                    "type": row["type"], "object": "group",
                                                    "id": g, "group": g}, values)
    return [inst[k] for k in sorted(inst, key=str)] + [groups[k] for k in sorted(groups)]


def _sum(table: dict[tuple, dict], key: tuple, head: dict, values: dict[str, float]) -> None:
    row = table.setdefault(key, head)
    for k, v in values.items():
        row[k] = row.get(k, 0) + v
