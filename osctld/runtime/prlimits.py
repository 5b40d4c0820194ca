"""prlimits on running processes: apply a change live, read what is in force."""

from __future__ import annotations

import logging
import os
import resource

from ..model.prlimit import LIMITS, UNLIMITED, parse_value

log = logging.getLogger(__name__)


def to_rlimit(v: int | str) -> int:
    return resource.RLIM_INFINITY if v == UNLIMITED else int(v)


def ceiling(name: str) -> int | str:
    """The daemon's own hard limit: the most a container's start can set
    (model.prlimit says why)."""
    hard = resource.getrlimit(LIMITS[name][0])[1]
    return UNLIMITED if hard == resource.RLIM_INFINITY else hard


def pids_in_pidns_of(pid: int) -> list[int]:
    """Every process in the PID namespace of ``pid`` (a container's init)."""
    target = os.stat(f"/proc/{pid}/ns/pid").st_ino
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/pid").st_ino == target:
                    out.append(int(entry))
            except OSError:
                pass  # gone meanwhile
    return out


def apply(init_pid: int, name: str, soft: int | str, hard: int | str) -> tuple[int, int]:
    """Set the limit on every process of the container: (how many took it,
    how many refused). Raising a hard limit needs CAP_SYS_RESOURCE, which
    a confined osctld may lack: those processes keep their limit until the
    next start, where LXC sets it."""
    limits = (to_rlimit(soft), to_rlimit(hard))
    done = refused = 0
    for pid in pids_in_pidns_of(init_pid):
        try:
            resource.prlimit(pid, LIMITS[name][0], limits)
            done += 1
        except ProcessLookupError:
            pass  # gone meanwhile
        except (PermissionError, ValueError) as e:
            refused += 1
            log.warning("prlimit %s=%s:%s refused by pid %d: %s", name, soft, hard, pid, e)
    return done, refused


def in_force(pid: int, names: list[str]) -> dict[str, list]:
    """The limits a process really has, for the given names: {name: [soft, hard]}."""
    with open(f"/proc/{pid}/limits") as f:
        lines = f.read().splitlines()
    out = {}
    for name in names:
        label = LIMITS[name][1]
        for line in lines:
            if line.startswith(label):
                soft, hard = line[len(label):].split()[:2]
                out[name] = [parse_value(soft), parse_value(hard)]
    return out
