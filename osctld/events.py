"""The event bus: every subscriber has a bounded queue of its own.

Publishing never waits. A subscriber whose queue is full has fallen behind
and is dropped (its connection closed), so a slow monitor cannot stall the
daemon or grow its memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

log = logging.getLogger(__name__)


class Subscription:
    def __init__(self, bus: "EventBus", maxsize: int, on_overflow: Callable[[], None]):
        self.bus = bus
        self.queue: asyncio.Queue[dict] = asyncio.Queue(maxsize)
        self.on_overflow = on_overflow
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.bus.subscribers.discard(self)


class EventBus:
    def __init__(self, queue_size: int = 1024):
        self.queue_size = queue_size
        self.subscribers: set[Subscription] = set()

    def subscribe(self, on_overflow: Callable[[], None]) -> Subscription:
        sub = Subscription(self, self.queue_size, on_overflow)
        self.subscribers.add(sub)
        return sub

    def publish(self, type_: str, **data) -> None:
        event = {"type": type_, "time": time.time(), **data}
        for sub in list(self.subscribers):
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("event subscriber fell behind %d events: disconnecting it", self.queue_size)
                sub.close()
                sub.on_overflow()
