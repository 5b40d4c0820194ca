"""The statfs proxy: ``df /`` inside a container shows its btrfs disk quota.

btrfs answers statfs(2) for the whole filesystem and knows nothing of
qgroups, so without help ``df /`` inside shows the pool's size. Containers
with a quota on a btrfs pool get a seccomp profile that turns ``statfs`` and
``fstatfs`` into user notifications; LXC's monitor forwards each one to this
process (``lxc.seccomp.notify.proxy``) and answers the caller with what we
reply. When the call lands on the container's rootfs subvolume (same f_fsid),
we run the statfs, replace the block counts with the qgroup's limit and
referenced bytes, write the struct into the caller's memory and answer 0.
Everything else gets SECCOMP_USER_NOTIF_FLAG_CONTINUE: the kernel then runs
the caller's own call, unchanged, in the caller's own view.

Protocol (LXC 5 src/lxc/seccomp.c, seccomp_notify_handler): one SOCK_SEQPACKET
connection per container monitor; each message is a seccomp_notify_proxy_msg
header, the kernel's seccomp_notif, a seccomp_notif_resp and the cookie (here:
the rootfs path on the host), with three descriptors: the caller's /proc/PID
directory, its /proc/PID/mem, and the seccomp listener. The reply is the
header, the notif and our filled-in resp, without the cookie.

The caller's paths are never looked up in the host's view: absolute ones
through openat2(RESOLVE_IN_ROOT) from the caller's /proc/PID/root, relative
ones beneath its cwd, and with RESOLVE_NO_XDEV, so that a lookup never leaves
the btrfs mount it starts on: nothing here touches a filesystem the tenant
serves (FUSE), which could stall us. Whatever cannot be proven to be the
rootfs is passed on with CONTINUE, and the kernel gives the real answer.

LXC fails an intercepted call with ENOSYS when it cannot reach the proxy
(it reconnects once per call first), so this runs as its own long-lived
process, started by osctld with setsid and never stopped by it (statfs.py).
It imports nothing from osctld: ``python -I -S statfs_proxy.py SOCKET PIDFILE``.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import struct
import sys
import threading
import traceback
import uuid

# struct seccomp_notify_proxy_msg: __reserved, monitor_pid, init_pid,
# sizes {seccomp_notif, seccomp_notif_resp, seccomp_data}, cookie_len.
PROXY_MSG = struct.Struct("@QiiHHHQ")
# struct seccomp_notif: id, pid, flags, then seccomp_data: nr, arch, ip, args[6].
NOTIF = struct.Struct("=QIIiIQ6Q")
# struct seccomp_notif_resp: id, val, error (a negative errno), flags.
RESP = struct.Struct("=QqiI")
FLAG_CONTINUE = 1  # SECCOMP_USER_NOTIF_FLAG_CONTINUE
NOTIF_ID_VALID = 0x40082102  # SECCOMP_IOCTL_NOTIF_ID_VALID: _IOW('!', 2, __u64)

AUDIT_ARCH_X86_64 = 0xC000003E
SYS_STATFS, SYS_FSTATFS, SYS_OPENAT2 = 137, 138, 437

# struct statfs on x86_64: f_type, f_bsize, f_blocks, f_bfree, f_bavail,
# f_files, f_ffree, f_fsid (2 x int), f_namelen, f_frsize, f_flags, f_spare[4].
STATFS = struct.Struct("=qqQQQQQ8sqqq32s")
PATH_MAX = 4096

RESOLVE_NO_XDEV, RESOLVE_NO_MAGICLINKS, RESOLVE_BENEATH, RESOLVE_IN_ROOT = 0x01, 0x02, 0x08, 0x10
BTRFS_IOC_FS_INFO = 0x8400941F  # _IOR(0x94, 31, struct btrfs_ioctl_fs_info_args[1024])
BTRFS_IOC_INO_LOOKUP = 0xD0009412  # _IOWR(0x94, 18, struct btrfs_ioctl_ino_lookup_args[4096])
BTRFS_FIRST_FREE_OBJECTID = 256

libc = ctypes.CDLL(None, use_errno=True)


class OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path: bytes, resolve: int) -> int:
    how = OpenHow(os.O_PATH | os.O_CLOEXEC, 0, resolve)
    fd = libc.syscall(SYS_OPENAT2, dirfd, path, ctypes.byref(how), ctypes.sizeof(how))
    if fd < 0:
        raise OSError(ctypes.get_errno(), "openat2")
    return fd


def fstatfs(fd: int) -> bytes:
    buf = ctypes.create_string_buffer(STATFS.size)
    if libc.fstatfs(fd, buf) != 0:
        raise OSError(ctypes.get_errno(), "fstatfs")
    return buf.raw


def mnt_id(fd: int) -> int:
    """The mount an fd of ours is on, from procfs: no call into its filesystem."""
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("mnt_id:"):
                return int(line.split()[1])
    raise OSError(errno.ENOENT, "no mnt_id")


def fstype(fd_pid: int, mount: int) -> str | None:
    """The filesystem type of mount ``mount`` in the caller's mount namespace."""
    fd = os.open("mountinfo", os.O_RDONLY | os.O_CLOEXEC, dir_fd=fd_pid)
    with open(fd) as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            if pre.split(" ", 1)[0] == str(mount):
                return post.split(" ", 1)[0]
    return None


