"""A container's life as LXC sees it: config on disk, start, stop, state.
``Containers`` is the container driver (runtime/driver.py).

The daemon learns state changes from LXC's hooks; ``refresh`` asks LXC
directly, which the daemon does once per container at start-up (re-adoption)
and after a start or stop command returns. Every change goes through the
lifecycle table (``model/lifecycle.py``), but for what LXC says, taken as it is.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from osctl.protocol import BUSY, OsctlError

from ..asker import telling
from ..distconfig import for_distribution
from ..model.container import FROZEN, RUNNING, STARTING, STOPPED, STOPPING, Container
from ..model.device import DeviceGrant
from ..model.lifecycle import Event, State, at_rest, check, seen
from ..model.limits import Limits
from ..model.netif import NetIf
from ..store import atomic_write
from ..template import Templates
from . import binds, features, seccomp, shortages
from .devices import DeviceNodes, merge
from .lxc import LxcRuntime
from .lxc_config import Hooks, LxcSpec, render
from .lxc_monitor import ExitCodes, describe
from .usage import cgroup_pids
from .lxcfs import Lxcfs
from .cgroup.tree import CgroupTree
from .statfs import NOTIFY, StatfsProxy, wants_proxy

if TYPE_CHECKING:
    from ..net.network import Network

log = logging.getLogger(__name__)
# Why a container stopped, by the state it was in when its post-stop hook came.
STOP_REASONS = {STOPPING: "stopped by osctld", STARTING: "failed to start"}
LAST_STOP = "last-stop.json"
# LXC's passing states that the daemon has none of, as the one they pass in.
LXC_PASSING = {"aborting": STOPPING, "freezing": RUNNING, "thawed": RUNNING}


class Containers:
    PROC = Path("/proc")

    def __init__(self, lxc: LxcRuntime, templates: Templates, hooks: Hooks,
                 cgroups: CgroupTree, on_state: Callable[[Container], None],
                 nodes: DeviceNodes, lxcfs: Lxcfs, statfs: StatfsProxy, exit_codes: ExitCodes,
                 net: Network):
        self.lxc = lxc
        self.templates = templates
        self.hooks = hooks
        self.cgroups = cgroups
        self.on_state = on_state
        self.nodes = nodes
        self.lxcfs = lxcfs
        self.statfs = statfs
        self.exit_codes = exit_codes
        self.net = net
        # Where the LXC log of each container's last start begins: its stop's
        # "last error" is looked for from there on.
        self.log_offsets: dict[tuple[str, str], int] = {}
        # Called (awaited) with (ct, hook, pid) for each LXC hook; one that
        # raises at start-host makes the start fail.
        self.hook_handlers: list[Callable] = []
        # The starts under way: each one's start-host hook resolves it with
        # why it refused (None: it did not), so that a failed start says so
        # rather than only "the hook exited 1".
        self.attempts: dict[tuple[str, str], asyncio.Future[str | None]] = {}

    def apply(self, ct: Container, event: Event, pid: int | None = None) -> None:
        """Move ``ct`` by the lifecycle table (a conflict where it may not)."""
        self.observed(ct, check(f"container {ct.id}", ct.state, event), pid)

    def observed(self, ct: Container, state: State, pid: int | None = None) -> None:
        """Take ``state`` as it is, from any state: what LXC says, or the
        table's answer. Publishes the state event once, where it changed."""
        pid = pid if state == RUNNING else None
        if (ct.state, ct.init_pid) != (state, pid):
            ct.state, ct.init_pid = state, pid
            self.on_state(ct)

    @staticmethod
    def grants(ct: Container) -> list[DeviceGrant]:
        """Its features' devices and its own grants, one per device."""
        return merge([*features.grants(ct.features), *ct.devices])

    def render(self, pstate, ct: Container) -> str:
        user = pstate.users[ct.user]
        extra = [
            *self.cgroups.lxc_lines(ct.pool, ct.group, ct.id, ct.limits),
            *features.lxc_lines(ct.features),
            *self.nodes.lxc_lines(self.cgroups.layout, ct.pool, ct.id, self.grants(ct)),
            *self.lxcfs.lxc_lines(),
        ]
        if wants_proxy(pstate.pool.backend, ct.disk):
            extra += self.statfs.lxc_lines(pstate.pool.rootfs(ct.id))
        try:
            tpl_conf = self.templates.get(ct.distribution).lxc_conf
        except Exception:
            tpl_conf = "lxc.init.cmd = /sbin/init\n"
        return render(LxcSpec(
            ct=ct, user=user, rootfs=pstate.pool.rootfs(ct.id), idmap=pstate.pool.idmap,
            log_file=self.lxc.log_file(ct.pool, ct.id), hooks=self.hooks,
            seccomp=self.lxc.seccomp_file(ct.pool, ct.id),
            template_conf=tpl_conf, extra=extra, mount_auto=features.mount_auto(ct.features),
            prlimits=ct.prlimits,
        ))

    @staticmethod
    def seccomp_profile(pstate, ct: Container) -> str:
        """The deny-list less what its features need, with the statfs
        proxy's notify rules where it has a btrfs quota: one profile."""
        notify = NOTIFY if wants_proxy(pstate.pool.backend, ct.disk) else ()
        return seccomp.profile(features.seccomp_allow(ct.features), notify)

    def write_config(self, pstate, ct: Container) -> None:
        self.lxc.write_config(ct.pool, ct.id, self.render(pstate, ct),
                              self.seccomp_profile(pstate, ct))

    def remove(self, pool: str, ct_id: str) -> None:
        """Forget a deleted container's LXC dir and device nodes."""
        self.lxc.remove(pool, ct_id)
        self.nodes.remove(pool, ct_id)

    def rename(self, pool: str, old: str, new: str) -> None:
        """A stopped container's LXC dir (why it stopped) and its log in the
        pool (and why its start failed) move to its new id; its device nodes
        are made anew at its next start. Its config is rendered again by the
        caller."""
        self.lxc.rename(pool, old, new)
        self.nodes.remove(pool, old)

    def init_alive(self, ct: Container, pid: int) -> bool:
        """Whether ``pid`` is a live process in the container's cgroup: LXC
        may still name an init that has exited (its monitor is on its way
        down), or the PID may already be another process's."""
        try:
            stat = (self.PROC / str(pid) / "stat").read_text()
            cgroup = (self.PROC / str(pid) / "cgroup").read_text()
        except (FileNotFoundError, ProcessLookupError):
            return False
        if stat.rpartition(")")[2].split()[0] in ("Z", "X"):  # exited, not yet reaped
            return False
        here, mine = f"/pool.{ct.pool}/", f"/ct.{ct.id}/"
        return any(here in p and mine in p for p in
                   (line.split(":", 2)[-1] + "/" for line in cgroup.splitlines()))

    def checked(self, ct: Container, lxc_state: str, pid: int | None) -> tuple[State, int | None]:
        """LXC's (state, init PID), with an init that is gone taken as stopped."""
        state = LXC_PASSING.get(lxc_state) or State(lxc_state)
        if state in (RUNNING, FROZEN) and (pid is None or not self.init_alive(ct, pid)):
            state, pid = STOPPED, None
        return seen(ct.state, state), pid

    async def refresh(self, ct: Container) -> None:
        self.observed(ct, *self.checked(ct, *await self.lxc.aquery(ct.pool, ct.id)))

    async def settle(self, ct: Container, timeout: float = 10) -> None:
        """Wait for LXC to be done with a run whose init has exited (we hold it
        stopped, its monitor may still be tearing down), so that a start does
        not meet "already running"."""
        deadline = asyncio.get_running_loop().time() + timeout
        while (await self.lxc.aquery(ct.pool, ct.id))[0] != STOPPED:
            if asyncio.get_running_loop().time() > deadline:
                raise OsctlError(BUSY, f"LXC still holds container {ct.id} as running "
                                       "though its init has exited: try again")
            await asyncio.sleep(0.1)

    def adopt(self, ct: Container, state: str, pid: int | None) -> None:
        """Take what LXC said at daemon start (no event: nothing changed), its
        last stop, and clear a stopped container's stale monitor cgroup."""
        ct.state, ct.init_pid = self.checked(ct, state, pid)
        ct.last_stop = self.read_last_stop(ct)
        if ct.state == STOPPED:
            self.remove_monitor_cgroup(ct)

    def remove_monitor_cgroup(self, ct: Container) -> None:
        """LXC leaves its monitor's cgroup behind after a failed start, and with
        the fixed name we give it (lxc.cgroup.dir.monitor) it can then never
        make one again: every later start fails (ERANGE). Removed only where
        it holds no process (rmdir refuses a populated cgroup)."""
        self.cgroups.remove(self.cgroups.monitor(ct.pool, ct.id))

    # --- why it stopped ---------------------------------------------------------

    def _last_stop_file(self, ct: Container) -> Path:
        return self.lxc.ct_dir(ct.pool, ct.id) / LAST_STOP

    def read_last_stop(self, ct: Container) -> dict | None:
        try:
            return json.loads(self._last_stop_file(ct).read_text())
        except (FileNotFoundError, ValueError):
            return None

    def record_stop(self, ct: Container) -> None:
        """Why it stopped: who stopped it (by the state it was in), its init's
        exit status or signal (from LXC's monitor) and LXC's last error since
        its start. Kept in the run directory: it outlives a daemon restart."""
        rec: dict = {"at": time.time(), "reason": STOP_REASONS.get(ct.state, "init exited")}
        status = self.exit_codes.take(str(self.lxc.lxcpath(ct.pool)), ct.id)
        if status is not None:
            rec.update(describe(status))
        since = self.log_offsets.pop((ct.pool, ct.id), None)
        text = self.lxc.log_since(ct.pool, ct.id, since) if since is not None else ""
        rec["lxc_error"] = self.lxc.errors(text) or None
        rec["hints"] = shortages.explain(text)
        ct.last_stop = rec
        if rec["reason"] == "init exited":
            log.warning("container %s:%s stopped by itself: %s", ct.pool, ct.id, rec)
        try:
            atomic_write(self._last_stop_file(ct), json.dumps(rec).encode(), 0o600, durable=False)
        except OSError as e:
            log.warning("cannot keep the last stop of %s:%s: %s", ct.pool, ct.id, e)

    def read_start_error(self, ct: Container) -> str | None:
        """Why its last start failed (None: it did not), as the start said it."""
        try:
            return self.lxc.start_error_file(ct.pool, ct.id).read_text()
        except FileNotFoundError:
            return None

    def record_start_error(self, ct: Container, why: str | None) -> None:
        """Keep why a start failed beside LXC's log (``osctl ct log`` shows it
        first), or forget it once a start succeeds."""
        path = self.lxc.start_error_file(ct.pool, ct.id)
        try:
            if why is None:
                path.unlink(missing_ok=True)
            else:
                atomic_write(path, why.encode(), 0o600, durable=False)
        except OSError as e:
            log.warning("cannot keep the start error of %s:%s: %s", ct.pool, ct.id, e)

    def remove_group(self, pool: str, path: str) -> None:
        """Remove a group's cgroups (and all below, "/" for the whole pool)."""
        self.cgroups.remove(self.cgroups.group(pool, path))

    def apply_limits(self, ct: Container) -> None:
        """Put the container's limits in force now, while it runs."""
        self.cgroups.apply_running(self.cgroups.ct(ct.pool, ct.group, ct.id), ct.limits)

    def limits_in_force(self, ct: Container) -> Limits | None:
        """Read back from the container's cgroup; None when it is not running."""
        if not ct.running:
            return None
        return self.cgroups.read(self.cgroups.ct(ct.pool, ct.group, ct.id))

    async def start(self, pstate, ct: Container) -> None:
        check(f"container {ct.id}", ct.state, Event.START)  # before it prepares anything
        await self.write_netconfig(pstate, ct)
        self.cgroups.apply_groups(pstate, ct.group)
        if wants_proxy(pstate.pool.backend, ct.disk):
            await asyncio.to_thread(self.statfs.ensure)  # LXC connects to it at start
        self.write_config(pstate, ct)
        user = pstate.users[ct.user]
        self.nodes.prepare(ct.pool, ct.id, self.grants(ct), user.root_uid, user.root_gid)
        if ct.restart_pending:
            ct.restart_pending = False
            pstate.save_ct(ct)
        await self.settle(ct)
        self.remove_monitor_cgroup(ct)  # a failed start before may have left it
        self.exit_codes.watch(str(self.lxc.lxcpath(ct.pool)))
        self.apply(ct, Event.START)
        key = (ct.pool, ct.id)
        self.log_offsets[key] = offset = self.lxc.log_size(ct.pool, ct.id)
        self.attempts[key] = attempt = asyncio.get_running_loop().create_future()
        try:
            await self.lxc.start(ct.pool, ct.id, offset)
        except OsctlError as e:
            self.remove_monitor_cgroup(ct)
            why = attempt.result() if attempt.done() else None
            failure = OsctlError(e.code, f"container {ct.id} failed to start: {why}") if why else e
            self.record_start_error(ct, failure.message)
            raise failure from None
        else:
            self.record_start_error(ct, None)
        finally:
            del self.attempts[key]
            await self.refresh(ct)

    async def stop(self, ct: Container, timeout: int, kill: bool = False) -> None:
        """Its init's halt signal, killed after ``timeout`` s (at once: ``kill``)."""
        if at_rest(ct.state):
            await self.refresh(ct)
            if at_rest(ct.state):
                return
        self.apply(ct, Event.STOP)
        try:
            halt = "" if kill or timeout == 0 else f" (its init's halt, killed after {timeout} s)"
            async with telling(f"waiting for container {ct.id} to stop{halt}"):
                await self.lxc.stop(ct.pool, ct.id, timeout, kill)
                await self.monitor_gone(ct)
        finally:
            await self.refresh(ct)

    async def monitor_gone(self, ct: Container, timeout: float = 10) -> None:
        """Wait for LXC's monitor of the run that ended to exit: until then it
        holds the container's log in the pool open, so the pool could not be
        unmounted at once after a stop, nor the log moved or removed."""
        rel = self.cgroups.monitor(ct.pool, ct.id)
        deadline = time.monotonic() + timeout
        while await asyncio.to_thread(cgroup_pids, self.cgroups, rel):
            if time.monotonic() > deadline:
                log.warning("LXC's monitor of %s:%s is still there %d s after its stop",
                            ct.pool, ct.id, timeout)
                return
            await asyncio.sleep(0.05)

    def keep_stopped(self, pstate, ct: Container) -> None:
        """Nothing to mark: its autostart is a setting of its own."""

    # --- its netifs -------------------------------------------------------------

    def check_netif_type(self, type: str) -> None:
        """A container takes netifs of every type."""

    async def netif_change(self, ct: Container, old: NetIf | None, new: NetIf | None) -> None:
        """Live while it runs: the veth plugged, unplugged or changed (its
        addresses, routes, name, shaping)."""
        if not ct.running:
            return
        if old is None and new is not None:
            await self.net.plug(ct, new)
        elif new is None and old is not None:
            await self.net.unplug(old)
        elif old is not None and new is not None:
            drop = [a for a in old.ips if a not in new.ips]
            await self.net.apply(ct, new, drop, old.name if old.name != new.name else None)

    async def write_netconfig(self, pstate, ct: Container) -> None:
        """Its interfaces in its distribution's own format, so that its own
        init brings them up; at each start and after each change."""
        dist = for_distribution(ct.distribution)(pstate.pool.rootfs(ct.id))
        dist.set_network(await self.net.iface_configs(ct))

    async def restart(self, pstate, ct: Container, timeout: int) -> None:
        """Stop, then start again. A running container whose start fails
        starts again as it ran: with the config it ran before its staged
        changes (``running_config``, when known: they are undone) or as it
        is. The error says so, and that it runs; it is stopped only when
        that start fails too."""
        was_running = ct.running
        ran = ct.running_config if was_running and ct.restart_pending else None
        await self.stop(ct, timeout)
        try:
            await self.start(pstate, ct)
        except OsctlError as e:
            if not was_running:
                raise
            raise await self._started_as_before(pstate, ct, ran, e) from None

    async def _started_as_before(self, pstate, ct: Container, ran: dict | None,
                                 error: OsctlError) -> OsctlError:
        """Start it again after a failed restart, with the config it ran
        (``ran``) back where known. Returns the error that says how it is."""
        if ran is not None:
            self.put_back_config(pstate, ct, ran)
        try:
            await self.start(pstate, ct)
        except OsctlError as again:
            log.error("restart of %s:%s failed: %s; starting it again failed too: %s",
                      ct.pool, ct.id, error.message, again.message)
            return OsctlError(error.code, f"restart of {ct.id} failed: {error.message}; starting it "
                                          f"again failed too ({again.message}): it is stopped",
                              details={"running": False})
        how = "with its config from before the staged changes, undone" if ran else "again"
        log.error("restart of %s:%s failed: %s; started %s", ct.pool, ct.id, error.message, how)
        return OsctlError(error.code, f"restart of {ct.id} failed: {error.message}; it runs {how}",
                          details={"running": True, "staged_changes_undone": ran is not None})

    def put_back_config(self, pstate, ct: Container, config: dict) -> None:
        """The container's persisted config as ``config`` (a ``to_dict``) again, saved and rendered."""
        old = Container.from_dict(config, ct.pool)
        for key in Container.PERSISTED:
            setattr(ct, key, getattr(old, key))
        pstate.save_ct(ct)
        self.write_config(pstate, ct)

    async def reconfigure(self, pstate, ct: Container, restart: bool, timeout: int) -> bool:
        """The container's config changed (and is saved). A running container
        is marked as having a restart pending (until its next start) and,
        with ``restart``, restarts into it now. True when it was restarted."""
        self.write_config(pstate, ct)
        if not ct.running:
            return False
        ct.restart_pending = True
        pstate.save_ct(ct)
        if restart:
            await self.restart(pstate, ct, timeout)
        return restart

    async def hook(self, ct: Container, hook: str, pid: int | None,
                   target: str | None = None) -> None:
        if hook == "start-host":
            # None when LXC starts it again after a reboot from inside.
            attempt = self.attempts.get((ct.pool, ct.id))
            why = None
            try:
                # Its bind mounts, before its init runs (not LXC's mount
                # entries: their read-only ones its root can remount writable).
                for m in ct.mounts:
                    await binds.mount_live(ct.id, pid, m)
                for handler in self.hook_handlers:
                    await handler(ct, hook, pid)
            except Exception as e:
                why = str(e)
                raise
            finally:
                if attempt is not None and not attempt.done():
                    attempt.set_result(why)
            self.cgroups.apply_cpu_view(self.cgroups.ct(ct.pool, ct.group, ct.id), ct.limits)
            self.apply(ct, Event.STARTED, pid)
        elif hook == "post-stop":
            if target != "reboot":
                self.record_stop(ct)
            # A reboot from inside: LXC starts it again right away.
            self.apply(ct, Event.REBOOT if target == "reboot" else Event.STOPPED)
            for handler in self.hook_handlers:
                await handler(ct, hook, pid)
