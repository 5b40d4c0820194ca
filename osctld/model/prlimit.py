"""Process resource limits (setrlimit) a container's processes start with.

LXC sets them on the container's init (``lxc.prlimit.<name> = soft:hard``)
and every process inherits them; osctld also applies a change to the
processes already running, where the kernel allows (it always does for root).

What a start can set is bounded twice: by the kernel (a nice ceiling is 0 to
40, a realtime priority 0 to 99, anything else a 64-bit count) and by the
daemon's own hard limits. LXC sets the prlimits from inside the container's
user namespace, where a hard limit can only be lowered: a hard limit above
the daemon's (``nproc`` above the node's, ``nice`` above its usual 0) makes
every start fail, so it is refused when it is set.
"""

from __future__ import annotations

from osctl.protocol import INVALID, OsctlError

from .bounds import INT64_MAX, Range, shown

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

# Where the kernel reads a limit as a value with a maximum, not a count:
# nice's is 20 - limit (so 0 to 40), rtprio's a priority (0 to 99). These,
# and nofile (capped at fs.nr_open), cannot be unlimited.
KERNEL_RANGE = {"nice": Range(0, 40), "rtprio": Range(0, 99)}
COUNT_RANGE = Range(0, INT64_MAX)
NEVER_UNLIMITED = ("nice", "rtprio", "nofile")


def check_name(name: str) -> str:
    if name not in LIMITS:
        raise OsctlError(INVALID, f"unknown prlimit {shown(name)}: one of {', '.join(sorted(LIMITS))}")
    return name


def parse_value(v: str | int, name: str = "prlimit") -> int | str:
    if v in (UNLIMITED, "inf", "infinity", -1):
        return UNLIMITED
    n = None
    if isinstance(v, (str, int)) and not isinstance(v, bool):
        try:
            n = int(v)
        except ValueError:
            pass
    if n is None:
        raise OsctlError(INVALID, f"prlimit {name} must be a number or 'unlimited', not {shown(v)}")
    return KERNEL_RANGE.get(name, COUNT_RANGE).check(f"prlimit {name}", n, v)


def _above(value: int | str, ceiling: int | str) -> bool:
    if isinstance(ceiling, str):  # the only string is UNLIMITED
        return False
    return isinstance(value, str) or value > ceiling


def check_pair(name: str, soft: str | int, hard: str | int | None,
               ceiling: int | str = UNLIMITED) -> tuple[int | str, int | str]:
    """(soft, hard), with hard defaulting to soft; soft may not exceed hard,
    nor hard ``ceiling``, the daemon's own hard limit (see above)."""
    check_name(name)
    s = parse_value(soft, name)
    h = s if hard is None else parse_value(hard, name)
    if name in NEVER_UNLIMITED and UNLIMITED in (s, h):
        why = "the kernel caps it at fs.nr_open" if name == "nofile" else \
            f"its highest value is {KERNEL_RANGE[name].hi}"
        raise OsctlError(INVALID, f"prlimit {name} cannot be unlimited: {why}")
    if _above(s, h):
        raise OsctlError(INVALID, f"prlimit {name}: soft {s} is above hard {h}")
    if _above(h, ceiling):
        raise OsctlError(INVALID, f"prlimit {name}: hard {h} is above osctld's own hard limit, "
                                  f"{ceiling}: LXC sets prlimits inside the container's user "
                                  "namespace, where a hard limit cannot be raised, so no start "
                                  "would succeed")
    return s, h


def loaded(prlimits: dict, where: str) -> dict:
    """Saved prlimits; a number out of the kernel's range (saved before there
    were bounds) is clamped, with a warning naming ``where``."""
    return {name: [KERNEL_RANGE.get(name, COUNT_RANGE).clamp(f"{where}: prlimit {name}", v)
                   for v in pair] if isinstance(pair, list) else pair
            for name, pair in prlimits.items()}
