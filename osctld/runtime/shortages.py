"""Which kernel resource a failed start ran out of, and the setting to raise.

LXC says "No space left on device - Failed to create tty 0"; an operator
needs "the node is out of ptys: raise kernel.pty.max". The table maps LXC's
own log lines (its ``strerror`` prefix and message) to the resource and the
sysctl (see osctld.sysctls and the node config's ``sysctls``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Shortage:
    pattern: re.Pattern
    resource: str
    setting: str

    def hint(self) -> str:
        return f"the node is out of {self.resource}: raise {self.setting} (node config sysctls)"


def _s(pattern: str, resource: str, setting: str) -> Shortage:
    return Shortage(re.compile(pattern, re.IGNORECASE), resource, setting)


SHORTAGES = (
    # devpts: ENOSPC once kernel.pty.nr reaches kernel.pty.max less kernel.pty.reserve.
    _s(r"No space left on device - Failed to (create tty|allocate console)", "ptys", "kernel.pty.max"),
    # inotify_init: EMFILE at max_user_instances; inotify_add_watch: ENOSPC at max_user_watches.
    _s(r"inotify.*(Too many open files|EMFILE)|(Too many open files|EMFILE).*inotify",
       "inotify instances", "fs.inotify.max_user_instances"),
    _s(r"inotify.*(No space left on device|ENOSPC)|(No space left on device|ENOSPC).*inotify",
       "inotify watches", "fs.inotify.max_user_watches"),
    # keyctl(JOIN_SESSION_KEYRING): EDQUOT once the host UID has maxkeys keys or maxbytes bytes.
    _s(r"Disk quota exceeded - Failed to create kernel keyring",
       "kernel keys", "kernel.keys.maxkeys and kernel.keys.maxbytes"),
    _s(r"Cannot allocate memory - .*bpf|bpf.*(Cannot allocate memory|ENOMEM)",
       "BPF JIT memory", "net.core.bpf_jit_limit"),
)


def explain(log_text: str) -> list[str]:
    """The hints for every shortage ``log_text`` (LXC's log lines) shows, once each."""
    out: list[str] = []
    for s in SHORTAGES:
        if s.pattern.search(log_text) and s.hint() not in out:
            out.append(s.hint())
    return out
