"""The node VM: a whole osctld node in a QEMU VM (tcg), for what this host
cannot test: a real ZFS module (the host's kernel loads no modules) and a
unified cgroup hierarchy (systemd in the VM mounts cgroup v2 only; the host
is hybrid).

The image (tests/nodevm/image): Debian's cloud kernel and a debootstrap root
with LXC, lxcfs and OpenZFS from bookworm-backports, and the zfs and spl
modules compiled on this host for exactly that kernel. Both are built once
into the test cache (OSCTLD_TEST_CACHE/nodevm), keyed by the kernel's and
OpenZFS's package versions and a hash of the recipes.

Each VM boots from a throw-away qcow2 layer over the image, with a second,
empty disk for a zpool (/dev/vdb, /dev/disk/by-id/virtio-zpool) and, over
virtiofs (the cloud kernel has no 9p; QEMU's virtiofsd, one per
directory), the worktree, the test cache and the python the .venv was made with,
each at the same path as here: the tests' .venv (osctld, osctl) runs as is
inside.

The channel: a virtio serial port (QEMU ``virtserialport`` named
``nodevm``, a Unix socket on this side). In the VM, nodevm-init mounts the
shares and runs tests/nodevm/image/agent.py (read from the shared worktree
at boot, so changing it rebuilds no image) on /dev/virtio-ports/nodevm,
under the tests' .venv python. Each request is one JSON line and its answer
another (see agent.py): ``run`` a shell command (exit code, stdout,
stderr); ``call`` one osctld request, which the long-running agent makes
with the project's client (osctl.client) in milliseconds, where an
``osctl`` process takes 2-3 s to start under tcg; ``run_all`` and
``call_all`` several in one round trip. ``osctl`` (the real CLI) is for
what tests of the CLI's output need. No network, no ssh keys, nothing
listening in the VM but the port; requests run one at a time. The kernel's
console goes to ``console.log`` in the VM's directory.

One boot serves every test module (tests/nodevm/conftest.py): ``reset``
puts the VM back as it booted between modules (see its docstring for what
a module may leave and what it must not).
"""

from __future__ import annotations

import base64
import hashlib
import json
from json import loads
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

from osctl.protocol import OsctlError

from .node import CACHE, ROOT, VENV_BIN, WORK
from .templates import build_lock
from .wait import wait_for

IMAGE_RECIPE = ROOT / "tests" / "nodevm" / "image"
ZFS_VERSION = "2.3.2-2~bpo12+2"  # bookworm-backports: idmapped mounts on ZFS (2.2 and later)
VIRTIOFSD = "/usr/lib/qemu/virtiofsd"  # qemu-system-common
GUEST_OSCTLD_DIR = Path("/var/lib/nodevm-osctld")
GUEST_RUN_DIR = "/run/osctld"
GUEST_SOCKET = f"{GUEST_RUN_DIR}/osctld.sock"
BOOT_COPY = "/run/nodevm-boot"  # what the VM's /etc/subuid and /etc/subgid were at boot
GUEST_UNIT = "osctld-test"


def cloud_kernel() -> tuple[str, str]:
    """The cloud kernel debootstrap installs (bookworm's main suite, as
    templates/debian/vm-build asks for it): (ABI, package version), e.g.
    ("6.1.0-50-cloud-amd64", "6.1.176-1"), from this host's apt lists."""
    lines = subprocess.run(["apt-cache", "madison", "linux-image-cloud-amd64"], check=True,
                           capture_output=True, text=True).stdout.splitlines()
    for line in lines:
        _, version, where = (f.strip() for f in line.split("|"))
        if " bookworm/main " in f" {where.split()[-3]} ":
            break
    else:
        raise RuntimeError(f"no linux-image-cloud-amd64 of bookworm/main in apt's lists:\n{lines}")
    depends = subprocess.run(["apt-cache", "show", f"linux-image-cloud-amd64={version}"], check=True,
                             capture_output=True, text=True).stdout
    dep = next(ln for ln in depends.splitlines() if ln.startswith("Depends:"))
    abi = dep.split("linux-image-", 1)[1].split()[0]
    return abi, version


