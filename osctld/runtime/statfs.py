"""Disk quotas in ``df``: which containers get the statfs proxy, and the
proxy process itself (started, reused, replaced; stopped only at ``osctl
shutdown``, once no container runs).

btrfs qgroup limits do not show in statfs(2), so a container with a disk
quota on a btrfs pool has LXC send its statfs and fstatfs calls through
seccomp user notification to ``statfs_proxy.py`` (see there). LXC fails an
intercepted call with ENOSYS while the proxy is unreachable, so the proxy
must outlive osctld, as lxcfs does: it is started through ``setsid --fork``
in a session of its own, re-parented to init, and a restarted osctld finds
it answering on its socket and uses it. A dead one is replaced: the new
proxy renames its socket over the old path and each container's monitor
reconnects on its next call. Under systemd, run osctld.service with
KillMode=process so that stopping the unit leaves the proxy running.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from osctl.protocol import CONFLICT, OsctlError

from ..proc import stop_helper

log = logging.getLogger(__name__)

SCRIPT = Path(__file__).resolve().parent / "statfs_proxy.py"
# The calls LXC sends to the proxy: notify rules in the container's seccomp profile.
NOTIFY = ("statfs", "fstatfs")
START_TIMEOUT = 10.0


def wants_proxy(backend: str, disk: int | None) -> bool:
    """btrfs answers statfs for the whole filesystem; zfs and dir need no help."""
    return backend == "btrfs" and disk is not None


class StatfsProxy:
    def __init__(self, run_dir: Path, python: str = sys.executable):
        self.socket = run_dir / "statfs-proxy.sock"
        self.pidfile = run_dir / "statfs-proxy.pid"
        self.logfile = run_dir / "statfs-proxy.log"
        self.python = python
        self._lock = threading.Lock()  # one start at a time: never two proxies
        self.stopped = False

    def answers(self) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
            try:
                s.connect(str(self.socket))
                return True
            except OSError:
                return False

    def ensure(self) -> None:
        """Use the proxy that answers, or start one."""
        with self._lock:
            self._ensure()

    def _ensure(self) -> None:
        if self.stopped:  # at shutdown: never a new one after it
            raise OsctlError(CONFLICT, "the node is shutting down: no statfs proxy")
        if self.answers():
            return
        with open(self.logfile, "ab") as log_f:
            # -I -S: stdlib only, no environment trusted (as the LXC hook).
            subprocess.run(["setsid", "--fork", self.python, "-I", "-S", str(SCRIPT),
                            str(self.socket), str(self.pidfile)],
                           stdin=subprocess.DEVNULL, stdout=log_f, stderr=log_f, check=True,
                           timeout=START_TIMEOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while not self.answers():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the statfs proxy does not answer on {self.socket}")
            time.sleep(0.05)
        log.info("started the statfs proxy (pid %s) on %s", self.pid(), self.socket)

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """End the proxy, when no running container sends it calls any more
        (the caller's word): at ``osctl shutdown``."""
        with self._lock:
            self.stopped = True
            pid = self.pid()
            if pid is not None:
                stop_helper(pid, SCRIPT.name, True, START_TIMEOUT)
                log.info("stopped the statfs proxy (pid %s)", pid)
            self.pidfile.unlink(missing_ok=True)
            self.socket.unlink(missing_ok=True)

    def lxc_lines(self, rootfs: Path) -> list[str]:
        """The proxy, and the rootfs as the cookie: the proxy learns from
        each call which subvolume's quota to show. (The ``NOTIFY`` rules go in
        the container's seccomp profile.)"""
        return [
            f"lxc.seccomp.notify.proxy = unix:{self.socket}",
            f"lxc.seccomp.notify.cookie = {rootfs}",
        ]

    def public(self) -> dict:
        return {"socket": str(self.socket), "pid": self.pid(), "active": self.answers()}
