"""lxcfs: /proc files (meminfo, cpuinfo, stat, loadavg, uptime, swaps) and
/sys/devices/system/cpu that show a container its own cgroup limits and load.

osctld runs its own lxcfs on ``<run_dir>/lxcfs`` (config ``lxcfs: own``), or
uses one already mounted somewhere (``lxcfs: /var/lib/lxcfs``, the distro's
lxcfs.service), or none (``lxcfs: off``). Containers get the files by LXC
bind-mount entries, rendered from what the mount offers.

lxcfs must outlive osctld: every running container holds bind mounts of its
files, and if the FUSE daemon behind them went away, reading /proc/meminfo
inside would fail (ENOTCONN) until the container restarts. lxcfs 5 stays in
the foreground, so osctld starts it through ``setsid --fork``: lxcfs runs in
a session of its own, its parent exits at once and it is re-parented to
init. It is no child of osctld, gets none of its signals (nor its
terminal's) and is not killed with it. A restarted osctld finds the FUSE mount still there and
uses it; it starts a new lxcfs only when nothing is mounted, and it stops
lxcfs only at ``osctl shutdown``, once no container runs. Under systemd, run osctld.service with KillMode=process (or
point ``lxcfs`` at the system's lxcfs) so that stopping the unit does not
kill lxcfs with the rest of its cgroup.
"""

from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path

from ..proc import stop_helper
from .cgroup.layout import unescape_mount_path

log = logging.getLogger(__name__)

OWN, OFF = "own", "off"
FSTYPE = "fuse.lxcfs"
PROC_FILES = ("cpuinfo", "diskstats", "loadavg", "meminfo", "slabinfo", "stat", "swaps", "uptime")
CPU_DIR = "sys/devices/system/cpu"
# -l: virtual load averages; --enable-cfs: CPUs in cpuinfo and stat follow the CPU quota.
ARGS = ("--enable-loadavg", "--enable-cfs")
START_TIMEOUT = 10.0


def mounted_at(path: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> bool:
    for line in mountinfo.read_text().splitlines():
        pre, _, post = line.partition(" - ")
        parts = pre.split()
        if len(parts) > 4 and unescape_mount_path(parts[4]) == str(path) and post.split()[:1] == [FSTYPE]:
            return True
    return False


class Lxcfs:
    def __init__(self, setting: str, run_dir: Path):
        self.setting = setting
        self.own = setting == OWN
        self.mountpoint = run_dir / "lxcfs" if self.own else Path(setting)
        self.pidfile = run_dir / "lxcfs.pid"
        self.logfile = run_dir / "lxcfs.log"
        # The files an lxcfs offers do not change while it runs: looked up
        # once per daemon (and per lxcfs it starts), not once per container start.
        self._lines: list[str] | None = None

    @property
    def enabled(self) -> bool:
        return self.setting != OFF

    @property
    def active(self) -> bool:
        return self.enabled and mounted_at(self.mountpoint)

    def ensure(self) -> None:
        """Use the lxcfs mounted at the mount point, or start one (``own``)."""
        self._lines = None
        if not self.enabled:
            return
        if mounted_at(self.mountpoint):
            if self.answers():
                log.info("using lxcfs at %s", self.mountpoint)
                return
            if not self.own:
                log.error("the lxcfs at %s does not answer: containers get no /proc views", self.mountpoint)
                return
            # Its lxcfs died (ENOTCONN): containers that hold its files need a
            # restart for the views to come back; new starts get a new lxcfs.
            log.error("lxcfs at %s is dead: mounting a new one", self.mountpoint)
            subprocess.run(["umount", "-l", str(self.mountpoint)], check=True)
        if not self.own:
            log.warning("no lxcfs mounted at %s: containers get the node's /proc files", self.mountpoint)
            return
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        with open(self.logfile, "ab") as log_f:
            subprocess.run(["setsid", "--fork", "lxcfs", *ARGS, "--pidfile", str(self.pidfile),
                            str(self.mountpoint)], stdin=subprocess.DEVNULL, stdout=log_f,
                           stderr=log_f, check=True, timeout=START_TIMEOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while not mounted_at(self.mountpoint):
            if time.monotonic() > deadline:
                raise RuntimeError(f"lxcfs did not mount {self.mountpoint}")
            time.sleep(0.05)
        log.info("started lxcfs (pid %s) on %s", self.pid(), self.mountpoint)

    def stop(self) -> None:
        """Take down the lxcfs osctld started (``own``), when no running
        container holds its files any more (the caller's word): unmounted, it
        exits. An lxcfs of the system's is left alone."""
        self._lines = None
        if not self.own or not mounted_at(self.mountpoint):
            return
        pid = self.pid()
        subprocess.run(["umount", str(self.mountpoint)], check=True, capture_output=True)
        if pid is not None:  # unmounted, it ends by itself
            stop_helper(pid, "lxcfs", False, START_TIMEOUT)
        self.pidfile.unlink(missing_ok=True)
        log.info("stopped lxcfs on %s", self.mountpoint)

    def answers(self) -> bool:
        try:
            (self.mountpoint / "proc" / "uptime").read_bytes()
            return True
        except OSError:
            return False

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def lxc_lines(self) -> list[str]:
        """Bind mounts of the lxcfs files over the container's own."""
        if self._lines is None:
            self._lines = self._find_lines() if self.active else []
        return self._lines

    def _find_lines(self) -> list[str]:
        mp = self.mountpoint

        def bind(rel: str) -> str:
            return f"lxc.mount.entry = {mp / rel} {rel} none bind,optional 0 0"

        lines = [bind(f"proc/{f}") for f in PROC_FILES if (mp / "proc" / f).exists()]
        cpu = mp / CPU_DIR
        if (cpu / "uevent").exists():
            lines.append(bind(CPU_DIR))
        elif cpu.is_dir():
            lines += [bind(f"{CPU_DIR}/{e.name}") for e in sorted(cpu.iterdir())]
        return lines

    def public(self) -> dict:
        return {"setting": self.setting, "mountpoint": str(self.mountpoint),
                "active": self.active, "pid": self.pid() if self.own else None}
