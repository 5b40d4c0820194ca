"""A container's life as LXC sees it: config on disk, start, stop, state.

The daemon learns state changes from LXC's hooks; ``refresh`` asks LXC
directly, which the daemon does once per container at start-up (re-adoption)
and after a start or stop command returns.
"""

from __future__ import annotations

from typing import Callable

from osctl.protocol import OsctlError

from ..model.container import RUNNING, STARTING, STOPPED, STOPPING, Container
from ..template import Templates
from .lxc import LxcRuntime
from .lxc_config import Hooks, LxcSpec, render


class Containers:
    def __init__(self, lxc: LxcRuntime, templates: Templates, hooks: Hooks,
                 on_state: Callable[[Container], None]):
        self.lxc = lxc
        self.templates = templates
        self.hooks = hooks
        self.on_state = on_state
        # Extra LXC lines contributed by later layers (network, features):
        # each provider is called with (pool_state, ct) and returns lines.
        self.config_providers: list[Callable] = []
        # Called (awaited) with (pool_state, ct) before each start: what later
        # layers write into the rootfs (the network configuration, say).
        self.before_start: list[Callable] = []
        # Called (awaited) with (ct, hook, pid) for each LXC hook; one that
        # raises at start-host makes the start fail.
        self.hook_handlers: list[Callable] = []
        # Why a start-host hook refused, so that the failed start says so
        # rather than only "the hook exited 1".
        self.hook_errors: dict[tuple[str, str], str] = {}

    def set_state(self, ct: Container, state: str, pid: int | None = None) -> None:
        pid = pid if state == RUNNING else None
        if (ct.state, ct.init_pid) != (state, pid):
            ct.state, ct.init_pid = state, pid
            self.on_state(ct)

    def render(self, pstate, ct: Container) -> str:
        user = pstate.users[ct.user]
        extra = [line for provider in self.config_providers for line in provider(pstate, ct)]
        try:
            tpl_conf = self.templates.get(ct.distribution).lxc_conf
        except Exception:
            tpl_conf = "lxc.init.cmd = /sbin/init\n"
        return render(LxcSpec(
            ct=ct, user=user, rootfs=pstate.pool.rootfs(ct.id), idmap=pstate.pool.idmap,
            log_file=self.lxc.log_file(ct.pool, ct.id), hooks=self.hooks,
            template_conf=tpl_conf, extra=extra,
        ))

    def write_config(self, pstate, ct: Container) -> None:
        self.lxc.write_config(ct.pool, ct.id, self.render(pstate, ct))

    async def refresh(self, ct: Container) -> None:
        state, pid = await self.lxc.aquery(ct.pool, ct.id)
        self.set_state(ct, state, pid)

    async def start(self, pstate, ct: Container) -> None:
        for prepare in self.before_start:
            await prepare(pstate, ct)
        self.write_config(pstate, ct)
        self.set_state(ct, STARTING)
        key = (ct.pool, ct.id)
        self.hook_errors.pop(key, None)
        try:
            await self.lxc.start(ct.pool, ct.id)
        except OsctlError as e:
            why = self.hook_errors.pop(key, None)
            if why:
                raise OsctlError(e.code, f"container {ct.id} failed to start: {why}") from None
            raise
        finally:
            await self.refresh(ct)

    async def stop(self, ct: Container, timeout: int, kill: bool = False) -> None:
        if ct.state == STOPPED:
            await self.refresh(ct)
            if ct.state == STOPPED:
                return
        self.set_state(ct, STOPPING)
        try:
            await self.lxc.stop(ct.pool, ct.id, timeout, kill)
        finally:
            await self.refresh(ct)

    async def hook(self, ct: Container, hook: str, pid: int | None) -> None:
        if hook == "start-host":
            try:
                for handler in self.hook_handlers:
                    await handler(ct, hook, pid)
            except Exception as e:
                self.hook_errors[(ct.pool, ct.id)] = str(e)
                raise
            self.set_state(ct, RUNNING, pid)
        elif hook in ("post-stop", "stop"):
            self.set_state(ct, STOPPED)
            for handler in self.hook_handlers:
                await handler(ct, hook, pid)
