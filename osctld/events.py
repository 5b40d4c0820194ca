"""The event bus: every subscriber has a bounded queue of its own.

Publishing never waits. A subscriber whose queue is full has fallen behind
and is dropped (its connection closed), so a slow monitor cannot stall the
daemon or grow its memory. A subscriber may name the event types it wants,
and may be shown only what it is allowed to see (``visible``): the others
never reach its queue, so they cannot fill it either.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Iterable

log = logging.getLogger(__name__)


class Subscription:
    def __init__(self, bus: "EventBus", maxsize: int, on_overflow: Callable[[], None],
                 types: Iterable[str] = (), visible: Callable[[dict], bool] | None = None):
        self.bus = bus
        self.queue: asyncio.Queue[dict] = asyncio.Queue(maxsize)
        self.on_overflow = on_overflow
        self.types = frozenset(types)  # empty: every type
        self.visible = visible  # None: everything
        self.closed = False

    def wants(self, event: dict) -> bool:
        return ((not self.types or event["type"] in self.types)
                and (self.visible is None or self.visible(event)))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.bus.subscribers.discard(self)


class EventBus:
    def __init__(self, queue_size: int = 1024):
        self.queue_size = queue_size
        self.subscribers: set[Subscription] = set()

    def subscribe(self, on_overflow: Callable[[], None], types: Iterable[str] = (),
                  visible: Callable[[dict], bool] | None = None) -> Subscription:
        """A new subscriber, of the events of ``types`` (all when none are named)
        that ``visible`` lets through; ``on_overflow`` is called once if it
        falls behind and is dropped."""
        sub = Subscription(self, self.queue_size, on_overflow, types, visible)
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
