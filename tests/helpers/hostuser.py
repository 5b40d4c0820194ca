"""Host users for tests that talk to osctld as someone other than root.

The users are system users of a group of their own, made for one test and
removed after it (``userdel`` takes any /etc/subuid lines with them). osctl
runs as one of them in a forked child of the test process, which drops to
that uid and gid before it runs osctl's own ``main``: the venv's interpreter
lives below root's home, which other users cannot enter, and the daemon must
see the uid through SO_PEERCRED.
"""

from __future__ import annotations

import contextlib
import grp
import importlib
import os
import pwd
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from typing import Iterator


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


def spawn_osctl(user: HostUser, socket: str, *args: str) -> tuple[int, int]:
    """Start ``osctl --socket SOCKET ARGS`` as ``user``: (pid, fd of its
    stdout and stderr together)."""
    # Imported here, as root: the child cannot read the interpreter's files.
    for module in ("osctl.cli.main", "json", "csv", "yaml"):
        importlib.import_module(module)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            os.close(r)
            os.dup2(w, 1)
            os.dup2(w, 2)
            os.setgroups([])
            os.setgid(user.gid)
            os.setuid(user.uid)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            sys.stdout = open(1, "w", closefd=False)
            sys.stderr = open(2, "w", closefd=False)
            sys.argv = ["osctl", "--socket", socket, *args]
            from osctl.cli.main import main

            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException as e:  # noqa: BLE001 - reported through the pipe
            print(f"{type(e).__name__}: {e}", file=sys.stderr)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(w)
    return pid, r


def finish(pid: int, fd: int) -> tuple[int, str]:
    """Wait for a spawned osctl: (exit code, its output)."""
    with open(fd, "rb") as f:
        out = f.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out


def osctl_as(user: HostUser, socket: str, *args: str) -> tuple[int, str]:
    """Run ``osctl --socket SOCKET ARGS`` as ``user``: (exit code, output)."""
    return finish(*spawn_osctl(user, socket, *args))
