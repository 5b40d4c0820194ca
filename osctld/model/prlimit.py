"""Process resource limits (setrlimit) a container's processes start with.

LXC sets them on the container's init (``lxc.prlimit.<name> = soft:hard``)
and every process inherits them; osctld also applies a change to the
processes already running, where the kernel allows (it always does for root).
"""

from __future__ import annotations

from osctl.protocol import INVALID, OsctlError

UNLIMITED = "unlimited"
# LXC's names (setrlimit's RLIMIT_* in lower case): the Linux resource
# number (not all are in Python's resource module) and the words that
# name the limit in /proc/PID/limits.
LIMITS = {
    "cpu": (0, "Max cpu time"), "fsize": (1, "Max file size"), "data": (2, "Max data size"),
    "stack": (3, "Max stack size"), "core": (4, "Max core file size"),
    "rss": (5, "Max resident set"), "nproc": (6, "Max processes"),
    "nofile": (7, "Max open files"), "memlock": (8, "Max locked memory"),
    "as": (9, "Max address space"), "locks": (10, "Max file locks"),
    "sigpending": (11, "Max pending signals"), "msgqueue": (12, "Max msgqueue size"),
    "nice": (13, "Max nice priority"), "rtprio": (14, "Max realtime priority"),
    "rttime": (15, "Max realtime timeout"),
}


def check_name(name: str) -> str:
    if name not in LIMITS:
        raise OsctlError(INVALID, f"unknown prlimit {name!r}: one of {', '.join(sorted(LIMITS))}")
    return name


def parse_value(v: str | int) -> int | str:
    if v in (UNLIMITED, "inf", "infinity", -1):
        return UNLIMITED
    try:
        n = int(v)
    except (TypeError, ValueError):
        raise OsctlError(INVALID, f"prlimit value must be a number or 'unlimited', not {v!r}") from None
    if n < 0:
        raise OsctlError(INVALID, f"prlimit value must not be negative: {n}")
    return n


def check_pair(name: str, soft: str | int, hard: str | int | None) -> tuple[int | str, int | str]:
    """(soft, hard), with hard defaulting to soft; soft may not exceed hard."""
    check_name(name)
    s = parse_value(soft)
    h = s if hard is None else parse_value(hard)
    if name == "nofile" and UNLIMITED in (s, h):
        raise OsctlError(INVALID, "nofile cannot be unlimited: the kernel caps it at fs.nr_open")
    if h != UNLIMITED and (s == UNLIMITED or s > h):
        raise OsctlError(INVALID, f"prlimit {name}: soft {s} is above hard {h}")
    return s, h
