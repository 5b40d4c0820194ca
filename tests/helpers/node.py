"""A test node: a network namespace of its own with its own osctld in it.

The host's network is never touched: the daemon, its containers and their
LXC command sockets all live in the namespace. Every node gets its own
state and run directories and its own id-range base, so nodes never share
a UID block or a /etc/subuid line.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import yaml

from osctl.client import Client
from osctl.protocol import OsctlError

from .wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
OSCTLD = str(VENV_BIN / "osctld")
OSCTL = str(VENV_BIN / "osctl")
WORK = Path(os.environ.get("OSCTLD_TEST_DIR", "/var/tmp/osctld-tests"))
# Built templates are shared by all test nodes of a run (and across runs),
# so debootstrap runs once, not once per test.
CACHE = Path(os.environ.get("OSCTLD_TEST_CACHE", "/var/cache/osctld-test"))
# The mirror a node's daemon gives the debian recipes (templates/debian/mirror.sh).
# The node cannot reach any mirror; a build it starts means a test asked for a
# template or image that is not cached, and this makes its error say how to fix it.
NO_MIRROR = "http://127.0.0.1:9/no-network-in-a-test-node:request-debian_template-or-debian_vm_image"
BLOCK = 524288
_seq = itertools.count()


def unique_id_base() -> int:
    """Bases 64 blocks apart, spread by pid and a counter, well below 2**32."""
    slot = (os.getpid() * 7 + next(_seq) * 131 + int(time.time())) % 100
    return 100_000_000 + slot * 64 * BLOCK


def kill_qemu(pidfile: Path) -> None:
    """Kill the QEMU of a pidfile, if that PID is still a QEMU of this node."""
    try:
        pid = int(pidfile.read_text())
        if str(pidfile.parent).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError):
        pass


class TestNode:
    def __init__(self, name: str | None = None, config: dict | None = None):
        self.name = name or f"ot{uuid.uuid4().hex[:8]}"
        self.dir = WORK / self.name
        self.state_dir = self.dir / "state"
        self.run_dir = self.dir / "run"
        self.socket = self.run_dir / "osctld.sock"
        self.log = self.dir / "osctld.log"
        self.id_base = unique_id_base()
        self.config = {
            "state_dir": str(self.state_dir),
            "run_dir": str(self.run_dir),
            "cache_dir": str(CACHE),
            "log_level": "debug",
            "default_pool": {"id_base": self.id_base},
            "cgroup_root": f"osctl-{self.name}",
            "cpu_interval": 0.5,  # a CPU % soon after a start
            **(config or {}),
        }
        self.proc: subprocess.Popen | None = None

    # --- life -------------------------------------------------------------------

    def make_netns(self) -> None:
        """Its directory and network namespace (once), before anything runs in them."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if not Path(f"/run/netns/{self.name}").exists():
            subprocess.run(["ip", "netns", "add", self.name], check=True)
            self.nsexec("ip", "link", "set", "lo", "up")

    def start(self, timeout: float = 20) -> "TestNode":
        self.make_netns()
        cfg = self.dir / "osctld.yml"
        cfg.write_text(yaml.safe_dump(self.config))
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [*self.netns_argv(), OSCTLD, "--config", str(cfg)],
            stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "DEBIAN_MIRROR": NO_MIRROR})
        logf.close()

        def answers() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"osctld exited {self.proc.returncode}:\n{self.log_tail()}")
            with Client(str(self.socket)) as c:
                return bool(c.call("daemon.status"))

        wait_for(answers, timeout, 0.05, lambda: f"osctld to come up:\n{self.log_tail()}",
                 ignore=(OSError, OsctlError))
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill this node's osctld, by its own PID only."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)

    def restart(self) -> "TestNode":
        self.kill(signal.SIGTERM)
        return self.start()

    def log_tail(self, n: int = 40) -> str:
        """The daemon's last ``n`` log lines, then those of every container's
        LXC log (monitor and lxc-attach errors land there) and of the statfs
        proxy: what a failed test needs to say why."""
        logs = [("osctld", self.log)]
        logs += [(f"LXC {p.stem}", p) for p in sorted(self.dir.glob("**/log/ct/*.log"))]
        logs.append(("statfs proxy", self.run_dir / "statfs-proxy.log"))
        out = []
        for what, path in logs:
            try:
                lines = path.read_text(errors="replace").splitlines()[-n:]
            except FileNotFoundError:
                continue
            out += [f"--- {what}: {path}", *lines]
        return "\n".join(out) or "(no log)"

    # --- talking to it ------------------------------------------------------------

    def client(self) -> Client:
        return Client(str(self.socket)).connect()

    def call(self, cmd: str, **args):
        with self.client() as c:
            return c.call(cmd, args)

    def osctl(self, *args: str, check: bool = True, input: str | None = None,
              timeout: float = 900) -> subprocess.CompletedProcess:
        p = subprocess.run([OSCTL, "--socket", str(self.socket), *args], input=input,
                           capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"osctl {' '.join(args)} exited {p.returncode}:\n"
                                 f"{p.stdout}\n{p.stderr}\n--- daemon log:\n{self.log_tail()}")
        return p

    def osctl_json(self, *args: str):
        import json

        return json.loads(self.osctl("-j", *args).stdout)

    def netns_argv(self) -> list[str]:
        """Enter only the node's network namespace. Unlike ``ip netns exec``,
        which also makes a mount namespace with a fresh /sys, this keeps the
        host's /sys/fs/cgroup in view: LXC needs it to put containers in
        cgroups (limits, the devices cgroup), and mounts the daemon makes
        (lxcfs) stay visible to the next daemon of the node."""
        return ["nsenter", f"--net=/run/netns/{self.name}", "--"]

    def nsexec(self, *argv: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], check=check,
                              capture_output=True, text=True, **kw)

    def lxc(self, tool: str, pool: str, ct: str, *args: str, check: bool = True):
        """Run one of LXC's own tools on a container of this node, in its namespace."""
        return subprocess.run([*self.netns_argv(), tool, "-n", ct, "-P", str(self.run_dir / "lxc" / pool),
                               *args], check=check, capture_output=True, text=True)

    def exec_raw(self, ct: str, *argv: str, pool: str = "default") -> str:
        """Run a command inside with lxc-attach, no daemon needed; its stdout."""
        return self.lxc("lxc-attach", pool, ct, "--clear-env", "--", *argv).stdout

    def exec(self, ct: str, *argv: str) -> subprocess.CompletedProcess:
        return self.osctl("ct", "exec", ct, "--", *argv, check=False)

    def subid_lines(self, kind: str = "subuid") -> list[str]:
        """This node's lines of /etc/subuid or /etc/subgid: those in its 64 blocks
        (other nodes, of this run or another, change the files meanwhile)."""
        ours = range(self.id_base, self.id_base + 64 * BLOCK)
        out = []
        for line in Path(f"/etc/{kind}").read_text().splitlines():
            parts = line.split(":")
            if len(parts) == 3 and parts[0] == "root" and parts[1].isdigit() and int(parts[1]) in ours:
                out.append(line)
        return out

    # --- clean-up ---------------------------------------------------------------

    def lxcfs_pid(self) -> int | None:
        """The PID of the lxcfs this node's osctld started, if it still runs."""
        try:
            pid = int((self.run_dir / "lxcfs.pid").read_text().split()[0])
            if Path(f"/proc/{pid}/comm").read_text().strip() == "lxcfs":
                return pid
        except (OSError, ValueError, IndexError):
            pass
        return None

    def stop_lxcfs(self) -> None:
        """osctld never stops its lxcfs (containers hold its mounts): the node's end does."""
        pid = self.lxcfs_pid()
        if pid is not None:
            subprocess.run(["umount", "-l", str(self.run_dir / "lxcfs")], capture_output=True)
            os.kill(pid, signal.SIGTERM)

    def statfs_proxy_pid(self) -> int | None:
        """The PID of the statfs proxy this node's osctld started, if it still runs."""
        try:
            pid = int((self.run_dir / "statfs-proxy.pid").read_text())
            if b"statfs_proxy.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except (OSError, ValueError):
            pass
        return None

    def cleanup(self) -> None:
        """Leave nothing: containers, mounts, subuid lines, the namespace, files."""
        if self.proc and self.proc.poll() is None:
            try:
                with self.client() as c:
                    for p in c.call("pool.ls"):
                        c.call("pool.export", {"name": p["name"], "force": True, "timeout": 5})
            except Exception as e:
                print(f"cleanup of {self.name}: export failed: {e}", file=sys.stderr)
            self.kill(signal.SIGTERM)
        for pidfile in self.run_dir.glob("vm/*/*/qemu.pid"):  # VMs the export did not get to
            kill_qemu(pidfile)
        lxc_dir = self.run_dir / "lxc"
        if lxc_dir.is_dir():  # anything the export did not get to
            for pool_dir in lxc_dir.iterdir():
                for ct_dir in pool_dir.iterdir():
                    self.lxc("lxc-stop", pool_dir.name, ct_dir.name, "-k", check=False)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        self.stop_lxcfs()
        pid = self.statfs_proxy_pid()  # osctld never stops it either
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
        from osctld.runtime.cgroup import layout as cgroups  # the daemon's tree sits below our own cgroups

        cgroups.remove(cgroups.detect(), self.config["cgroup_root"])
        owned = self.state_dir / "subid-owned.yml"
        if owned.exists():  # the daemon died before it could remove its lines
            from osctld.subid import SubIds

            SubIds(owned).sync([])
        for top in (Path("/run/lxc"), Path("/run/lxc/lock")):  # LXC's run files of our lxcpaths
            shutil.rmtree(top / str(self.dir).lstrip("/"), ignore_errors=True)
        if self.dir.exists():  # last: the record above lives in it
            mounts = [ln.split()[1] for ln in Path("/proc/mounts").read_text().splitlines()
                      if ln.split()[1].startswith(str(self.dir))]
            for m in sorted(mounts, key=len, reverse=True):
                subprocess.run(["umount", "-l", m], capture_output=True)
            shutil.rmtree(self.dir, ignore_errors=True)
