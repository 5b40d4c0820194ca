"""Can this filesystem take idmapped mounts? Asked once, at pool install.

The answer decides how a rootfs stored with UID 0 on disk is shown to a
container: an idmapped mount (instant, nothing rewritten) or, where the
filesystem cannot, chowning every file into the user's range.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import time
from pathlib import Path
from typing import Callable

SYS_OPEN_TREE = 428
SYS_MOUNT_SETATTR = 442
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
MOUNT_ATTR_IDMAP = 0x00100000


class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def supports_idmapped_mounts(path: Path) -> bool:
    # A throwaway user namespace with a map, to idmap a detached copy of the mount.
    holder = subprocess.Popen(["unshare", "--user", "sleep", "60"])
    tree = ns = -1
    try:
        for f in ("uid_map", "gid_map"):
            for _ in range(500):
                try:
                    Path(f"/proc/{holder.pid}/{f}").write_text("0 3000000000 65536\n")
                    break
                except OSError:
                    time.sleep(0.002)  # unshare has not entered its namespace yet
            else:
                raise RuntimeError(f"cannot probe idmapped mounts: no {f} for a test namespace")
        ns = os.open(f"/proc/{holder.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        tree = _libc.syscall(SYS_OPEN_TREE, AT_FDCWD, str(path).encode(),
                             OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)
        if tree < 0:
            return False
        attr = MountAttr(MOUNT_ATTR_IDMAP, 0, 0, ns)
        rc = _libc.syscall(SYS_MOUNT_SETATTR, tree, b"", AT_EMPTY_PATH,
                           ctypes.byref(attr), ctypes.sizeof(attr))
        return rc == 0
    finally:
        for fd in (tree, ns):
            if fd >= 0:
                os.close(fd)
        holder.kill()
        holder.wait()


def shift_tree(root: Path, uid_offset: int, gid_offset: int) -> None:
    """The fallback: chown every file of ``root`` by the offsets."""
    remap_tree(root, lambda uid: uid + uid_offset, lambda gid: gid + gid_offset)


def remap_tree(root: Path, uid: Callable[[int], int], gid: Callable[[int], int]) -> None:
    """Chown every file of ``root`` to the owner ``uid`` and ``gid`` give
    for its own (no symlink following; each inode once, however many hard
    links it has). ACL entries keep their IDs."""
    seen: set[tuple[int, int]] = set()

    def shift(name: str) -> None:
        st = os.lstat(name)
        if (st.st_dev, st.st_ino) in seen:
            return
        seen.add((st.st_dev, st.st_ino))
        os.chown(name, uid(st.st_uid), gid(st.st_gid), follow_symlinks=False)
        if not os.path.islink(name) and st.st_mode & 0o6000:
            os.chmod(name, st.st_mode & 0o7777)  # chown cleared setuid/setgid

    shift(str(root))
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            shift(os.path.join(dirpath, n))
