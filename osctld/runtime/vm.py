"""VMs as QEMU processes: command line, start, adopt, stop, resize.
``Vms`` is the VM driver (runtime/driver.py).

Each VM is one QEMU process started with ``-daemonize``: it is nobody's
child, in a session of its own, and outlives the daemon. Everything the
daemon needs to find it again sits in ``<run_dir>/vm/<pool>/<id>/``: the
pidfile, the QMP socket, the serial console socket and the console log.
At start-up the daemon re-adopts a VM by checking the pidfile's process
and reconnecting to its QMP socket; the open QMP connection is then how it
learns that the VM went away (the stream ends).

QEMU runs in a cgroup of its own below its resource group's
(``<group cgroup>/vm.<id>``), joined before QEMU's first instruction, so the
group's limits bind it together with the group's containers. The cgroup
goes when QEMU has exited (and with the VM); re-adoption leaves it be.

Each netif is a tap on the node, made before QEMU starts and removed with
its cgroup once QEMU has exited; a netif change to a running VM is pending
until its next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator, Callable

from osctl.protocol import INTERNAL, UNSUPPORTED, OsctlError

from ..asker import tell, telling
from ..config import VmPolicy
from ..distconfig.netconfig import IfaceConfig
from ..model.lifecycle import Event, State, check, seen
from ..model.netif import ROUTED, NetIf
from ..model.vm import MIGRATING, RUNNING, STAGED, STOPPED, VM
from .cgroup.tree import CgroupTree
from . import vm_migrate
from .qmp import Qmp, QmpError
from .vm_migrate import DISK_NODE
from .vmimage import VmFiles

if TYPE_CHECKING:
    from ..net.network import Network

log = logging.getLogger(__name__)
# How long QEMU gets to exit after "quit" before it is sent SIGKILL.
KILL_GRACE = 5
# How long a stopped QEMU may take to be reaped (and leave its cgroup).
CGROUP_GRACE = 10


@dataclass
class VmRunPaths:
    dir: Path

    @property
    def qmp(self) -> Path:
        return self.dir / "qmp.sock"

    @property
    def console(self) -> Path:
        return self.dir / "console.sock"

    @property
    def console_log(self) -> Path:
        """Everything the guest wrote on its serial port since it started."""
        return self.dir / "console.log"

    @property
    def pidfile(self) -> Path:
        return self.dir / "qemu.pid"


def guest_net(iface: IfaceConfig) -> str:
    """One interface for the guest, as a kernel command line word:
    ``osctld.net=MAC,NAME,GW4,SRC4,GW6,ADDR/LEN,...`` (``-`` for none).
    The templates' init reads it (a VM has no rootfs osctld could write to
    while it runs, and this needs no agent)."""
    fields = [iface.hwaddr, iface.name, iface.gateway4, iface.src4, iface.gateway6,
              *(str(a) for a in iface.addresses)]
    return "osctld.net=" + ",".join("-" if f is None else str(f) for f in fields)


def qemu_argv(policy: VmPolicy, vm: VM, files: VmFiles, paths: VmRunPaths,
              nics: list[tuple[str, IfaceConfig]] = (), incoming: bool = False) -> list[str]:
    """The whole QEMU command line of ``vm``; nothing else decides how a VM runs.
    ``nics``: (tap on the node, the interface inside) per netif. ``incoming``:
    paused, to receive a running guest (runtime/vm_migrate.py); the machine
    and devices are the same, so the source's state fits."""
    accel = ["-accel", "kvm", "-cpu", "host"] if policy.accelerator == "kvm" else ["-accel", "tcg"]
    net = []
    for i, (tap, iface) in enumerate(nics):
        net += ["-netdev", f"tap,id=net{i},ifname={tap},script=no,downscript=no",
                "-device", f"virtio-net-pci,netdev=net{i},mac={iface.hwaddr}"]
    append = " ".join([files.cmdline, *(guest_net(iface) for _, iface in nics)])
    return [
        policy.qemu, "-name", f"guest={vm.pool}/{vm.id},process=qemu-{vm.id}",
        "-nodefaults", "-no-user-config", "-display", "none", "-machine", "pc", *accel,
        "-smp", str(vm.cores), "-m", f"{vm.memory >> 20}M",
        "-kernel", str(files.kernel), "-initrd", str(files.initrd), "-append", append,
        "-blockdev", f"driver=file,filename={files.disk},node-name={DISK_NODE}-file",
        "-blockdev", f"driver=raw,file={DISK_NODE}-file,node-name={DISK_NODE}",
        "-device", f"virtio-blk-pci,drive={DISK_NODE},id=vda", *net,
        "-chardev", f"socket,id=console,path={paths.console},server=on,wait=off,"
                    f"logfile={paths.console_log}",
        "-serial", "chardev:console",
        "-qmp", f"unix:{paths.qmp},server=on,wait=off",
        "-daemonize", "-pidfile", str(paths.pidfile),
        *(["-incoming", "defer", "-S"] if incoming else []),
    ]


