"""Waiting for something seen from outside to come true: the one polling loop
of the tests.

``wait_for`` asks ``probe`` again and again until ``until`` holds for what it
gave, and returns that. When time runs out it fails with what was awaited
and the last value seen, so that a failure says more than "timed out".
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Callable, TypeVar

T = TypeVar("T")
# How much of the last value a failure shows: its end, where logs say the latest.
SHOWN = 2000


def wait_for(probe: Callable[[], T], timeout: float = 20.0, interval: float = 0.2,
             message: str | Callable[[], str] = "the condition", *,
             until: Callable[[T], object] = bool,
             ignore: tuple[type[BaseException], ...] = ()) -> T:
    """``probe()``'s first value for which ``until`` holds (by default: a true
    value), asked every ``interval`` seconds for up to ``timeout`` seconds.

    ``message`` names what is awaited (a callable is asked only on failure, for
    details known then). A probe raising one of ``ignore`` counts as "not
    yet", its exception as the value seen; any other exception ends the wait.
    Raises AssertionError when time runs out (the probe is asked once more at
    the deadline, so a slow probe still gets its last word).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            last: T | BaseException = probe()
        except ignore as e:
            last = e
        else:
            if until(last):
                return last
        left = deadline - time.monotonic()
        if left <= 0:
            what = message() if callable(message) else message
            seen = repr(last)
            if len(seen) > SHOWN:
                seen = "..." + seen[-SHOWN:]
            raise AssertionError(f"waited {timeout:g} s for {what}; last seen: {seen}")
        time.sleep(min(interval, left))


def in_seconds(seconds: float) -> str:
    """An ISO 8601 time ``seconds`` from now, as ``--at`` takes it."""
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat()