class Quota:
    """A rootfs subvolume's identity (f_fsid) and its qgroup, read fresh each
    call from sysfs, so that a quota grown live shows at once."""

    def __init__(self, rootfs: str):
        fd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self.fsid = STATFS.unpack(fstatfs(fd))[7]
            info = bytearray(1024)
            fcntl.ioctl(fd, BTRFS_IOC_FS_INFO, info)
            lookup = bytearray(4096)
            struct.pack_into("=QQ", lookup, 0, 0, BTRFS_FIRST_FREE_OBJECTID)
            fcntl.ioctl(fd, BTRFS_IOC_INO_LOOKUP, lookup)
        finally:
            os.close(fd)
        subvol = struct.unpack_from("=Q", lookup)[0]
        self.dir = f"/sys/fs/btrfs/{uuid.UUID(bytes=bytes(info[16:32]))}/qgroups/0_{subvol}"

    def read(self, name: str) -> int:
        with open(f"{self.dir}/{name}") as f:
            return int(f.read())

    def apply(self, raw: bytes) -> bytes:
        """``raw`` with the blocks of the quota: its limit, less what it refers to."""
        st = list(STATFS.unpack(raw))
        bsize = st[9] or st[1]  # f_frsize: the unit of the block counts
        limit, used = self.read("max_referenced"), self.read("referenced")
        if not limit:
            return raw
        free = max(limit - used, 0) // bsize
        st[2] = limit // bsize
        st[3] = min(free, st[3])
        st[4] = min(free, st[4])
        return STATFS.pack(*st)


def read_path(fd_mem: int, addr: int) -> bytes | None:
    """The NUL-terminated path at ``addr`` in the caller, or None."""
    data = os.pread(fd_mem, PATH_MAX, addr)  # short at the end of a mapping
    end = data.find(b"\0")
    return data[:end] if end >= 0 else None


def open_target(nr: int, arg: int, fd_pid: int, fd_mem: int) -> int | None:
    """An O_PATH fd on what the call names, if that is on a btrfs mount."""
    if nr == SYS_FSTATFS:
        fd = os.open(f"fd/{arg}", os.O_PATH | os.O_CLOEXEC, dir_fd=fd_pid)
        try:
            on_btrfs = fstype(fd_pid, mnt_id(fd)) == "btrfs"
        except BaseException:
            os.close(fd)
            raise
        if on_btrfs:
            return fd
        os.close(fd)
        return None
    path = read_path(fd_mem, arg)
    if not path:
        return None
    absolute = path.startswith(b"/")
    start = os.open("root" if absolute else "cwd", os.O_PATH | os.O_CLOEXEC, dir_fd=fd_pid)
    try:
        # The lookup stays on the mount it starts on (NO_XDEV): check that
        # mount before the lookup touches its filesystem.
        if fstype(fd_pid, mnt_id(start)) != "btrfs":
            return None
        scope = RESOLVE_IN_ROOT if absolute else RESOLVE_BENEATH
        return openat2(start, path, scope | RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS)
    finally:
        os.close(start)


