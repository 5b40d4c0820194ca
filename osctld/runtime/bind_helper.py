"""Bind a node's path into a running container, or take it out again.

Run by osctld as ``python -I -S bind_helper.py mount PID SRC DST RO IDMAP``
or ``... umount PID DST``: a process of its own, since joining other
namespaces (setns) is refused to a threaded one such as the daemon.
Standard library only; the way LXC's own mount injection works:

1. SRC is taken on the node as a detached copy of its mount (open_tree),
   made read-only and idmapped by the container's user namespace as asked
   (mount_setattr).
2. The copy is attached on SRC in a private mount namespace of ours, which
   is then copied into one owned by the container's user namespace: the
   kernel locks what the copy's flags say there (MNT_LOCK_READONLY), so the
   container's root cannot remount it writable. A copy of that is what
   goes in.
3. As the container's root, in its mount namespace (whose root is the
   container's own, so DST and any symlink on its way resolve inside,
   never onto the node), DST is made if missing (a directory, or an empty
   file for a file) and the copy is attached there (move_mount).
"""

import ctypes
import errno
import os
import sys

SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442
OPEN_TREE_CLONE, AT_FDCWD, AT_EMPTY_PATH = 1, -100, 0x1000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY, MOUNT_ATTR_IDMAP = 0x1, 0x00100000
CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000
NAMESPACES = {"mnt": CLONE_NEWNS, "user": CLONE_NEWUSER}
MS_REC, MS_PRIVATE = 0x4000, 0x40000
MNT_DETACH, UMOUNT_NOFOLLOW = 0x2, 0x8


class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def checked(rc: int, what: str) -> int:
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return rc


def enter(pid: int, kind: str = "mnt") -> None:
    """Join namespace ``kind`` of process ``pid`` (its mount namespace: its root becomes ours)."""
    fd = os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)
    checked(libc.setns(fd, NAMESPACES[kind]), f"joining the container's {kind} namespace")
    os.close(fd)
    if kind == "mnt":
        os.chdir("/")


def detached(path: str) -> int:
    """A detached copy of the mount at ``path`` (a descriptor)."""
    return checked(libc.syscall(SYS_OPEN_TREE, AT_FDCWD, path.encode(), OPEN_TREE_CLONE | os.O_CLOEXEC),
                   f"taking {path}")


def attach(tree: int, path: str) -> None:
    checked(libc.syscall(SYS_MOVE_MOUNT, tree, b"", AT_FDCWD, path.encode(), MOVE_MOUNT_F_EMPTY_PATH),
            f"mounting on {path}")


def make_target(dst: str, is_dir: bool) -> None:
    """DST made, if it is not there, by the container's root (ourselves now)."""
    if is_dir:
        os.makedirs(dst, exist_ok=True)
    elif not os.path.exists(dst):
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        os.close(os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))


def mount(pid: int, src: str, dst: str, ro: bool, idmap: bool) -> None:
    tree = detached(src)
    flags = (MOUNT_ATTR_RDONLY if ro else 0) | (MOUNT_ATTR_IDMAP if idmap else 0)
    if flags:
        userns = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        attr = MountAttr(flags, 0, 0, userns if idmap else 0)
        checked(libc.syscall(SYS_MOUNT_SETATTR, tree, b"", AT_EMPTY_PATH, ctypes.byref(attr),
                             ctypes.sizeof(attr)), "setting read-only and idmapped")
        os.close(userns)
    is_dir = os.path.isdir(src)
    # On SRC in a private namespace of ours, nothing of it seen by the node.
    checked(libc.unshare(CLONE_NEWNS), "a private mount namespace")
    checked(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "making it private")
    attach(tree, src)
    # From SRC's directory, which a new mount namespace keeps as the working
    # one: the container's root could not walk there by the full path when
    # a directory on the way is the node's root's alone (a pool's ct/, which
    # holds a zfs container's own datasets).
    os.chdir(os.path.dirname(src))
    # Copied into a namespace of the container's user namespace: locked there.
    enter(pid, "user")
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)  # the container's root from here on
    checked(libc.unshare(CLONE_NEWNS), "a mount namespace of the container's user namespace")
    locked = detached(os.path.basename(src) or ".")
    enter(pid, "mnt")
    make_target(dst, is_dir)
    attach(locked, dst)


def umount(pid: int, dst: str) -> None:
    enter(pid)
    checked(libc.umount2(dst.encode(), MNT_DETACH | UMOUNT_NOFOLLOW), f"unmounting {dst} inside")


NOT_MOUNTED = 3  # the exit code for a DST that is no mount point (nothing to do)


def main(argv: list[str]) -> int:
    try:
        if argv[0] == "mount":
            pid, src, dst, ro, idmap = argv[1:]
            mount(int(pid), src, dst, ro == "1", idmap == "1")
        else:
            umount(int(argv[1]), argv[2])
    except OSError as e:
        print(e.strerror or e, file=sys.stderr)
        return NOT_MOUNTED if argv[0] == "umount" and e.errno == errno.EINVAL else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
