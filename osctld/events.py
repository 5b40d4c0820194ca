"""The event bus: every subscriber has a bounded queue of its own.

Publishing never waits. A subscriber whose queue is full has fallen behind
and is dropped (its connection closed), so a slow monitor cannot stall the
daemon or grow its memory. A subscriber may name the events it wants (a
``Filter``: types, pools, object kinds, object ids), and may be shown only
what it is allowed to see (``visible``): the others never reach its queue,
so they cannot fill it either.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Callable

from osctl.protocol import EVENT_OBJECTS, EVENT_TYPES, INVALID, OsctlError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Filter:
    """The events a subscriber wants: each field empty for any, else the
    values it takes (an event without the field is not wanted). ``ids``
    match an event's ``id``: a netif's events carry its server's."""

    types: frozenset[str] = frozenset()
    pools: frozenset[str] = frozenset()
    objects: frozenset[str] = frozenset()
    ids: frozenset[str] = frozenset()

    @classmethod
    def of(cls, types=(), pools=(), objects=(), ids=()) -> "Filter":
        """A filter from a subscriber's lists: ``invalid`` naming an unknown
        type or object kind, so that a typo does not wait forever on nothing."""
        for what, given, known in (("type", types, EVENT_TYPES), ("object", objects, EVENT_OBJECTS)):
            unknown = sorted(set(given) - set(known))
            if unknown:
                raise OsctlError(INVALID, f"unknown event {what}(s) {', '.join(unknown)}; "
                                          f"known: {', '.join(known)}")
        return cls(frozenset(types), frozenset(pools), frozenset(objects), frozenset(ids))

    def wants(self, event: dict) -> bool:
        return all(not values or event.get(key) in values
                   for key, values in (("type", self.types), ("pool", self.pools),
                                       ("object", self.objects), ("id", self.ids)))


class Subscription:
    def __init__(self, bus: "EventBus", maxsize: int, on_overflow: Callable[[], None],
                 filter: Filter = Filter(), visible: Callable[[dict], bool] | None = None):
        self.bus = bus
        self.queue: asyncio.Queue[dict] = asyncio.Queue(maxsize)
        self.on_overflow = on_overflow
        self.filter = filter
        self.visible = visible  # None: everything
        self.closed = False

    def wants(self, event: dict) -> bool:
        return self.filter.wants(event) and (self.visible is None or self.visible(event))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.bus.subscribers.discard(self)


class EventBus:
    def __init__(self, queue_size: int = 1024):
        self.queue_size = queue_size
        self.subscribers: set[Subscription] = set()

    def subscribe(self, on_overflow: Callable[[], None], filter: Filter = Filter(),
                  visible: Callable[[dict], bool] | None = None) -> Subscription:
        """A new subscriber, of the events ``filter`` wants (all by default)
        that ``visible`` lets through; ``on_overflow`` is called once if it
        falls behind and is dropped."""
        sub = Subscription(self, self.queue_size, on_overflow, filter, visible)
        self.subscribers.add(sub)
        return sub

    def publish(self, type_: str, **data) -> None:
        event = {"type": type_, "time": time.time(), **data}
        for sub in list(self.subscribers):
            if not sub.wants(event):
                continue
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("event subscriber fell behind %d events: disconnecting it", self.queue_size)
                sub.close()
                sub.on_overflow()