def id_valid(notify_fd: int, req_id: int) -> bool:
    """The caller still waits in this call: the fds we opened are its."""
    try:
        fcntl.ioctl(notify_fd, NOTIF_ID_VALID, struct.pack("=Q", req_id))
        return True
    except OSError:
        return False


def answer(req: tuple, cookie: str, fd_pid: int, fd_mem: int, notify_fd: int) -> tuple[int, int, int]:
    """(val, error, flags) for one intercepted call."""
    req_id, _pid, _flags, nr, arch, _ip, *args = req
    if arch != AUDIT_ARCH_X86_64 or nr not in (SYS_STATFS, SYS_FSTATFS):
        return 0, 0, FLAG_CONTINUE
    try:
        quota = Quota(cookie)
        target = open_target(nr, args[0], fd_pid, fd_mem)
    except (OSError, OverflowError, ValueError):
        return 0, 0, FLAG_CONTINUE
    if target is None:
        return 0, 0, FLAG_CONTINUE
    try:
        raw = fstatfs(target)
        if STATFS.unpack(raw)[7] != quota.fsid or not id_valid(notify_fd, req_id):
            return 0, 0, FLAG_CONTINUE
        raw = quota.apply(raw)
    except OSError:
        return 0, 0, FLAG_CONTINUE
    finally:
        os.close(target)
    try:
        os.pwrite(fd_mem, raw, args[1])
    except (OSError, OverflowError):
        return 0, -errno.EFAULT, 0
    return 0, 0, 0


def reply(data: bytes, fds: list[int]) -> bytes | None:
    """The answer to one message from LXC, or None for a malformed one."""
    if len(data) < PROXY_MSG.size:
        return None
    _res, _mon, _init, n_notif, n_resp, _n_data, cookie_len = PROXY_MSG.unpack_from(data)
    base = PROXY_MSG.size + n_notif
    if n_notif < NOTIF.size or n_resp < RESP.size or len(data) != base + n_resp + cookie_len \
            or len(fds) != 3:
        return None
    req = NOTIF.unpack_from(data, PROXY_MSG.size)
    cookie = data[base + n_resp:].decode(errors="replace")
    try:
        val, error, flags = answer(req, cookie, *fds)
    except Exception:  # noqa: BLE001 - a defect of ours must not fail the tenant's call
        # Ending the connection here would make LXC answer this call with
        # ENOSYS, and its monitor then refuses lxc-attach's listeners until
        # it reconnects: the kernel's own answer is always the safe one.
        traceback.print_exc(file=sys.stderr)
        val, error, flags = 0, 0, FLAG_CONTINUE
    return data[:base] + RESP.pack(req[0], val, error, flags) + bytes(n_resp - RESP.size)


def serve_connection(conn: socket.socket) -> None:
    """One container monitor: requests one at a time, until it hangs up."""
    with conn:
        while True:
            try:
                data, fds, _flags, _addr = socket.recv_fds(conn, 65536, 3)
            except OSError:
                return
            if not data:
                return
            try:
                out = reply(data, fds)
            finally:
                for fd in fds:
                    os.close(fd)
            if out is None:
                return
            try:
                conn.send(out)
            except OSError:
                return


def main(argv: list[str]) -> int:
    sock_path, pidfile = argv[1], argv[2]
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    tmp = f"{sock_path}.{os.getpid()}"
    os.umask(0o077)
    srv.bind(tmp)
    srv.listen(64)
    os.rename(tmp, sock_path)  # atomically replaces a dead proxy's socket
    with open(f"{pidfile}.tmp", "w") as f:
        f.write(f"{os.getpid()}\n")
    os.rename(f"{pidfile}.tmp", pidfile)
    # Never the OOM killer's choice: while it is gone, statfs fails inside.
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("-1000")
    except OSError as e:  # no CAP_SYS_RESOURCE (a confined test host)
        print(f"statfs proxy: oom_score_adj stays: {e}", file=sys.stderr, flush=True)
    print(f"statfs proxy {os.getpid()} on {sock_path}", file=sys.stderr, flush=True)
    while True:
        conn, _ = srv.accept()
        # A thread per monitor: a caller that stalls its own request (its
        # path in memory that faults slowly) holds up only its own container.
        threading.Thread(target=serve_connection, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
