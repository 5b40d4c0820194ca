"""The daemon: builds the node, runs its servers, shuts down.

``Daemon`` wires the parts of a ``Node`` (node.py) together, then ``run``
raises the kernel limits, starts the node's helpers (lxcfs, the statfs
proxy), loads and re-adopts (startup.py), listens on the LXC hook socket
(hooksock.py) and the client socket (server.py), starts what should run,
runs the maintenance and deletion timers (maintenance.py, deletion.py),
the consumption sampler (consumption.py) and the metrics endpoint
(metrics.py, where configured), the cluster membership (cluster/, where
configured), and on SIGTERM or SIGINT closes those
again, leaving containers and VMs running.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import shutil
import signal
import sys
from pathlib import Path

from . import __version__, deletion, maintenance, startup, sysctls
from .accounts import Accounts
from .config import Config
from .consumption import Consumption
from .cpumeter import CpuMeter
from .events import EventBus
from .history import History
from .hooksock import HookSocket
from .locks import Locks
from .metrics import Metrics
from .net.network import Network
from .node import Node
from .pools import PoolList
from .runtime.cgroup import layout as cgroups
from .runtime.container import Containers
from .runtime.devices import DeviceNodes
from .runtime.lxc import LxcRuntime
from .runtime.lxc_config import Hooks
from .runtime.lxc_monitor import ExitCodes
from .runtime.lxcfs import Lxcfs
from .runtime.vm import Vms
from .runtime.cgroup.tree import CgroupTree
from .runtime.statfs import StatfsProxy
from .state import Registry
from .subid import SubIds
from .template import Templates
from .transfer.keychain import Keychain
from .transfer.receiver import Receiver, receive_uid

log = logging.getLogger(__name__)


def forced_command() -> str:
    """``osctld-receive`` beside this osctld (the same installation: a venv's
    or a package's bin directory), for the authorized_keys lines."""
    for d in (Path(sys.argv[0]).parent, Path(sys.executable).parent):
        if (d / "osctld-receive").exists():
            return str((d / "osctld-receive").absolute())
    return shutil.which("osctld-receive") or "osctld-receive"


class Daemon:
    def __init__(self, config: Config):
        self.config = config
        registry = Registry()
        templates = Templates(config.templates_dir, config.cache_dir)
        # Detected once: the daemon's own cgroups are the base of its tree.
        layout = cgroups.detect()
        self.cgroups = tree = CgroupTree(layout, config.cgroup_root)
        net = Network(config.net, registry)
        containers = Containers(
            LxcRuntime(config.lxc_dir, lambda pool: registry.pools[pool].pool.log_dir), templates, Hooks(config.hook_socket), tree,
            on_state=lambda ct: None, nodes=DeviceNodes(config.run_dir / "devices"),
            lxcfs=Lxcfs(config.lxcfs, config.run_dir), statfs=StatfsProxy(config.run_dir),
            exit_codes=ExitCodes(), net=net,
        )
        locks = Locks(config.lock_timeout)
        self.node = node = Node(
            config=config, registry=registry, locks=locks, events=EventBus(),
            pools=PoolList(config.state_dir, registry), containers=containers,
            vms=Vms(config.vm, config.vm_run_dir, tree, net, on_state=lambda vm: None),
            net=net, templates=templates, history=History(registry),
            subids=SubIds(config.state_dir / "subid-owned.yml"), cgroup_layout=layout,
            accounts=Accounts(config.state_dir / "accounts.yml"),
            consumption=Consumption(config.consumption, registry, locks, tree, net),
            cpu=CpuMeter(config.cpu_interval),
            keychain=Keychain(config.state_dir / "receive-keys.yml",
                              config.receive_dir / "authorized_keys",
                              [*(config.receive_command or [forced_command()]),
                               "--socket", str(config.receive_dir / "receive.sock")]),
        )
        # The runtimes report to the node, which did not exist when they were made.
        containers.on_state = node.on_ct_state
        node.vms.on_state = node.on_vm_state
        containers.hook_handlers.append(node.on_ct_hook)
        self._stop = node.stop_requested

    async def watch_statfs_proxy(self, every: float = 5.0) -> None:
        """Replace a dead statfs proxy: while it is gone, LXC fails the
        statfs calls of containers with a btrfs quota (ENOSYS)."""
        while True:
            await asyncio.sleep(every)
            if self.node.containers.statfs.stopped:  # osctl shutdown
                return
            try:
                await asyncio.to_thread(self.node.containers.statfs.ensure)
            except Exception as e:
                log.error("statfs proxy: %s", e)

    async def run(self) -> None:
        from .server import Server  # the server sits above: only the daemon wires it in

        cfg, node = self.config, self.node
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
        log.info("cgroups: %s; containers below %s", node.cgroup_layout.mode, ", ".join(
            f"{h.mount}{h.base.rstrip('/')}/{cfg.cgroup_root}" for h in node.cgroup_layout.hierarchies
            if h.controllers & {"cpu", "memory", "pids"}))
        # Before it starts anything: on cgroup v2 the daemon leaves the cgroup
        # its tree hangs from, for a leaf of its own (CgroupTree.settle).
        crowd = self.cgroups.settle(os.getpid())
        if crowd:
            log.error("cgroup v2: processes %s share osctld's cgroup, so containers cannot get "
                      "limits: run osctld in a cgroup of its own (a systemd unit with "
                      "Delegate=yes)", ", ".join(map(str, crowd)))
        # Before any container starts: with the kernel's defaults a node runs
        # out of ptys, inotify instances and keys long before memory.
        node.sysctls = await asyncio.to_thread(sysctls.raise_all, sysctls.wanted(cfg.sysctls))
        node.containers.nodes.setup()
        # Before load(): re-adoption renders the configs with lxcfs's mounts.
        await asyncio.to_thread(node.containers.lxcfs.ensure)
        await asyncio.to_thread(node.containers.statfs.ensure)
        await startup.load(node)
        node.accounts.load()
        node.keychain.load()

        hooks = HookSocket(cfg.hook_socket, node.registry, node.containers)
        await hooks.start()
        await startup.recheck_running(node)
        await startup.catch_up_deletions(node)
        servers = [Server(node, cfg.socket, cfg.max_frame)]
        if cfg.account_socket:
            servers.append(Server(node, cfg.account_socket, cfg.max_frame, accounts=True,
                                  gid=cfg.account_gid))
        for server in servers:
            await server.start()
        receiver = None
        uid = receive_uid(cfg.receive_user)
        if uid is None:
            log.warning("no receive user %s: this node receives no servers", cfg.receive_user)
        else:
            receiver = Receiver(node, cfg.receive_dir / "receive.sock", uid)
            await receiver.start()

        if cfg.cluster is not None:
            from .cluster.agent import ClusterAgent  # only here: etcd3gw only where configured
            from .commands import cluster_ha
            node.cluster = ClusterAgent(node, cfg.cluster)
            node.cluster.start()
            cluster_ha.attach(node)  # fencing, recovery, replicas

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        log.info("osctld %s ready on %s", __version__, ", ".join(str(s.path) for s in servers))
        autostart = asyncio.gather(startup.autostart(node), startup.start_online_vms(node),
                                   startup.settle_vm_sends(node))
        watch = asyncio.create_task(self.watch_statfs_proxy())
        windows = asyncio.create_task(maintenance.watch(node))
        deletions = asyncio.create_task(deletion.watch(node))
        sampler = asyncio.create_task(node.consumption.run())
        meter = asyncio.create_task(node.cpu.run(node.containers.cgroups, node.running_cgroups))
        metrics = Metrics(node)
        metrics.start()
        await self._stop.wait()

        log.info("shutting down; containers and VMs keep running")
        if node.cluster is not None:
            await node.cluster.close()
        autostart.cancel()
        node.vms.release()
        watch.cancel()
        windows.cancel()
        deletions.cancel()
        sampler.cancel()
        meter.cancel()
        metrics.close()
        await asyncio.wait([windows])  # a maintenance's restart under way ends first
        for server in servers:
            await server.close()
        if receiver is not None:
            receiver.close()
        hooks.close()
        node.containers.exit_codes.close()
        await node.ops.cancel_all(timeout=30)
        for path in (cfg.socket, cfg.account_socket, cfg.hook_socket):
            if path is None:
                continue
            try:
                path.unlink()
            except FileNotFoundError:
                pass
