"""The node's kernel limits: raised at daemon start so that hundreds of tenants fit.

With the kernel's defaults a node runs out long before its memory does: every
container's root is a host UID of its tenant, so all of one tenant's (and,
for inotify instances, all tenants' unprivileged) containers share one
per-user limit, and each container takes a few ptys, keys and neighbour
entries. The defaults below follow LXD's production set-up and vpsAdminOS.
The node config's ``sysctls`` overrides them (a value of null drops a key);
a value is only ever raised, never lowered below what the node already has.

``net.*`` keys belong to a network namespace: the daemon writes them in its
own, which is the node's. Some (the neighbour table thresholds,
``net.core.bpf_jit_limit``) exist only in the host's first namespace; a
daemon elsewhere (a test node) reports them as absent.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PROC_SYS = Path("/proc/sys")
KEY = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_-]+)+$")

DEFAULTS: dict[str, int] = {
    # Each container takes about five ptys (4 ttys and its console) from one
    # node-wide pool, of which kernel.pty.reserve is kept for the host.
    "kernel.pty.max": 65536,
    # Charged to the owner of the user namespace (root): shared by all tenants.
    "fs.inotify.max_user_instances": 1048576,
    "fs.inotify.max_user_watches": 1048576,
    # Per host UID: one tenant's containers share its keys (a keyring each).
    "kernel.keys.maxkeys": 2000,
    "kernel.keys.maxbytes": 2000000,
    "vm.max_map_count": 262144,
    # ARP and NDP entries: one or more per container on a routed node.
    "net.ipv4.neigh.default.gc_thresh1": 1024,
    "net.ipv4.neigh.default.gc_thresh2": 4096,
    "net.ipv4.neigh.default.gc_thresh3": 8192,
    "net.ipv6.neigh.default.gc_thresh1": 1024,
    "net.ipv6.neigh.default.gc_thresh2": 4096,
    "net.ipv6.neigh.default.gc_thresh3": 8192,
    # BPF programs: device cgroups (v2) and seccomp filters of every container.
    "net.core.bpf_jit_limit": 1000000000,
}


def wanted(overrides: dict | None) -> dict[str, int]:
    """The defaults with the node config's ``sysctls`` laid over them; a key
    set to None is dropped. Refuses keys and values that are not sysctls."""
    out = dict(DEFAULTS)
    for key, value in (overrides or {}).items():
        if not isinstance(key, str) or not KEY.match(key):
            raise ValueError(f"sysctls: {key!r} is not a sysctl name (like fs.inotify.max_user_watches)")
        if value is None:
            out.pop(key, None)
        elif isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 63:
            raise ValueError(f"sysctls: {key} must be a non-negative integer or null")
        else:
            out[key] = value
    return out


def path(key: str, root: Path = PROC_SYS) -> Path:
    return root / key.replace(".", "/")


def read(key: str, root: Path = PROC_SYS) -> int | None:
    """The value in force; None where this namespace has no such key."""
    try:
        return int(path(key, root).read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


@dataclass
class Sysctl:
    key: str
    wanted: int
    before: int | None  # at daemon start; None: absent here
    error: str | None = None

    def public(self, root: Path = PROC_SYS) -> dict:
        out = {"wanted": self.wanted, "in_force": read(self.key, root)}
        if self.before is None:
            out["note"] = "absent in this namespace"
        elif self.error:
            out["note"] = self.error
        elif self.before > self.wanted:
            out["note"] = "kept: the node had more"
        return out


def raise_all(want: dict[str, int], root: Path = PROC_SYS) -> list[Sysctl]:
    """Write each wanted value that is above the one in force, in key order
    (the neighbour thresholds 1, 2, 3 go up in turn). A failure is logged and
    kept for ``osctl status``, never fatal: the node runs with what it has."""
    out = []
    for key in sorted(want):
        s = Sysctl(key, want[key], read(key, root))
        if s.before is not None and s.before < s.wanted:
            try:
                path(key, root).write_text(str(s.wanted))
                log.info("sysctl %s raised from %d to %d", key, s.before, s.wanted)
            except OSError as e:
                s.error = f"cannot raise: {e.strerror}"
                log.warning("sysctl %s stays %d: %s", key, s.before, e.strerror)
        out.append(s)
    return out
