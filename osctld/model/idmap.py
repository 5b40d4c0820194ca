"""UID/GID maps and the id-range allocator of a pool.

A user's containers share one map. Ranges handed out never overlap, across
every user of every pool, because an overlap would let one tenant's root own
another tenant's files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from osctl.protocol import CONFLICT, INVALID, OsctlError

ID_LIMIT = 2**32
MIN_MAP_SIZE = 65536
MIN_HOST_ID = 65536  # the host's own users and groups live below this
DEFAULT_BASE = 1_000_000
DEFAULT_BLOCK_SIZE = 524_288


@dataclass(frozen=True)
class MapEntry:
    """``ns_id`` inside the container maps to ``host_id`` on the host, ``count`` IDs."""

    ns_id: int
    host_id: int
    count: int

    @classmethod
    def parse(cls, text: str) -> "MapEntry":
        parts = text.replace(",", ":").split(":")
        try:
            ns_id, host_id, count = (int(p) for p in parts)
        except ValueError:
            raise OsctlError(
                INVALID, f"invalid map entry {text!r}: expected NS_ID:HOST_ID:COUNT"
            ) from None
        return cls(ns_id, host_id, count).checked()

    def checked(self) -> "MapEntry":
        if self.ns_id < 0 or self.host_id < 0 or self.count < 1:
            raise OsctlError(INVALID, f"invalid map entry {self}: negative or empty")
        if self.ns_id + self.count > ID_LIMIT or self.host_id + self.count > ID_LIMIT:
            raise OsctlError(INVALID, f"map entry {self} does not fit in 32 bits")
        return self

    @property
    def host_end(self) -> int:
        return self.host_id + self.count

    def __str__(self) -> str:
        return f"{self.ns_id}:{self.host_id}:{self.count}"


def check_map(kind: str, entries: list[MapEntry]) -> list[MapEntry]:
    """A map must cover namespace ID 0, hold 65536 IDs or more, not overlap
    itself, and never give the host's own IDs below MIN_HOST_ID (root, system
    users) to a container."""
    if not entries:
        raise OsctlError(INVALID, f"{kind} map is empty")
    for e in entries:
        e.checked()
        if e.host_id < MIN_HOST_ID:
            raise OsctlError(INVALID, f"{kind} map entry {e} maps onto the host's own IDs "
                                      f"(below {MIN_HOST_ID})")
    if not any(e.ns_id == 0 for e in entries):
        raise OsctlError(INVALID, f"{kind} map must map ID 0 (the container's root)")
    if sum(e.count for e in entries) < MIN_MAP_SIZE:
        raise OsctlError(INVALID, f"{kind} map must hold at least {MIN_MAP_SIZE} IDs")
    by_ns = sorted(entries, key=lambda e: e.ns_id)
    by_host = sorted(entries, key=lambda e: e.host_id)
    for a, b in zip(by_ns, by_ns[1:]):
        if a.ns_id + a.count > b.ns_id:
            raise OsctlError(INVALID, f"{kind} map entries {a} and {b} overlap inside")
    for a, b in zip(by_host, by_host[1:]):
        if a.host_end > b.host_id:
            raise OsctlError(INVALID, f"{kind} map entries {a} and {b} overlap on the host")
    return entries


def translator(src: Sequence[MapEntry] | None,
               dst: Sequence[MapEntry] | None) -> Callable[[int], int] | None:
    """How an owner on disk changes when a tree stored through map ``src``
    is to be stored through map ``dst`` (None: unshifted, the IDs as the
    container sees them; a chown pool stores its trees shifted through the
    user's map). None when nothing changes. An ID that ``src`` does not
    map, or whose container ID ``dst`` does not, is left as it is."""
    if list(src or ()) == list(dst or ()):
        return None

    def move(host: int) -> int:
        ns = host if src is None else _through(src, host, to_host=False)
        out = ns if dst is None or ns is None else _through(dst, ns, to_host=True)
        return host if out is None else out
    return move


def _through(entries: Sequence[MapEntry], value: int, to_host: bool) -> int | None:
    for e in entries:
        frm, to = (e.ns_id, e.host_id) if to_host else (e.host_id, e.ns_id)
        if frm <= value < frm + e.count:
            return to + value - frm
    return None


def overlaps(a_start: int, a_end: int, b_start: int, b_end: int) -> bool:
    return a_start < b_end and b_start < a_end


@dataclass
class IdRange:
    """Blocks of ``block_size`` host IDs from ``base``; ``allocated`` maps block -> owner."""

    base: int = DEFAULT_BASE
    block_size: int = DEFAULT_BLOCK_SIZE
    block_count: int = 0  # 0: as many as fit below 2**32
    allocated: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.base < MIN_HOST_ID:
            raise OsctlError(INVALID, f"id-range base must be at least {MIN_HOST_ID}: "
                                      "the host's own users live below")
        if self.block_size < MIN_MAP_SIZE:
            raise OsctlError(INVALID, f"id-range block size must be at least {MIN_MAP_SIZE}")
        fit = (ID_LIMIT - self.base) // self.block_size
        if fit < 1:
            raise OsctlError(INVALID, "id-range base leaves no room below 2**32")
        if self.block_count <= 0 or self.block_count > fit:
            self.block_count = fit

    def block(self, index: int) -> tuple[int, int]:
        """Host IDs [start, end) of block ``index``."""
        start = self.base + index * self.block_size
        return start, start + self.block_size

    @property
    def end(self) -> int:
        return self.base + self.block_count * self.block_size

    def allocate(self, owner: str, taken: Sequence[tuple[int, int]] = ()) -> int:
        """Lowest free block that overlaps none of ``taken`` (host [start, end) pairs)."""
        for index in range(self.block_count):
            if index in self.allocated:
                continue
            start, end = self.block(index)
            if any(overlaps(start, end, s, e) for s, e in taken):
                continue
            self.allocated[index] = owner
            return index
        raise OsctlError(
            CONFLICT,
            f"id-range exhausted: all {self.block_count} blocks of {self.block_size} IDs "
            f"from {self.base} are taken",
        )

    def release(self, index: int) -> None:
        self.allocated.pop(index, None)

    def reconcile(self, users: dict[str, int]) -> bool:
        """Make the table say exactly which user (name -> block) holds which
        block, as a crash between two config writes may have left it. True
        when it changed."""
        want = {block: f"user:{name}" for name, block in users.items()}
        changed = want != self.allocated
        self.allocated = want
        return changed

    def to_dict(self) -> dict:
        return {
            "base": self.base,
            "block_size": self.block_size,
            "block_count": self.block_count,
            "allocated": {int(k): v for k, v in sorted(self.allocated.items())},
        }

    @classmethod
    def from_dict(cls, d: dict) -> "IdRange":
        return cls(
            base=int(d.get("base", DEFAULT_BASE)),
            block_size=int(d.get("block_size", DEFAULT_BLOCK_SIZE)),
            block_count=int(d.get("block_count", 0)),
            allocated={int(k): str(v) for k, v in (d.get("allocated") or {}).items()},
        )
