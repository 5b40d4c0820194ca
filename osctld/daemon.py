"""The daemon: owns the pools, the server, the event bus; start-up and shutdown.

Start-up re-adopts what is already running: containers live under LXC's own
monitors and outlive the daemon, so the daemon asks LXC for each one's
state and init PID before it answers its first request.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Iterable

import yaml

from osctl.protocol import INTERNAL, OsctlError

from . import __version__, orphans, sysctls
from .config import Config
from .events import EventBus
from .locks import Locks
from .model.container import Container
from .model.idmap import IdRange
from .model.pool import IDMAP_CHOWN, IDMAP_MOUNT, Pool
from .model.user import User
from .model.vm import STOPPED, VM
from .distconfig import for_distribution
from .net.network import Network
from .ops import Ops
from .runtime import cgroups
from .runtime.ct import Containers
from .runtime.devices import DeviceNodes
from .runtime.idmapped import supports_idmapped_mounts
from .runtime.lxc import LxcRuntime
from .runtime.lxc_config import Hooks
from .runtime.lxc_monitor import ExitCodes
from .runtime.lxcfs import Lxcfs
from .runtime.qemu import Vms
from .runtime.resources import CgroupTree
from .runtime.statfs import StatfsProxy
from .runtime.vmimage import VmFiles
from .state import PoolState, Registry
from .storage import backend_for
from .store import append_history, atomic_write
from .subid import SubIds
from .template import Templates

log = logging.getLogger(__name__)


class Daemon:
    def __init__(self, config: Config):
        self.config = config
        self.started = time.time()
        self.registry = Registry()
        self.events = EventBus()
        self.locks = Locks(config.lock_timeout)
        self.templates = Templates(config.templates_dir, config.cache_dir)
        self.subids = SubIds(config.state_dir / "subid-owned.yml")
        self._subid_turn = asyncio.Lock()
        # Detected once: the daemon's own cgroups are the base of its tree.
        self.cgroup_layout = cgroups.detect()
        self.containers = Containers(
            LxcRuntime(config.lxc_dir), self.templates, Hooks(config.hook_socket),
            CgroupTree(self.cgroup_layout, config.cgroup_root), on_state=self._state_changed,
            nodes=DeviceNodes(config.run_dir / "devices"), lxcfs=Lxcfs(config.lxcfs, config.run_dir),
            statfs=StatfsProxy(config.run_dir), exit_codes=ExitCodes(),
        )
        self.net = Network(config.net, self.registry)
        self.containers.before_start.append(self.write_netconfig)
        self.containers.hook_handlers.append(self._net_hook)
        self.vms = Vms(config.vm, config.vm_run_dir, self.containers.cgroups,
                       on_state=self._vm_state_changed)
        # VMs whose serial console someone is attached to (QEMU takes one client).
        self.vm_consoles: set[tuple[str, str]] = set()
        self._vm_taps: dict[tuple[str, str], list[str]] = {}  # of running VMs
        self._vm_taps_going: dict[tuple[str, str], asyncio.Future] = {}
        self.ops = Ops()
        self.inactive_pools: list[dict] = []  # node pool entries that failed to activate
        self.sysctls: list[sysctls.Sysctl] = []  # the kernel limits raised at start
        self._stop = asyncio.Event()
        self._servers: list = []

    # --- node pool list -------------------------------------------------------

    @property
    def pools_file(self) -> Path:
        return self.config.state_dir / "pools.yml"

    def save_pool_list(self) -> None:
        # Pools that failed to activate stay listed: a disk missing at boot
        # must not make the node forget them.
        entries = [p.pool.node_entry() for p in self.registry.pools.values()] + self.inactive_pools
        atomic_write(self.pools_file, yaml.safe_dump({"pools": entries}).encode())

    def load_pool_list(self) -> list[dict]:
        try:
            return (yaml.safe_load(self.pools_file.read_text()) or {}).get("pools") or []
        except FileNotFoundError:
            return []

    def backend(self, pstate_or_pool):
        pool = getattr(pstate_or_pool, "pool", pstate_or_pool)
        return backend_for(pool)

    @staticmethod
    def detect_idmap(path: Path) -> str:
        return IDMAP_MOUNT if supports_idmapped_mounts(path) else IDMAP_CHOWN

    # --- events and history ---------------------------------------------------

    def _state_changed(self, ct: Container) -> None:
        log.info("container %s:%s is %s", ct.pool, ct.id, ct.state)
        extra = {"last_stop": ct.last_stop} if ct.state == "stopped" else {}
        self.events.publish("state", object="ct", pool=ct.pool, id=ct.id,
                            state=ct.state, init_pid=ct.init_pid, **extra)

    def _vm_state_changed(self, vm: VM) -> None:
        log.info("VM %s:%s is %s", vm.pool, vm.id, vm.state)
        self.events.publish("state", object="vm", pool=vm.pool, id=vm.id, state=vm.state, pid=vm.pid)
        taps = self._vm_taps.pop((vm.pool, vm.id), None) if vm.state == STOPPED else None
        if taps:
            self._vm_taps_going[(vm.pool, vm.id)] = asyncio.ensure_future(self.net.vm_down(taps))

    async def start_vm(self, pstate: PoolState, vm: VM) -> None:
        """A VM's group cgroups and taps, then its QEMU; the taps go again when it stops."""
        going = self._vm_taps_going.pop((vm.pool, vm.id), None)
        if going is not None:  # the last run's, still being removed
            await going
        self.containers.apply_groups(pstate, vm.group)
        taps = await self.net.vm_up(vm)
        try:
            await self.vms.start(vm, VmFiles(pstate.pool.vm_dir(vm.id)),
                                 list(zip(taps, self.net.vm_inside(vm))))
        except BaseException:
            await self.net.vm_down(taps)
            raise
        self._vm_taps[(vm.pool, vm.id)] = taps

    # --- network ---------------------------------------------------------------

    async def write_netconfig(self, pstate: PoolState, ct: Container) -> None:
        """The container's interfaces in its distribution's own format, so its
        own init brings them up; at each start and after each change."""
        dist = for_distribution(ct.distribution)(pstate.pool.rootfs(ct.id))
        dist.set_network(await self.net.iface_configs(ct))

    async def _net_hook(self, ct: Container, hook: str, pid: int | None) -> None:
        if not ct.netifs:
            return
        if hook == "start-host":
            if pid is None:
                raise OsctlError(INTERNAL, f"start-host hook of {ct.id} without the init's PID")
            await self.net.up(ct, pid)
        elif hook == "post-stop":
            await self.net.down(ct)
        else:
            return
        state = "up" if hook == "start-host" else "down"
        for n in ct.netifs:
            self.events.publish(state, object="netif", pool=ct.pool, id=ct.id, netif=n.name)

    def history(self, pool: str | None, entry: dict) -> None:
        if pool is not None:
            pstate = self.registry.pools.get(pool)  # gone: an export wrote its own line
        else:
            try:
                pstate = self.registry.pool(None)
            except OsctlError:
                return
        if pstate is None:
            return
        try:
            append_history(pstate.pool.history_file, entry)
        except OSError as e:
            log.warning("cannot write history of pool %s: %s", pstate.pool.name, e)

    async def sync_subids(self, new: Iterable[User] = ()) -> None:
        """Bring /etc/subuid and /etc/subgid in line with the users (``new``
        ones are checked against every other line there). In a thread: the
        files' locks may be held by useradd or an admin for a while, and no
        other request may wait for that. One at a time, each to its end
        (also when its caller is cancelled), so the last one wins."""
        async with self._subid_turn:
            work = asyncio.ensure_future(asyncio.to_thread(
                self.subids.sync, self.registry.all_users(), list(new)))
            try:
                await asyncio.shield(work)
            except asyncio.CancelledError:
                await asyncio.wait([work])
                raise

    # --- start-up ---------------------------------------------------------------

    async def activate_pool(self, entry: dict) -> PoolState:
        path = Path(entry["path"])
        image = Path(entry["image"]) if entry.get("image") else None
        if image is not None:
            await backend_for(Pool(entry["name"], "btrfs", path, image)).activate()
        pstate = PoolState.load(path, image)
        await self.backend(pstate).activate()
        return pstate

    async def install_default_pool(self) -> None:
        dp = self.config.default_pool
        path = Path(dp.path) if dp.path else self.config.state_dir / "pools" / dp.name
        if (path / "conf" / "pool.yml").exists():
            pstate = await self.activate_pool({"name": dp.name, "path": str(path)})
        else:
            log.info("installing the default pool %s (%s) at %s", dp.name, dp.backend, path)
            pool = Pool(dp.name, dp.backend, path)
            await backend_for(pool).install()
            pool.idmap = self.detect_idmap(path)
            pstate = PoolState(pool, IdRange(base=dp.id_base, block_size=dp.id_block_size))
            pstate.save_pool()
        self.registry.pools[pstate.pool.name] = pstate
        self.save_pool_list()

    async def load(self) -> None:
        entries = self.load_pool_list()
        for entry in entries:
            try:
                pstate = await self.activate_pool(entry)
                for ct in self.net.admit(pstate):
                    pstate.save_server(ct)
            except Exception as e:
                log.error("pool %s at %s cannot be activated (kept in the pool list): %s",
                          entry.get("name"), entry.get("path"), e)
                self.inactive_pools.append(entry)
                continue
            self.registry.pools[pstate.pool.name] = pstate
        if not entries and self.config.default_pool is not None:
            await self.install_default_pool()
        # Before any request: nothing is being created or deleted yet.
        orphans.remove_temp_files(self.config.state_dir)
        for pstate in self.registry.pools.values():
            await orphans.clean_pool(pstate, self.backend(pstate), self.containers)
        try:
            await self.sync_subids()
        except OsctlError as e:  # serve anyway: the next user change syncs again
            log.error("cannot bring /etc/subuid and /etc/subgid up to date: %s", e)
        await self.readopt()

    async def readopt(self) -> None:
        """Learn each container's state from LXC; one broken container is
        logged and left stopped, never keeping the daemon from starting."""
        cts = self.registry.all_cts()
        for pstate in self.registry.pools.values():
            for ct in pstate.cts.values():
                try:
                    self.containers.write_config(pstate, ct)
                except Exception as e:
                    log.error("container %s:%s: cannot write its LXC config: %s", ct.pool, ct.id, e)
        states = await asyncio.gather(*(self.containers.lxc.aquery(c.pool, c.id) for c in cts),
                                      return_exceptions=True)
        for ct, result in zip(cts, states):
            if isinstance(result, BaseException):
                log.error("container %s:%s: cannot ask LXC its state: %s", ct.pool, ct.id, result)
                continue
            try:
                self.containers.adopt(ct, *result)
            except Exception as e:
                log.error("container %s:%s: cannot adopt it: %s", ct.pool, ct.id, e)
        for lxcpath in {str(self.containers.lxc.lxcpath(c.pool)) for c in cts}:
            self.containers.exit_codes.watch(lxcpath)  # the exit codes of what runs now
        running = sum(1 for c in cts if c.running)
        log.info("re-adopted %d containers, %d running", len(cts), running)
        vms = self.registry.all_vms()
        await asyncio.gather(*(self.vms.adopt(v) for v in vms))
        self._vm_taps.update({(v.pool, v.id): [self.net.veth(n) for n in v.netifs]
                              for v in vms if v.running})
        log.info("re-adopted %d VMs, %d running", len(vms), sum(1 for v in vms if v.running))
        await self.net.reconcile()  # after both: it keeps the links of what runs

    async def autostart(self) -> None:
        todo = sorted((c for c in self.registry.all_cts() if c.autostart and not c.running),
                      key=lambda c: (c.autostart_priority, c.pool, c.id))
        if not todo:
            return
        sem = asyncio.Semaphore(self.config.autostart_parallelism)

        async def one(ct: Container) -> None:
            async with sem:
                pstate = self.registry.pools.get(ct.pool)
                if pstate is None or ct.running:
                    return
                try:
                    async with self.locks.hold(("pool", ct.pool), "autostart", shared=True), \
                            self.locks.hold(("ct", ct.pool, ct.id), "autostart"):
                        await self.containers.start(pstate, ct)
                except Exception as e:
                    log.error("autostart of %s:%s failed: %s", ct.pool, ct.id, e)

        log.info("autostarting %d containers, %d at a time", len(todo), self.config.autostart_parallelism)
        await asyncio.gather(*(one(c) for c in todo))

    async def start_online_vms(self) -> None:
        """Start the VMs marked online that do not run (after a node reboot)."""
        async def one(vm: VM) -> None:
            pstate = self.registry.pools.get(vm.pool)
            if pstate is None or vm.running:
                return
            try:
                async with self.locks.hold(("pool", vm.pool), "online", shared=True), \
                        self.locks.hold(("vm", vm.pool, vm.id), "online"):
                    await self.start_vm(pstate, vm)
            except Exception as e:
                log.error("start of online VM %s:%s failed: %s", vm.pool, vm.id, e)

        await asyncio.gather(*(one(v) for v in self.registry.all_vms() if v.online and not v.running))

    # --- hooks from LXC -----------------------------------------------------------

    async def watch_statfs_proxy(self, every: float = 5.0) -> None:
        """Replace a dead statfs proxy: while it is gone, LXC fails the
        statfs calls of containers with a btrfs quota (ENOSYS)."""
        while True:
            await asyncio.sleep(every)
            try:
                await asyncio.to_thread(self.containers.statfs.ensure)
            except Exception as e:
                log.error("statfs proxy: %s", e)

    async def _hook_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            msg = json.loads(line)
            pstate = self.registry.pools.get(msg.get("pool"))
            ct = pstate.cts.get(msg.get("ct")) if pstate else None
            if ct is not None:
                await self.containers.hook(ct, str(msg.get("hook")), msg.get("pid"), msg.get("target"))
            writer.write(b"ok\n")
            await writer.drain()
        except Exception as e:
            # The hook exits non-zero on this, and LXC aborts the start.
            log.warning("hook failed: %s", e)
            writer.write(("error " + str(e).replace("\n", " ") + "\n").encode())
            await writer.drain()
        finally:
            writer.close()

    # --- run --------------------------------------------------------------------

    async def run(self) -> None:
        from .server import Server  # the server sits above: only the daemon wires it in

        cfg = self.config
        for d in (cfg.state_dir, cfg.run_dir, cfg.lxc_dir):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(cfg.run_dir, 0o711)
        # Before anything is touched: a second daemon on the same run
        # directory would rewrite configs and sockets under the first.
        # Root's alone (0600, no symlink followed): a user who could open it
        # could hold it and keep the daemon from starting.
        self._lockfile = os.open(cfg.run_dir / "osctld.lock",
                                 os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        os.fchmod(self._lockfile, 0o600)
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another osctld runs with run directory {cfg.run_dir}") from None
        layout = self.cgroup_layout
        log.info("cgroups: %s; containers below %s", layout.mode, ", ".join(
            f"{h.mount}{h.base.rstrip('/')}/{cfg.cgroup_root}" for h in layout.hierarchies
            if h.controllers & {"cpu", "memory", "pids"}))
        # Before any container starts: with the kernel's defaults a node runs
        # out of ptys, inotify instances and keys long before memory.
        self.sysctls = await asyncio.to_thread(sysctls.raise_all, sysctls.wanted(cfg.sysctls))
        self.containers.nodes.setup()
        # Before load(): re-adoption renders the configs with lxcfs's mounts.
        await asyncio.to_thread(self.containers.lxcfs.ensure)
        await asyncio.to_thread(self.containers.statfs.ensure)
        await self.load()

        if cfg.hook_socket.exists():
            cfg.hook_socket.unlink()
        hook_server = await asyncio.start_unix_server(self._hook_client, path=str(cfg.hook_socket))
        os.chmod(cfg.hook_socket, 0o600)
        # A container that stopped between re-adoption and the hook server's
        # start told nobody: ask again about those held as running.
        await asyncio.gather(*(self.containers.refresh(c) for c in self.registry.all_cts() if c.running))
        server = Server(self, cfg.socket, cfg.max_frame)
        await server.start()
        self._servers = [hook_server, server]

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        log.info("osctld %s ready on %s", __version__, cfg.socket)
        autostart = asyncio.gather(self.autostart(), self.start_online_vms())
        watch = asyncio.create_task(self.watch_statfs_proxy())
        await self._stop.wait()

        log.info("shutting down; containers and VMs keep running")
        autostart.cancel()
        self.vms.release()
        watch.cancel()
        await server.close()
        hook_server.close()
        self.containers.exit_codes.close()
        await self.ops.cancel_all(timeout=30)
        for path in (cfg.socket, cfg.hook_socket):
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    def stop(self) -> None:
        self._stop.set()

    def status(self) -> dict:
        rss = 0
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
        except OSError:
            pass
        cts = self.registry.all_cts()
        vms = self.registry.all_vms()
        return {
            "version": __version__, "pid": os.getpid(), "uptime": time.time() - self.started,
            "pools": len(self.registry.pools), "users": len(self.registry.all_users()),
            "containers": len(cts), "running": sum(1 for c in cts if c.running),
            "vms": len(vms), "vms_running": sum(1 for v in vms if v.running),
            "rss": rss, "ops": self.ops.names(),
            "cgroups": self.cgroup_layout.mode, "lxcfs": self.containers.lxcfs.public(),
            "statfs_proxy": self.containers.statfs.public(),
            "sysctls": {s.key: s.public() for s in self.sysctls},
        }

