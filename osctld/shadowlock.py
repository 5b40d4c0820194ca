"""Lock files of /etc as shadow-utils does, so that useradd, usermod,
userdel and vipw never interleave their rewrites with ours.

shadow-utils (lib/commonio.c) first takes glibc's ``lckpwdf()``: a POSIX
record lock on /etc/.pwd.lock, waited for up to 15 s. Then, for each file
it changes, it writes its PID to ``<file>.<pid>`` and hard-links that to
``<file>.lock``: the link fails while another holds the lock, and a lock
whose PID is dead is stale and is taken over. Its tools try that second
step once, so taking ``lckpwdf`` first makes them wait for us instead of
failing.

Everything here blocks (in sleeps of a few milliseconds, up to a deadline):
the daemon calls it in a thread, never on its event loop. The lock files
live in /etc, which only root can write, and are opened with O_NOFOLLOW.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from osctl.protocol import BUSY, OsctlError

PWD_LOCK = Path("/etc/.pwd.lock")
TIMEOUT = 15.0  # lckpwdf's own
RETRY = 0.02


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        # Our callers serialise their own threads: a lock naming us was left
        # by an earlier process that had our PID.
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(lock: Path) -> int | None:
    """The live PID a lock file names; None when it is stale or gone."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        text = os.read(fd, 32).split(b"\0")[0].strip()
    finally:
        os.close(fd)
    try:
        pid = int(text)
    except ValueError:
        # shadow-utils refuses such a lock, and so do we: someone is writing it.
        return -1
    return pid if pid > 0 and _pid_alive(pid) else None


def _try_lock(file: Path) -> bool:
    """One attempt of shadow-utils' do_lock_file on ``file``."""
    lock = file.with_name(file.name + ".lock")
    mine = file.with_name(f"{file.name}.{os.getpid()}")
    fd = os.open(mine, os.O_CREAT | os.O_TRUNC | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, f"{os.getpid()}\0".encode())
        os.fdatasync(fd)
    finally:
        os.close(fd)
    try:
        for _ in range(2):
            try:
                os.link(mine, lock)
                return os.stat(mine).st_nlink == 2
            except FileExistsError:
                if _holder(lock) is not None:
                    return False
                try:
                    os.unlink(lock)  # stale: its process is gone
                except FileNotFoundError:
                    pass
        return False
    finally:
        os.unlink(mine)


def _until(deadline: float, attempt, what: str) -> None:
    while not attempt():
        if time.monotonic() >= deadline:
            raise OsctlError(BUSY, f"{what} is held by another program (useradd, vipw?): "
                                   "try again later")
        time.sleep(RETRY)


@contextmanager
def _pwd_locked(path: Path, deadline: float) -> Iterator[None]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        def attempt() -> bool:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except (BlockingIOError, PermissionError):
                return False

        _until(deadline, attempt, str(path))
        yield
    finally:
        os.close(fd)  # and with it the record lock


@contextmanager
def locked(files: list[Path], pwd_lock: Path = PWD_LOCK, timeout: float = TIMEOUT) -> Iterator[None]:
    """Hold ``lckpwdf`` and ``<file>.lock`` of each of ``files``; BUSY after ``timeout``."""
    deadline = time.monotonic() + timeout
    held: list[Path] = []
    with _pwd_locked(pwd_lock, deadline):
        try:
            for f in files:
                _until(deadline, lambda: _try_lock(f), f"{f}.lock")
                held.append(f.with_name(f.name + ".lock"))
            yield
        finally:
            for lock in reversed(held):
                lock.unlink(missing_ok=True)