def _recipe_hash(*files: Path) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def cache_paths(kabi: str, kver: str) -> tuple[Path, Path]:
    """Where the modules and the image of kernel ``kabi`` (package version
    ``kver``) are cached: named by the versions and their recipes' hash."""
    debian = ROOT / "templates" / "debian"
    modules = CACHE / "nodevm" / f"zfs-{ZFS_VERSION}-{kabi}-{_recipe_hash(IMAGE_RECIPE / 'build-zfs')}"
    key = _recipe_hash(*(IMAGE_RECIPE / f for f in ("build-image", "nodevm-init", "build-zfs")),
                       *(debian / f for f in ("vm-build", "mirror.sh", "osctld-net")))
    return modules, CACHE / "nodevm" / f"image-{kver}-{ZFS_VERSION}-{key}"


def ensure_image(times: dict[str, float] | None = None) -> Path:
    """The node VM image directory (vmlinuz, initrd.img, root.img, kabi),
    built first if it is not cached; its parts' build times go to ``times``.
    The zfs modules compile while the root filesystem downloads."""
    times = {} if times is None else times
    kabi, kver = cloud_kernel()
    modules, image = cache_paths(kabi, kver)
    with build_lock(f"nodevm-{kver}-{ZFS_VERSION}"):
        if (image / "root.img").is_file():
            return image
        jobs = []
        t0 = time.monotonic()
        if not (modules / "zfs.ko").is_file():
            jobs.append(("zfs module build", subprocess.Popen(
                [str(IMAGE_RECIPE / "build-zfs"), str(modules), kabi, kver, ZFS_VERSION])))
        jobs.append(("node VM rootfs build", subprocess.Popen(
            [str(IMAGE_RECIPE / "build-image"), "rootfs", str(image), ZFS_VERSION])))
        for what, p in jobs:
            if p.wait() != 0:
                for _, other in jobs:
                    other.kill()
                raise RuntimeError(f"{what} failed (exit {p.returncode}); its output is above")
            times[what] = time.monotonic() - t0
        got = (image / "kabi").read_text().strip()
        if got != kabi:
            raise RuntimeError(f"the image's kernel is {got}, the modules were built for {kabi}")
        subprocess.run([str(IMAGE_RECIPE / "build-image"), "finish", str(image), str(modules)], check=True)
        times["node VM image total"] = time.monotonic() - t0
    return image


@dataclass
class Result:
    """What a command in the VM did, as subprocess.CompletedProcess says it."""

    cmd: str
    rc: int
    stdout: str
    stderr: str

    @property
    def returncode(self) -> int:
        return self.rc

    def check(self) -> "Result":
        if self.rc != 0:
            raise AssertionError(f"in the node VM: {self.cmd!r} exited {self.rc}:\n{self.stdout}\n{self.stderr}")
        return self


