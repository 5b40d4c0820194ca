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
MAX_READ = 4 << 20
MAX_LINKS = 40


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


def _kept(dfd: int, name: str) -> bool:
    """Whether the tenant keeps ``name`` as it is: a file (not a symlink)
    whose owner-write bit is cleared."""
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return not (st.st_mode & 0o200) and not stat.S_ISLNK(st.st_mode)


def _same(dfd: int, name: str, data: bytes, mode: int, uid: int, gid: int) -> bool:
    """Whether regular file ``name`` already holds ``data`` as we would write it."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if (not stat.S_ISREG(st.st_mode) or st.st_size != len(data)
                or stat.S_IMODE(st.st_mode) != mode or (st.st_uid, st.st_gid) != (uid, gid)):
            return False
        return os.read(fd, len(data) + 1) == data
    finally:
        os.close(fd)


class RootFS:
    def __init__(self, path: Path):
        self.path = Path(path)

    def _open_dir(self, rel: str, create: bool) -> int:
        root = os.open(self.path, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
        try:
            if create:
                self._make_dirs(root, rel, MAX_LINKS)
            return openat2(root, rel or ".", os.O_DIRECTORY | os.O_RDONLY)
        finally:
            os.close(root)

    def _make_dirs(self, root: int, rel: str, links: int) -> None:
        """mkdir -p ``rel`` inside the rootfs, each new directory owned like its
        parent. A dangling symlink on the way (etc/network -> /srv/net) is
        followed inside the rootfs: its target is made, as the tenant meant."""
        parts = [p for p in PurePosixPath(rel).parts if p != "/"]
        for i in range(1, len(parts) + 1):
            try:
                os.close(openat2(root, "/".join(parts[:i]), os.O_DIRECTORY | os.O_RDONLY))
                continue
            except FileNotFoundError:
                pass
            parent_rel = "/".join(parts[:i - 1])
            parent = openat2(root, parent_rel or ".", os.O_DIRECTORY | os.O_RDONLY)
            try:
                st = os.fstat(parent)
                try:
                    os.mkdir(parts[i - 1], 0o755, dir_fd=parent)
                except FileExistsError:
                    if links == 0:
                        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), rel) from None
                    target = os.readlink(parts[i - 1], dir_fd=parent)
                    self._make_dirs(root, str(PurePosixPath(parent_rel) / target), links - 1)
                    continue
                os.chown(parts[i - 1], st.st_uid, st.st_gid, dir_fd=parent, follow_symlinks=False)
            finally:
                os.close(parent)

    def read(self, rel: str, limit: int = MAX_READ) -> str | None:
        """The text of ``rel``; None where it is missing, no regular file (a
        FIFO would block the daemon) or larger than ``limit``."""
        root = os.open(self.path, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
        try:
            fd = openat2(root, rel, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        except (FileNotFoundError, NotADirectoryError):
            return None
        finally:
            os.close(root)
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
                return None
            return f.read(limit).decode(errors="replace")

    def listdir(self, rel: str) -> list[str]:
        """Names in directory ``rel``; empty where it is missing."""
        try:
            dfd = self._open_dir(rel.lstrip("/"), create=False)
        except (FileNotFoundError, NotADirectoryError):
            return []
        try:
            return sorted(os.listdir(dfd))
        finally:
            os.close(dfd)

    def exists(self, rel: str) -> bool:
        root = os.open(self.path, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.close(openat2(root, rel, os.O_PATH))
            return True
        except (FileNotFoundError, NotADirectoryError):
            return False
        finally:
            os.close(root)

    def write(self, rel: str, content: str, mode: int = 0o644) -> bool:
        """Replace ``rel`` with ``content``; False (and nothing done) where the
        tenant has cleared the file's owner-write bit to keep it as it is."""
        p = PurePosixPath(rel)
        dfd = self._open_dir(str(p.parent).lstrip("/"), create=True)
        try:
            if _kept(dfd, p.name):
                return False
            dst = os.fstat(dfd)
            data = content.encode()
            if _same(dfd, p.name, data, mode, dst.st_uid, dst.st_gid):
                return True  # at every start: no write, no fsync when nothing changed
            tmp = f".{p.name}.osctld"
            try:
                os.unlink(tmp, dir_fd=dfd)
            except FileNotFoundError:
                pass
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         mode, dir_fd=dfd)
            try:
                os.write(fd, data)
                os.fchmod(fd, mode)
                os.fchown(fd, dst.st_uid, dst.st_gid)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, p.name, src_dir_fd=dfd, dst_dir_fd=dfd)
            return True
        finally:
            os.close(dfd)

    def readlink(self, rel: str) -> str | None:
        """The target of symlink ``rel``, None where it is no symlink."""
        p = PurePosixPath(rel)
        try:
            dfd = self._open_dir(str(p.parent).lstrip("/"), create=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            return os.readlink(p.name, dir_fd=dfd)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.EINVAL):
                return None
            raise
        finally:
            os.close(dfd)

    def remove(self, rel: str) -> bool:
        """Remove ``rel``; False (and nothing done) where the tenant has cleared
        its owner-write bit."""
        p = PurePosixPath(rel)
        try:
            dfd = self._open_dir(str(p.parent).lstrip("/"), create=False)
        except (FileNotFoundError, NotADirectoryError):
            return True
        try:
            if _kept(dfd, p.name):
                return False
            os.unlink(p.name, dir_fd=dfd)
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise
        finally:
            os.close(dfd)
        return True