def _alive_qemu(pid: int, qmp_path: Path) -> bool:
    """Is ``pid`` the QEMU of this VM (and not a reused PID)?"""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return str(qmp_path).encode() in cmdline


@dataclass
class Pause:
    """How long ``Vms.paused`` held a guest paused (None: it did not run)."""

    seconds: float | None = None


class Vms:
    def __init__(self, policy: VmPolicy, run_dir: Path, cgroups: CgroupTree, net: Network,
                 on_state: Callable[[VM], None]):
        self.policy = policy
        self.run_dir = Path(run_dir)
        self.cgroups = cgroups
        self.net = net
        self.on_state = on_state
        self.monitors: dict[tuple[str, str], Qmp] = {}
        # The taps of running VMs.
        self.taps: dict[tuple[str, str], list[str]] = {}
        # Removals of the cgroups and taps of VMs that stopped (the cgroup
        # waits for QEMU's exit); a start or stop waits for its VM's.
        self._leaving: dict[tuple[str, str], asyncio.Future] = {}

    def paths(self, vm: VM) -> VmRunPaths:
        return VmRunPaths(self.run_dir / vm.pool / vm.id)

    def cgroup(self, vm: VM) -> str:
        return self.cgroups.vm(vm.pool, vm.group, vm.id)

    def apply(self, vm: VM, event: Event, pid: int | None = None) -> None:
        """Move ``vm`` by the lifecycle table (a conflict where it may not)."""
        self.observed(vm, check(f"VM {vm.id}", vm.state, event), pid)

    def observed(self, vm: VM, state: State, pid: int | None = None) -> None:
        """Take ``state`` as it is, from any state: what re-adoption found, or
        the table's answer. Publishes the state event once, where it changed."""
        if state != RUNNING:
            pid = None
            vm.running_cores = vm.running_memory = None
        if (vm.state, vm.pid) != (state, pid):
            vm.state, vm.pid = state, pid
            self.on_state(vm)

    def _read_pid(self, vm: VM) -> int | None:
        try:
            pid = int(self.paths(vm).pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive_qemu(pid, self.paths(vm).qmp) else None

    # --- finding running VMs ------------------------------------------------------

    async def adopt(self, vm: VM) -> None:
        """Take over a VM whose QEMU runs already (daemon restart), or mark it stopped."""
        pid = self._read_pid(vm)
        if pid is None:
            self._forget(vm)
            self.cgroups.remove(self.cgroup(vm))  # it stopped while the daemon was away
            self.observed(vm, seen(vm.state, STOPPED))
            return
        try:  # a staged VM's QEMU waits for a guest that runs on another node yet
            await self._monitor(vm, pid, self.observed, STAGED if vm.state == STAGED else RUNNING)
        except QmpError as e:
            log.error("VM %s:%s runs as PID %d but its QMP socket does not answer: %s",
                      vm.pool, vm.id, pid, e)
            self.observed(vm, STOPPED)
            return
        self.taps[(vm.pool, vm.id)] = [self.net.veth(n) for n in vm.netifs]

    async def refresh(self, vm: VM) -> None:
        """QEMU's exit is seen as it happens (its QMP connection ends): a VM
        with a connection is as the daemon holds it; one without is looked
        for again."""
        if (vm.pool, vm.id) not in self.monitors:
            await self.adopt(vm)

    async def _monitor(self, vm: VM, pid: int, mark: Callable, how: State | Event) -> None:
        """Connect to its QMP socket and learn its size; ``mark(vm, how, pid)``
        records it running (``observed`` at re-adoption, ``apply`` at start)."""
        key = (vm.pool, vm.id)
        old = self.monitors.pop(key, None)
        if old:
            old.close()
        holder: list[Qmp] = []  # on_close needs the connection it belongs to
        qmp = await Qmp.connect(str(self.paths(vm).qmp),
                                on_event=lambda ev: log.info("VM %s:%s: QMP event %s",
                                                             vm.pool, vm.id, ev.get("event")),
                                on_close=lambda: holder and self._gone(vm, holder[0]))
        holder.append(qmp)
        self.monitors[key] = qmp
        cpus = await qmp.execute("query-cpus-fast")
        mem = await qmp.execute("query-memory-size-summary")
        mark(vm, how, pid)
        vm.running_cores, vm.running_memory = len(cpus), mem["base-memory"]

    def _gone(self, vm: VM, qmp: Qmp) -> None:
        """QEMU closed its monitor: it has exited."""
        key = (vm.pool, vm.id)
        if self.monitors.get(key) is qmp:
            del self.monitors[key]
            self._forget(vm)
            self.apply(vm, Event.EXITED)
            taps = self.taps.pop(key, [])
            self._leaving[key] = asyncio.ensure_future(asyncio.gather(
                self._leave_cgroup(self.cgroup(vm)), *([self.net.vm_down(taps)] if taps else [])))

    async def _leave_cgroup(self, cgroup: str) -> None:
        """Remove a stopped VM's cgroup. QEMU closes its monitor a moment
        before it exits, and until its parent (init) reaps it, the kernel
        counts it in the cgroup (rmdir says EBUSY): try until it goes."""
        for _ in range(CGROUP_GRACE * 20):
            self.cgroups.remove(cgroup)
            if not self.cgroups.exists(cgroup):
                return
            await asyncio.sleep(0.05)
        log.warning("cgroup %s still busy %d s after its VM stopped: left", cgroup, CGROUP_GRACE)

    async def _settled(self, vm: VM) -> None:
        """Wait for the cgroup and tap removal of the VM's last stop, if one is under way."""
        leaving = self._leaving.pop((vm.pool, vm.id), None)
        if leaving is not None:
            await leaving

    def _forget(self, vm: VM) -> None:
        """Remove what a QEMU that is gone left in the run directory (not its console log)."""
        p = self.paths(vm)
        for f in (p.qmp, p.console, p.pidfile):
            f.unlink(missing_ok=True)

    # --- life -------------------------------------------------------------------------

    async def start(self, pstate, vm: VM) -> None:
        """Mark it online (persisted: the daemon starts it again after a node
        reboot) and start it; a start that fails leaves the mark as it was."""
        check(f"VM {vm.id}", vm.state, Event.START)  # before it is marked online
        was = vm.online
        vm.online = True
        pstate.save_vm(vm)
        try:
            await self._boot(pstate, vm)
        except BaseException:
            vm.online = was
            pstate.save_vm(vm)
            raise

    async def restart(self, pstate, vm: VM, timeout: int) -> None:
        """Power down, then start again: its pending cores, memory and netifs apply."""
        await self.stop(vm, timeout)
        await self.start(pstate, vm)

    def keep_stopped(self, pstate, vm: VM) -> None:
        """Marked offline: the daemon does not start it at the node's next boot."""
        vm.online = False
        pstate.save_vm(vm)

    async def _boot(self, pstate, vm: VM) -> None:
        """Its group's cgroups and its taps, then its QEMU."""
        await self._settled(vm)
        self.cgroups.apply_groups(pstate, vm.group)
        key = (vm.pool, vm.id)
        self.taps[key] = taps = await self.net.vm_up(vm)  # before QEMU, which may exit at once
        try:
            await self._run(vm, VmFiles(pstate.pool.vm_dir(vm.id)),
                            list(zip(taps, self.net.vm_inside(vm))))
        except BaseException:
            if self.taps.get(key) is taps:
                del self.taps[key]
                await self.net.vm_down(taps)
            raise

    async def _run(self, vm: VM, files: VmFiles, nics: list[tuple[str, IfaceConfig]],
                   incoming: VM | None = None) -> None:
        """Start QEMU in the VM's cgroup; its group's cgroups must exist.
        ``incoming``: the VM as it runs on the source (its cores and memory),
        for a QEMU that receives it; the VM stays staged."""
        paths = self.paths(vm)
        paths.dir.mkdir(parents=True, exist_ok=True)
        self._forget(vm)
        if incoming is None:
            self.apply(vm, Event.START)
        vm.net_pending = False
        cgroup = self.cgroup(vm)
        argv = self.cgroups.run_in(cgroup, qemu_argv(self.policy, incoming or vm, files, paths,
                                                     nics, incoming=incoming is not None))
        try:
            self.cgroups.make(cgroup)
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await proc.communicate()
            if proc.returncode != 0:
                raise OsctlError(INTERNAL, f"QEMU of VM {vm.id} failed to start: "
                                           f"{out.decode(errors='replace').strip()}")
            pid = self._read_pid(vm)
            if pid is None:
                raise OsctlError(INTERNAL, f"QEMU of VM {vm.id} exited at once")
            if incoming is None:
                await self._monitor(vm, pid, self.apply, Event.STARTED)
            else:
                await self._monitor(vm, pid, self.observed, STAGED)
        except BaseException:
            await self._kill_pid(vm)
            self._forget(vm)
            if incoming is None:
                self.apply(vm, Event.FAIL)
            await self._leave_cgroup(cgroup)
            raise

    async def stop(self, vm: VM, timeout: int, kill: bool = False) -> None:
        """ACPI power button, then wait up to ``timeout`` s; kill if it is still up.
        Returns once QEMU, its cgroup and its taps are gone."""
        await self._halt(vm, timeout, kill)
        await self._settled(vm)

    async def _halt(self, vm: VM, timeout: int, kill: bool) -> None:
        await self.refresh(vm)
        qmp = self.monitors.get((vm.pool, vm.id))
        if qmp is None:
            return
        self.apply(vm, Event.STOP, vm.pid)
        if not kill and timeout > 0:
            try:
                await qmp.execute("system_powerdown")
            except QmpError as e:
                log.warning("VM %s:%s: powerdown failed: %s", vm.pool, vm.id, e)
            async with telling(f"waiting up to {timeout} s for VM {vm.id} to power down"):
                if await qmp.wait_closed(timeout):
                    return
            log.info("VM %s:%s did not power down in %d s: killing it", vm.pool, vm.id, timeout)
            tell(f"no ACPI answer from VM {vm.id} after {timeout} s: killing it")
        await self._quit(vm, qmp)

    async def _quit(self, vm: VM, qmp: Qmp) -> None:
        """QEMU exits at once (SIGKILL if it does not)."""
        try:
            await qmp.execute("quit", timeout=KILL_GRACE)
        except QmpError:
            pass  # it may have gone already; quit closes the socket before replying
        if not await qmp.wait_closed(KILL_GRACE):
            await self._kill_pid(vm)
            await qmp.wait_closed(KILL_GRACE)

    async def _kill_pid(self, vm: VM) -> None:
        pid = self._read_pid(vm)
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL)
        for _ in range(50):
            if not _alive_qemu(pid, self.paths(vm).qmp):
                return
            await asyncio.sleep(0.1)

    async def resize_disk(self, vm: VM, size: int) -> None:
        """Grow the disk of a running VM; the guest is told (virtio config change)."""
        qmp = self.monitors.get((vm.pool, vm.id))
        if qmp is None:
            raise OsctlError(INTERNAL, f"VM {vm.id} has no QMP connection")
        await qmp.execute("block_resize", {"node-name": DISK_NODE, "size": size})

    @contextlib.asynccontextmanager
    async def paused(self, vm: VM, pause: Pause) -> AsyncIterator[None]:
        """The guest paused for the block, then run on (if it ran: a VM not
        running, or one paused by someone else, is left as it is); ``pause``
        says for how long. QEMU's ``stop`` drains and flushes the guest's
        in-flight writes, so a snapshot of its disk taken meanwhile is the
        disk at one instant: what a power cut would have left (a replica's
        copy, cluster HA)."""
        qmp = self.monitors.get((vm.pool, vm.id)) if vm.running else None
        ran = qmp is not None and (await qmp.execute("query-status")).get("status") == "running"
        began = time.monotonic()
        try:  # a stop QEMU took before a cancellation reached us is undone too
            if ran:
                assert qmp is not None
                await qmp.execute("stop")
            yield
        finally:
            if ran:
                assert qmp is not None
                await asyncio.shield(qmp.execute("cont"))  # never left paused by a cancellation
                pause.seconds = time.monotonic() - began

    # --- live migration (runtime/vm_migrate.py) -------------------------------------------

    def _qmp(self, vm: VM) -> Qmp:
        qmp = self.monitors.get((vm.pool, vm.id))
        if qmp is None:
            raise OsctlError(INTERNAL, f"VM {vm.id} has no QMP connection")
        return qmp

    async def send_live(self, vm: VM, target: vm_migrate.Target, tuning: vm_migrate.Tuning,
                        progress: vm_migrate.Progress) -> dict:
        """Move the running guest to ``target`` (migrating meanwhile); its
        routes go once it is paused here for good (so that the provider's
        network finds it at the destination at once), and once it runs
        there, this QEMU quits and its taps and cgroup go. On failure it
        runs on here, routed again, and the error goes on."""
        qmp = self._qmp(vm)
        pid, cores, memory = vm.pid, vm.running_cores, vm.running_memory
        self.apply(vm, Event.MIGRATE_LIVE)
        try:
            figures = await vm_migrate.send(qmp, target, tuning, progress,
                                            lambda routed: self.net.vm_route(vm, routed))
        except BaseException:
            if vm.state == MIGRATING:  # its QEMU did not die meanwhile
                self.apply(vm, Event.RESUME, pid)
                vm.running_cores, vm.running_memory = cores, memory
            raise
        await self._quit(vm, qmp)
        await self._settled(vm)
        return figures

    async def handed_over(self, vm: VM) -> bool:
        """After a daemon restart, a live send this node had under way: True
        if the guest was handed over (the migration completed and the mirror
        let go: the destination runs it, or will), this QEMU then quit."""
        qmp = self.monitors.get((vm.pool, vm.id))
        if qmp is None:
            return False
        status = (await qmp.execute("query-status")).get("status")
        mirrored = any(j.get("device") == vm_migrate.JOB for j in await qmp.execute("query-block-jobs"))
        if status != "postmigrate" or mirrored:
            return False
        await self._quit(vm, qmp)
        await self._settled(vm)
        return True

    async def keep(self, vm: VM) -> None:
        """A live send undone once the destination dropped its part: the
        guest runs on here, routed again."""
        qmp = self.monitors.get((vm.pool, vm.id))
        if qmp is not None:
            await vm_migrate.stay(qmp)
            await self.net.vm_route(vm)

    async def receive_live(self, pstate, vm: VM, running: VM, host: str) -> vm_migrate.Endpoints:
        """The destination's start: the staged VM's QEMU, sized as ``running``
        (the source's), paused and listening on ``host`` for the guest; its
        taps made without their routes, as the guest still answers at the
        source. ``drop_incoming`` undoes it."""
        await self._settled(vm)
        self.cgroups.apply_groups(pstate, vm.group)
        key = (vm.pool, vm.id)
        self.taps[key] = taps = await self.net.vm_up(vm, routed=False)
        try:
            await self._run(vm, VmFiles(pstate.pool.vm_dir(vm.id)),
                            list(zip(taps, self.net.vm_inside(vm))), incoming=running)
            return await vm_migrate.listen(self._qmp(vm), host)
        except BaseException:
            await self.drop_incoming(vm)
            if self.taps.get(key) is taps:
                del self.taps[key]
                await self.net.vm_down(taps)
            raise

    async def arrive(self, vm: VM) -> None:
        """Once the guest's RAM and disk are here (``vm_migrate.landed``): its
        addresses routed here, and it runs."""
        qmp = self._qmp(vm)
        await vm_migrate.landed(qmp)

        async def run() -> None:  # once begun, not cancelled half way
            await self.net.vm_route(vm)
            await qmp.execute("cont")
            self.apply(vm, Event.ARRIVE, self._read_pid(vm))
        await asyncio.shield(run())

    async def drop_incoming(self, vm: VM) -> None:
        """A staged VM's incoming QEMU gone, with its taps and cgroup."""
        qmp = self.monitors.get((vm.pool, vm.id))
        if qmp is not None:
            await self._quit(vm, qmp)
        else:
            await self._kill_pid(vm)
        await self._settled(vm)

    # --- its netifs --------------------------------------------------------------------

    def check_netif_type(self, type: str) -> None:
        if type != ROUTED:
            raise OsctlError(UNSUPPORTED, "VM interfaces are routed only")

    async def netif_change(self, vm: VM, old: NetIf | None, new: NetIf | None) -> None:
        """Pending while it runs: its taps and the guest's view are made at each start."""
        vm.net_pending = vm.running

    async def write_netconfig(self, pstate, vm: VM) -> None:
        """Nothing in its disk: the guest reads its interfaces from its kernel command line."""

    def remove(self, vm: VM) -> None:
        """Forget a deleted (stopped) VM: its run directory and its cgroup."""
        shutil.rmtree(self.paths(vm).dir, ignore_errors=True)
        self.cgroups.remove(self.cgroup(vm))

    def release(self) -> None:
        """The daemon stops: drop the QMP connections and leave the VMs running."""
        for qmp in self.monitors.values():
            qmp.close()
        self.monitors.clear()
