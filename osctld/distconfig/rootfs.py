"""Files inside a container's rootfs, opened so that the tenant cannot escape.

A rootfs belongs to the tenant: any path in it may be a symlink to
/etc/shadow of the host. Every path is resolved with openat2(2) and
RESOLVE_IN_ROOT, so ".." and absolute symlinks stay inside the rootfs, and
files are replaced by rename within the directory found that way.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from pathlib import Path, PurePosixPath

SYS_OPENAT2 = 437
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10


class OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def openat2(dirfd: int, path: str, flags: int, mode: int = 0) -> int:
    how = OpenHow(flags | os.O_CLOEXEC, mode, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    fd = _libc.syscall(SYS_OPENAT2, dirfd, path.encode(), ctypes.byref(how), ctypes.sizeof(how))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return fd


class RootFS:
    def __init__(self, path: Path):
        self.path = Path(path)

    def _open_dir(self, rel: str, create: bool) -> int:
        root = os.open(self.path, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
        try:
            if create:
                parts = [p for p in PurePosixPath(rel).parts if p != "/"]
                for i in range(1, len(parts) + 1):
                    sub = "/".join(parts[:i])
                    try:
                        fd = openat2(root, sub, os.O_DIRECTORY | os.O_RDONLY)
                        os.close(fd)
                    except FileNotFoundError:
                        parent = openat2(root, "/".join(parts[:i - 1]) or ".", os.O_DIRECTORY | os.O_RDONLY)
                        try:
                            st = os.fstat(parent)
                            os.mkdir(parts[i - 1], 0o755, dir_fd=parent)
                            os.chown(parts[i - 1], st.st_uid, st.st_gid, dir_fd=parent,
                                     follow_symlinks=False)
                        finally:
                            os.close(parent)
            return openat2(root, rel or ".", os.O_DIRECTORY | os.O_RDONLY)
        finally:
            os.close(root)

    def read(self, rel: str) -> str | None:
        root = os.open(self.path, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
        try:
            fd = openat2(root, rel, os.O_RDONLY)
        except FileNotFoundError:
            return None
        finally:
            os.close(root)
        with os.fdopen(fd, "rb") as f:
            return f.read().decode(errors="replace")

    def exists(self, rel: str) -> bool:
        return self.read(rel) is not None

    def write(self, rel: str, content: str, mode: int = 0o644) -> bool:
        """Replace ``rel`` with ``content``; False (and nothing done) where the
        tenant has cleared the file's owner-write bit to keep it as it is."""
        p = PurePosixPath(rel)
        dfd = self._open_dir(str(p.parent).lstrip("/"), create=True)
        try:
            try:
                st = os.stat(p.name, dir_fd=dfd, follow_symlinks=False)
                if not (st.st_mode & 0o200) and not stat.S_ISLNK(st.st_mode):
                    return False
            except FileNotFoundError:
                pass
            dst = os.fstat(dfd)
            tmp = f".{p.name}.osctld"
            try:
                os.unlink(tmp, dir_fd=dfd)
            except FileNotFoundError:
                pass
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         mode, dir_fd=dfd)
            try:
                os.write(fd, content.encode())
                os.fchmod(fd, mode)
                os.fchown(fd, dst.st_uid, dst.st_gid)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, p.name, src_dir_fd=dfd, dst_dir_fd=dfd)
            return True
        finally:
            os.close(dfd)

    def remove(self, rel: str) -> None:
        p = PurePosixPath(rel)
        try:
            dfd = self._open_dir(str(p.parent).lstrip("/"), create=False)
        except FileNotFoundError:
            return
        try:
            os.unlink(p.name, dir_fd=dfd)
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise
        finally:
            os.close(dfd)
