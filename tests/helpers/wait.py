"""Waiting for something seen from outside to come true."""

from __future__ import annotations

import time


def eventually(check, timeout: float = 20.0) -> bool:
    """Whether ``check()`` came true within ``timeout`` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False