class NodeVM:
    """One booted node VM (see the module's docstring)."""

    zpool_disk = "/dev/disk/by-id/virtio-zpool"  # the second disk, empty at boot

    def __init__(self, image: Path, memory: str = "3G", cpus: int = 2, zpool_disk: str = "2G"):
        self.image = image
        self.memory, self.cpus, self.zpool_disk_size = memory, cpus, zpool_disk
        self.dir = WORK / f"nodevm-{uuid.uuid4().hex[:8]}"
        self.console = self.dir / "console.log"
        self.agent_socket = self.dir / "agent.sock"
        self.venv_bin = VENV_BIN
        self.proc: subprocess.Popen | None = None
        self.fsd: list[subprocess.Popen] = []
        self._sock: socket.socket | None = None
        self._rx = b""
        self._seq = 0
        self._lock = threading.Lock()
        self.osctld_config: dict = {}
        self.booted = False
        self.boot_seconds = 0.0

    # --- life -----------------------------------------------------------------

    def shares(self) -> dict[str, Path]:
        """9p tag -> host directory, mounted at the same path in the VM."""
        shares = {"tree": ROOT, "cache": CACHE}
        base = Path(sys.base_prefix)
        if base != Path("/usr"):  # a python of its own (pyenv...): the .venv links to it
            shares["python"] = base
        return shares

    def qemu_argv(self) -> list[str]:
        shares = self.shares()
        cmdline = [(self.image / "cmdline").read_text().strip() if (self.image / "cmdline").exists()
                   else "root=/dev/vda rw console=ttyS0",
                   "systemd.unified_cgroup_hierarchy=1", "zfs.zfs_arc_max=268435456",
                   *(f"nodevm.share={tag}:{path}" for tag, path in shares.items()),
                   f"nodevm.agent={IMAGE_RECIPE / 'agent.py'}", f"nodevm.python={self.venv_bin / 'python'}"]
        argv = ["qemu-system-x86_64", "-machine", "pc", "-accel", "tcg", "-smp", str(self.cpus),
                "-m", self.memory, "-nodefaults", "-no-user-config", "-display", "none", "-nic", "none",
                "-kernel", str(self.image / "vmlinuz"), "-initrd", str(self.image / "initrd.img"),
                "-append", " ".join(cmdline),
                # In this order: the root disk is vda, the zpool's vdb.
                "-drive", f"file={self.dir / 'root.qcow2'},if=none,format=qcow2,id=root",
                "-device", "virtio-blk-pci,drive=root",
                "-drive", f"file={self.dir / 'zpool.img'},if=none,format=raw,id=zpool",
                "-device", "virtio-blk-pci,drive=zpool,serial=zpool",
                "-serial", f"file:{self.console}",
                "-device", "virtio-serial-pci",
                "-chardev", f"socket,id=agent,path={self.agent_socket},server=on,wait=off",
                "-device", "virtserialport,chardev=agent,name=nodevm",
                "-pidfile", str(self.dir / "qemu.pid")]
        # virtiofs (the cloud kernel has no 9p): guest RAM shared with virtiofsd.
        argv += ["-object", f"memory-backend-memfd,id=mem,size={self.memory},share=on",
                 "-numa", "node,memdev=mem"]
        for tag in shares:
            argv += ["-chardev", f"socket,id=fs-{tag},path={self.dir / f'fs-{tag}.sock'}",
                     "-device", f"vhost-user-fs-pci,chardev=fs-{tag},tag={tag}"]
        return argv

    def start_virtiofsd(self) -> None:
        """One virtiofsd per share (QEMU's; it ends when QEMU lets go)."""
        for tag, path in self.shares().items():
            sock = self.dir / f"fs-{tag}.sock"
            self.fsd.append(subprocess.Popen(
                [VIRTIOFSD, f"--socket-path={sock}", "-o", f"source={path}", "-o", "cache=auto",
                 "-o", "sandbox=chroot", "-o", "log_level=warn"],
                stdin=subprocess.DEVNULL, stdout=open(self.dir / f"virtiofsd-{tag}.log", "wb"),
                stderr=subprocess.STDOUT))
            wait_for(sock.exists, 10, 0.05, f"virtiofsd's socket {sock}")

    def start(self, timeout: float = 600) -> "NodeVM":
        """Boot, and wait until systemd has finished starting the system."""
        self.dir.mkdir(parents=True)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw",
                        "-b", str(self.image / "root.img"), str(self.dir / "root.qcow2")], check=True)
        subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(self.dir / "zpool.img"),
                        self.zpool_disk_size], check=True)
        self.start_virtiofsd()
        self.proc = subprocess.Popen(self.qemu_argv(), stdin=subprocess.DEVNULL,
                                     stdout=open(self.dir / "qemu.log", "wb"), stderr=subprocess.STDOUT)
        t0 = time.monotonic()
        wait_for(self._connect, timeout, 0.2, lambda: f"the node VM's agent:\n{self.console_tail()}",
                 ignore=(OSError,))
        # Boot is over when systemd says so ("degraded" counts: a unit that
        # failed is the test's business, shown by `systemctl --failed`).
        self.run("systemctl is-system-running --wait", timeout=max(10, timeout - (time.monotonic() - t0)))
        # What reset() puts back: the ID files osctld edits.
        self.run(f"mkdir -p {BOOT_COPY} && cp -a /etc/subuid /etc/subgid {BOOT_COPY}/", check=True)
        self.boot_seconds = time.monotonic() - t0
        self.booted = True
        return self

    def _connect(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"QEMU exited {self.proc.returncode}:\n"
                               f"{(self.dir / 'qemu.log').read_text(errors='replace')}\n{self.console_tail()}")
        if self._sock is None:
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(self.agent_socket))
            self._sock = s
        # The guest's port opens late in its boot: until the agent answers,
        # ask again (an answer to an earlier ping is skipped by its id).
        try:
            return self._request({"cmd": "true", "timeout": 5}, wait=3)["rc"] == 0
        except TimeoutError:
            return False

    def _request(self, req: dict, wait: float) -> dict:
        """Send one request to the agent and return its answer (agent.py)."""
        with self._lock:
            assert self._sock is not None
            self._seq += 1
            rid = self._seq
            self._sock.sendall(json.dumps({"id": rid, **req}).encode() + b"\n")
            deadline = time.monotonic() + wait
            while True:
                while b"\n" in self._rx:
                    line, self._rx = self._rx.split(b"\n", 1)
                    ans = json.loads(line)
                    if ans["id"] == rid:
                        return ans
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no answer from the node VM's agent to {req} in {wait:.0f} s")
                self._sock.settimeout(left)
                try:
                    chunk = self._sock.recv(1 << 16)
                except socket.timeout:
                    continue
                if not chunk:
                    raise ConnectionError(f"the node VM's agent went away:\n{self.console_tail()}")
                self._rx += chunk

    def console_tail(self, n: int = 40) -> str:
        try:
            lines = self.console.read_text(errors="replace").splitlines()[-n:]
        except FileNotFoundError:
            return "(no console log)"
        return "--- node VM console:\n" + "\n".join(lines)

    def shutdown(self, timeout: float = 90) -> None:
        """Power off cleanly (zpools exported by the VM's systemd); kill
        QEMU (ours, by its PID) if it does not end; remove the VM's files."""
        if self.booted:
            self.stop_osctld()
        if self.proc is not None and self.proc.poll() is None:
            try:
                self._request({"cmd": "systemctl --no-block poweroff", "timeout": 10}, wait=15)
            except (OSError, TimeoutError, AssertionError):
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"node VM: no poweroff in {timeout} s, killing QEMU\n{self.console_tail()}",
                      file=sys.stderr)
                self.proc.kill()
                self.proc.wait()
        for fsd in self.fsd:
            try:
                fsd.wait(10)
            except subprocess.TimeoutExpired:
                fsd.kill()
                fsd.wait()
        if self._sock is not None:
            self._sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- talking to it ----------------------------------------------------------

    def run(self, cmd: str, timeout: float = 120, check: bool = False) -> Result:
        """Run a shell command in the VM (as root): its exit code and output."""
        ans = self._request({"cmd": cmd, "timeout": timeout}, wait=timeout + 30)
        res = Result(cmd, ans["rc"], ans["stdout"], ans["stderr"])
        return res.check() if check else res

    def run_all(self, *cmds: str, timeout: float = 120, check: bool = False) -> list[Result]:
        """Several shell commands, one after the other, in one round trip
        (``timeout`` each): their results, in order. All run, whatever the
        exit codes; ``check`` then raises for the first that failed."""
        ans = self._request({"batch": [{"cmd": c, "timeout": timeout} for c in cmds]},
                            wait=timeout * len(cmds) + 30)
        res = [Result(c, a["rc"], a["stdout"], a["stderr"]) for c, a in zip(cmds, ans["results"])]
        if check:
            for r in res:
                r.check()
        return res

    def write_file(self, path: str, data: str | bytes) -> None:
        raw = data.encode() if isinstance(data, str) else data
        b64 = base64.b64encode(raw).decode()
        self.run(f"mkdir -p {shlex.quote(str(Path(path).parent))} && "
                 f"echo {b64} | base64 -d > {shlex.quote(path)}", check=True)

    def call(self, verb: str, args: dict | None = None, *, timeout: float = 300):
        """One request to the VM's osctld, as ``osctl`` would send it (the
        wire names of osctl/cli; sizes as strings, "64M"), made by the agent:
        its result, or the daemon's OsctlError raised (``.code``,
        ``.message``)."""
        return self._answer(self._request(self._call_req(verb, args, timeout), wait=timeout + 30))

    def call_all(self, *calls: tuple[str, dict | None], timeout: float = 300) -> list:
        """Several requests (verb, args), one after the other, in one round
        trip: their results; the first error is raised, after all ran."""
        ans = self._request({"batch": [self._call_req(v, a, timeout) for v, a in calls]},
                            wait=timeout * len(calls) + 30)
        return [self._answer(a) for a in ans["results"]]

    @staticmethod
    def _call_req(verb: str, args: dict | None, timeout: float) -> dict:
        return {"call": verb, "args": args or {}, "socket": GUEST_SOCKET, "timeout": timeout}

    @staticmethod
    def _answer(ans: dict):
        if "error" in ans:
            raise OsctlError.from_wire(ans["error"])
        return ans["ok"]

    def exec(self, ct: str, script: str, timeout: float = 120) -> Result:
        """``sh -c script`` in running container ``ct`` ([POOL:]ID), as
        ``osctl ct exec`` runs it (ct.exec, lxc-attach), its output captured
        by osctld: exit code, stdout, stderr."""
        res = self.call("ct.exec", {"id": ct, "argv": ["sh", "-c", script]},
                        timeout=timeout + 30)
        return Result(f"{ct}: {script}", res["exit_code"], res["stdout"], res["stderr"])

    def osctl(self, *args: str, json: bool = False, check: bool = True, timeout: float = 300):
        """The project's osctl in the VM, talking to the VM's osctld: its
        Result, or with ``json`` what ``osctl -j`` printed, parsed. A new
        python each time (2-3 s under tcg): for tests of the CLI itself;
        everything else ``call``."""
        argv = [str(self.venv_bin / "osctl"), "--socket", GUEST_SOCKET, *(["-j"] if json else []), *args]
        res = self.run(shlex.join(argv), timeout=timeout)
        if check and res.rc != 0:
            raise AssertionError(f"osctl {' '.join(args)} in the node VM exited {res.rc}:\n"
                                 f"{res.stdout}\n{res.stderr}\n{self.log_tail()}")
        return loads(res.stdout) if json and res.rc == 0 else res

    def start_osctld(self, config: dict | None = None, timeout: float = 120) -> None:
        """Start the VM's osctld (the tree's, from the .venv) with ``config``
        over a test default (its dirs on the VM's disk, the shared cache)."""
        self.osctld_config = {
            "state_dir": str(GUEST_OSCTLD_DIR / "state"),
            "run_dir": GUEST_RUN_DIR,
            "cache_dir": str(CACHE),
            "log_level": "debug",
            **(config or {}),
        }
        cfg = GUEST_OSCTLD_DIR / "osctld.yml"
        self.write_file(str(cfg), yaml.safe_dump(self.osctld_config))
        # As a node runs it (README: the unit's Delegate=yes, KillMode=process):
        # a systemd service with a cgroup of its own to make its tree below.
        self.run(f"systemd-run --unit={GUEST_UNIT} --property=Delegate=yes --property=KillMode=process "
                 f"--property=StandardOutput=append:{GUEST_OSCTLD_DIR / 'osctld.log'} "
                 f"--property=StandardError=append:{GUEST_OSCTLD_DIR / 'osctld.log'} "
                 f"{self.venv_bin / 'osctld'} --config {cfg}", check=True)

        def answers() -> bool:
            if self.run(f"systemctl is-active -q {GUEST_UNIT}").rc != 0:
                raise RuntimeError(f"osctld in the node VM exited:\n{self.log_tail()}")
            self.call("daemon.status", timeout=10)
            return True

        wait_for(answers, timeout, 0.2, lambda: f"osctld in the node VM to answer:\n{self.log_tail()}",
                 ignore=(OsctlError,))

    def stop_osctld(self, timeout: float = 60) -> None:
        """Stop the VM's osctld, if it runs (its containers run on)."""
        if self.proc is None or self.proc.poll() is not None or self._sock is None:
            return
        self.run(f"systemctl stop {GUEST_UNIT}; systemctl reset-failed {GUEST_UNIT}",
                 timeout=timeout)

    def reset(self) -> None:
        """Put the VM back as it booted, for the next test module, and fail
        if that cannot be done. The rule for a module: it may leave
        anything osctld made (pools, users, running containers: every pool
        is exported with --force here, then osctld, its lxcfs and whatever
        still runs in its unit are killed) and anything under
        GUEST_OSCTLD_DIR (removed, mounts below it unmounted: put scratch
        files such as zpool images there); zpools are destroyed, whatever
        their disks (/dev/vdb, files), and the disk's labels cleared;
        /etc/subuid and /etc/subgid are put back as they booted. Anything
        else a module makes in the VM it removes itself (and a loaded
        kernel module may stay)."""
        # Killed first: a clean stop is no module's business here, and
        # busybox's init may keep an export waiting out its timeout. Each
        # step on its own: one that fails (a container gone meanwhile, the
        # daemon down) leaves the next its chance; the rest cleans up.
        for what, step in (
                ("kill", lambda: self.call_all(*(("ct.kill", {"id": c["pool"] + ":" + c["id"]})
                                                 for c in self.call("ct.ls", {"state": "running"})),
                                               timeout=60)),
                ("pool export", lambda: self.call_all(
                    *(("pool.export", {"name": p["name"], "force": True, "timeout": 5})
                      for p in self.call("pool.ls", timeout=30)), timeout=120))):
            try:
                step()
            except OsctlError as e:
                print(f"node VM reset: {what}: {e}", file=sys.stderr)
        dirs = f"{GUEST_OSCTLD_DIR} {GUEST_RUN_DIR}"
        ours = f"findmnt -rn -o TARGET | grep -E '^({GUEST_OSCTLD_DIR}|{GUEST_RUN_DIR})(/|$)'"
        self.run(f"""
            systemctl kill -s KILL {GUEST_UNIT} 2>/dev/null
            systemctl stop {GUEST_UNIT} 2>/dev/null; systemctl reset-failed {GUEST_UNIT} 2>/dev/null
            for m in $({ours} | sort -r); do
                umount -l "$m"
            done
            for z in $(zpool list -H -o name); do zpool destroy -f "$z"; done
            zpool labelclear -f {self.zpool_disk} 2>/dev/null
            rm -rf {dirs}
            cp -a {BOOT_COPY}/subuid {BOOT_COPY}/subgid /etc/
            """, timeout=120)
        left = self.run_all(f"systemctl is-active {GUEST_UNIT}", "zpool list -H -o name",
                            ours,
                            f"ls -d {dirs}")
        if left[0].stdout.strip() == "active" or any(r.stdout.strip() for r in left[1:]):
            raise AssertionError("the node VM could not be reset for the next module: "
                                 + "; ".join(f"{r.cmd}: {r.stdout.strip()}" for r in left))

    def log_tail(self, n: int = 60) -> str:
        res = self.run(f"tail -n {n} {GUEST_OSCTLD_DIR / 'osctld.log'}", timeout=30)
        return f"--- osctld log in the node VM:\n{res.stdout}"


if __name__ == "__main__":
    # scripts/test.sh builds the image this way, in the background, while
    # the host's tests run (the fixture then finds it built, or waits on
    # the build lock for it).
    print(ensure_image())
