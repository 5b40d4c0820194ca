"""The end of a log file, read from its end: LXC's log and a VM's console
log only grow, and a caller wants their last lines, not megabytes."""

from __future__ import annotations

import os
from pathlib import Path

# At most this much is read from the end, whatever ``lines`` asks.
WINDOW = 1 << 20


def tail(path: Path, lines: int, window: int = WINDOW) -> str:
    """The last ``lines`` lines of ``path`` (within its last ``window``
    bytes); empty when there is no such file."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - window))
            data = f.read()
    except FileNotFoundError:
        return ""
    if len(data) == window and size > window:
        data = data.partition(b"\n")[2]  # a cut first line
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])
