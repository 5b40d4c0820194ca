"""Host users for tests that talk to osctld as someone other than root.

The users are system users of a group of their own, made for one test and
removed after it (``userdel`` takes any /etc/subuid lines with them). osctl
runs as one of them under ``setpriv``, so that the daemon sees that uid
through SO_PEERCRED.
"""

from __future__ import annotations

import contextlib
import grp
import pwd
import subprocess
import uuid
from dataclasses import dataclass
from typing import Iterator

from .node import OSCTL


@dataclass(frozen=True)
class HostUser:
    name: str
    uid: int
    gid: int


@contextlib.contextmanager
def host_users(*roles: str) -> Iterator[tuple[str, dict[str, HostUser]]]:
    """A new group and a new system user in it for each role: (group, users)."""
    tag = uuid.uuid4().hex[:8]
    group = f"osct-{tag}"
    names = {role: f"osct-{tag}-{role}" for role in roles}
    subprocess.run(["groupadd", "--system", group], check=True)
    try:
        for name in names.values():
            subprocess.run(["useradd", "--system", "--no-create-home", "--no-user-group",
                            "--gid", group, "--shell", "/usr/sbin/nologin", name], check=True)
        users = {role: HostUser(name, pwd.getpwnam(name).pw_uid, grp.getgrnam(group).gr_gid)
                 for role, name in names.items()}
        yield group, users
    finally:
        for name in names.values():
            subprocess.run(["userdel", name], capture_output=True)
        subprocess.run(["groupdel", group], capture_output=True)


def osctl_argv(user: HostUser, socket: str, *args: str) -> list[str]:
    """``osctl --socket SOCKET ARGS`` run as ``user`` (its uid and group only)."""
    return ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups",
            OSCTL, "--socket", socket, *args]


def osctl_as(user: HostUser, socket: str, *args: str) -> tuple[int, str]:
    """Run osctl as ``user``: (exit code, its stdout and stderr together)."""
    p = subprocess.run(osctl_argv(user, socket, *args), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=60)
    return p.returncode, p.stdout
