"""Containers: create, run, enter, change, delete."""

from __future__ import annotations

import asyncio
import copy
import logging
import re
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Callable

from osctl.protocol import CONFLICT, INVALID, OsctlError

from .. import maintenance
from ..distconfig import for_distribution
from ..model.account import Perm
from ..model.bounds import shown
from ..model.container import Container, check_resolvers
from ..model.group import DEFAULT_GROUP, check_group_path
from ..model.lifecycle import State
from ..model.limits import Limits
from ..model.naming import check_hostname, check_name
from ..model.pool import IDMAP_CHOWN
from ..model.units import parse_size
from ..runtime import prlimits
from ..runtime.idmapped import shift_tree
from ..runtime.statfs import wants_proxy
from ..runtime.usage import disk_used
from ..state import matching
from ..storage import backend_for
from ..transfer import copies
from ..undo import Undo
from ..cluster.sync import ct_size
from . import (Between, Context, Seconds, Target, cluster, command, ct_usage, deletion, given,
               hold_instance, user_ref)
from .instance import creating, group_to, lifecycle

if TYPE_CHECKING:
    from ..template import Template

STOP_TIMEOUT = 60
# How long ``ct start --wait`` waits for the system inside to be up by default.
UP_TIMEOUT = 120
STOPPED, SOFT_DELETED = State.STOPPED, State.SOFT_DELETED
# How long a tenant's own program (chpasswd, passwd) may take before it is killed.
INSIDE_TIMEOUT = 30
log = logging.getLogger(__name__)


def find(ctx: Context, ref: str):
    """The container ``ref`` names (``[pool:]id``) and its pool."""
    return ctx.node.registry.ct(ref)


async def reconfigure(ctx: Context, pstate, ct: Container, change: Callable[[], None],
                      restart: bool, timeout: int = STOP_TIMEOUT) -> dict:
    """Apply ``change`` to the container's config under its lock and save it.
    A running container has it staged (``pending_restart``) and its restart
    planned into the group's maintenance window, or (``restart``) restarts
    into it now; if that start fails, the old config comes back and the
    container is started again as it was."""
    node = ctx.node
    before = copy.deepcopy(ct.to_dict())
    was_running = ct.running

    async def restore() -> None:
        node.containers.put_back_config(pstate, ct, before)
        if was_running and not ct.running:
            await node.containers.start(pstate, ct)

    async with hold_instance(ctx, ct, "ct.reconfigure"), Undo() as undo:
        change()
        undo.push(restore)
        pstate.save_ct(ct)
        if was_running and not ct.restart_pending:
            ct.running_config = before  # what a failed restart goes back to
        restarted = await node.containers.reconfigure(pstate, ct, restart, timeout)
        planned = None
        if maintenance.pending(ct):  # staged: its restart waits for the group's window
            after = ct.to_dict()
            changed = {k: before[k] for k in Container.PERSISTED
                       if k != "restart_pending" and before[k] != after[k]}
            planned = maintenance.plan(node, pstate, ct, changed, timeout).public()
    return {**ct.public(), "restarted": restarted, "maintenance": planned}


def _limits(ctx: Context, base: Limits, changes: dict | None) -> Limits:
    """``base`` with operator-given limits (``none`` lifts one), checked."""
    out = base.updated(changes or {}, ctx.node.config.max_cpu_limit)
    ctx.node.containers.cgroups.check(out)
    return out


def _flavored(pstate, flavor: str | None, limits: dict | None,
              disk: str | int | None) -> tuple[dict | None, str | int | None]:
    """Limits and disk: those given, and flavor ``flavor``'s where not given.
    A flavor's disk becomes a quota only where the pool's backend has quotas."""
    if flavor is None:
        return limits, disk
    f = pstate.flavor(flavor)
    if disk is None and backend_for(pstate.pool).quotas:
        disk = f.disk
    return {**f.ct_limits(), **(limits or {})}, disk


def _disk(value: str | int | None) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "unlimited")):
        return None
    return parse_size(value, "disk quota")


# execve(2) refuses a single string of 32 pages or more, and all of them
# together past a quarter of the stack limit: keep well inside both.
MAX_ARG = 128 * 1024 - 1
MAX_ARGS_TOTAL = 1 << 20
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")


def _command_line(argv: list[str], env: dict | None) -> dict[str, str]:
    """The environment of a command run inside, checked with its argv as
    lxc-attach will pass them on: ``invalid`` here, not E2BIG later."""
    out = {}
    for k, v in (env or {}).items():
        if not isinstance(k, str) or not ENV_NAME.match(k):
            raise OsctlError(INVALID, f"invalid environment variable name {shown(k)}: use "
                                      "letters, digits and _, not starting with a digit")
        if isinstance(v, (dict, list, bool)) or v is None:
            raise OsctlError(INVALID, f"environment variable {k} must be a string, "
                                      f"not {type(v).__name__}")
        out[k] = str(v)
    strings = list(argv) + [f"{k}={v}" for k, v in out.items()]
    for a in strings:
        if len(a.encode(errors="surrogateescape")) > MAX_ARG:
            raise OsctlError(INVALID, f"argument or variable {shown(a)} is too long: "
                                      f"{MAX_ARG} bytes at most")
    if sum(len(a) + 1 for a in strings) > MAX_ARGS_TOTAL:
        raise OsctlError(INVALID, f"command and environment are too long: {MAX_ARGS_TOTAL} "
                                  "bytes at most together")
    return out


def _need_running(ct: Container) -> None:
    if not ct.running:
        raise OsctlError(CONFLICT, f"container {ct.id} is {ct.state}, not running")


@command("ct.new", mutating=True, target=Target("user", "user", pool_arg="pool"),
         needs=Perm.MANAGER,
         on=Target("group", "group", pool_of=Target("user", "user", pool_arg="pool")))
async def new(ctx: Context, id: str, user: str, template: str = "busybox",
              version: str | None = None, pool: str | None = None,
              hostname: str | None = None, dns_resolvers: list[str] | None = None,
              autostart: bool = False, group: str = DEFAULT_GROUP, limits: dict | None = None,
              disk: str | int | None = None, flavor: str | None = None,
              node: str | None = None, server_group: str | None = None,
              start: bool = False) -> dict:
    """Create a container from a template, sized by a flavor and the limits
    and disk given (which override it); nothing is left behind if a step fails.
    In a cluster, ``node`` (a member, or ``auto``) and ``server_group`` have
    the leader place it, and that node create it (its user and pool must be there).
    ``start``: started once created, on its node (a start that fails leaves
    it created, stopped, as ``ct.start`` after ``ct.new`` would)."""
    check_name("container", id)
    if node is not None or server_group is not None:
        args = dict(id=id, user=user, template=template, version=version, pool=pool,
                    hostname=hostname, dns_resolvers=dns_resolvers, autostart=autostart,
                    group=group, limits=limits, disk=disk, flavor=flavor, start=start)
        # Sized here: flavors are named alike on every member.
        sized, quota = _flavored(ctx.node.registry.pool(pool), flavor, limits, disk)
        size = ct_size(_limits(ctx, Limits(), sized), _disk(quota))
        return await cluster.create_on(ctx, "ct", id, size, node, server_group, args)
    cluster.check_free(ctx, "ct", id)
    here = ctx.node
    pstate, u = here.registry.user(user_ref(user, pool))
    limits, disk = _flavored(pstate, flavor, limits, disk)
    pstate.group(check_group_path(group))
    tpl = here.templates.get(template)
    version = tpl.version(version)
    hostname = id if hostname is None else hostname
    ct = Container(id=id, pool=pstate.pool.name, user=u.name, distribution=tpl.distribution,
                   version=version, template=tpl.name, hostname=hostname,
                   dns_resolvers=dns_resolvers or [], autostart=autostart, group=group,
                   limits=_limits(ctx, Limits(), limits), disk=_disk(disk), flavor=flavor)
    backend = backend_for(pstate.pool)
    if ct.disk is not None:
        backend.need_quotas()
    async with creating(ctx, pstate, ct, u, backend.quotas) as undo:
        rootfs = pstate.pool.rootfs(id)
        if rootfs.exists():
            # No config holds this id: a crash or a failed delete left it.
            log.warning("removing the orphaned rootfs %s before reusing id %s", rootfs, id)
            await backend.destroy(rootfs)
        undo.push(shutil.rmtree, pstate.pool.ct_dir(id), True)
        await fresh_rootfs(ctx, pstate, ct, tpl, rootfs, undo)
        undo.push(here.containers.lxc.remove, ct.pool, id)
        here.containers.write_config(pstate, ct)
    return await lifecycle(ctx, "ct", f"{ct.pool}:{id}", "start") if start else ct.public()


async def fresh_rootfs(ctx: Context, pstate, ct: Container, tpl: Template, dest: Path,
                       undo: Undo) -> None:
    """A new root filesystem for ``ct`` at ``dest``: template ``tpl`` at
    ``ct.version`` cloned, with the container's disk quota, owners (where
    the pool has no idmapped mounts), hostname and DNS; ``undo`` removes it."""
    backend = backend_for(pstate.pool)
    tpl_rootfs = await ctx.node.templates.ensure(backend, tpl, ct.version, ctx.progress)
    ctx.progress({"step": "rootfs", "message": f"cloning {tpl.name} {ct.version}"})
    undo.push(backend.destroy, dest)
    await backend.clone(tpl_rootfs, dest)
    if ct.disk is not None:
        await backend.set_quota(dest, ct.disk)
    if pstate.pool.idmap == IDMAP_CHOWN:
        ctx.progress({"step": "rootfs", "message": "shifting ownership (no idmapped mounts here)"})
        u = pstate.users[ct.user]
        await asyncio.to_thread(shift_tree, dest, u.root_uid, u.root_gid)
    dist = for_distribution(tpl.distribution)(dest)
    if ct.hostname is not None:
        dist.set_hostname(ct.hostname)
    if ct.dns_resolvers:
        dist.set_dns(ct.dns_resolvers)


@command("ct.ls", needs=Perm.STATS)
async def ls(ctx: Context, pool: str | None = None, user: str | None = None,
             state: str | None = None, usage: bool = False) -> list:
    """Containers, optionally only of a pool, a user or in a state (an
    account's: those it may see); ``usage`` adds what each uses (a few
    cgroup reads per running container, so only when asked)."""
    now = time.time()
    links = await ctx.node.net.all_counters() if usage else {}
    pools = ctx.node.registry.pools
    return [{**c.public(), **(ct_usage.usage_columns(ctx, pools[c.pool], c, now, links)
                              if usage else {})}
            for c in matching(ctx.node.registry.all_cts(), pool, user, state)
            if ctx.access.may(Perm.STATS, c.pool, c.group)]


@command("ct.show", target=Target("ct", "id"), needs=Perm.STATS)
async def show(ctx: Context, id: str) -> dict:
    """One container."""
    pstate, ct = find(ctx, id)
    u = pstate.users[ct.user]
    in_force = ctx.node.containers.limits_in_force(ct)
    out = {**ct.public(), "rootfs": str(pstate.pool.rootfs(ct.id)),
           "uid_map": [str(e) for e in u.uid_map], "gid_map": [str(e) for e in u.gid_map],
           # The tightest of its own and its groups' limits: what binds it.
           "effective_limits": pstate.effective_limits(ct.group, ct.limits).to_dict(),
           # Read back from its cgroup while it runs.
           "limits_in_force": None if in_force is None else in_force.to_dict(),
           # CPU seconds and %, memory, processes, uptime, traffic: None while stopped.
           "usage": ct_usage.ct_usage(ctx, ct, time.time(),
                                      await ctx.node.net.all_counters() if ct.running else None),
           # What its rootfs holds (btrfs: its qgroup; None on dir pools), against ``disk``.
           "disk_used": disk_used(pstate.pool, ct)}
    if ct.running and ct.init_pid and ct.prlimits:
        # What the init really has, not only what is configured.
        out["prlimits_in_force"] = prlimits.in_force(ct.init_pid, sorted(ct.prlimits))
    return out


@command("ct.start", mutating=True, target=Target("ct", "id"), needs=Perm.SUDO_SRV)
async def start(ctx: Context, id: str, wait: bool = False, timeout: Seconds = UP_TIMEOUT) -> dict:
    """Start a container; one already running is left as it is, with a
    note. ``wait``: return once its init is done starting (``ct.wait up``),
    ``busy`` after ``timeout`` seconds."""
    pstate, ct = find(ctx, id)
    note = {}
    async with hold_instance(ctx, ct, "ct.start"):
        if ct.state == State.RUNNING:
            note = {"note": f"container {ct.id} is already running"}
        else:  # the lifecycle table refuses it unless stopped
            await ctx.node.check_home(ct)
            await ctx.node.driver("ct").start(pstate, ct)
    if wait:  # not under its lock: a stop meanwhile ends the wait with busy
        await ct_usage.wait_until(ctx, ct, ct_usage.UP, timeout)
    return {**ct.public(), **note}


@command("ct.stop", mutating=True, target=Target("ct", "id"), needs=Perm.SUDO_SRV)
async def stop(ctx: Context, id: str, timeout: Seconds = STOP_TIMEOUT) -> dict:
    """Stop cleanly (the init's halt signal), killing it after ``timeout`` seconds."""
    return await lifecycle(ctx, "ct", id, "stop", timeout)


@command("ct.restart", mutating=True, target=Target("ct", "id"), needs=Perm.SUDO_SRV)
async def restart(ctx: Context, id: str, timeout: Seconds = STOP_TIMEOUT) -> dict:
    """Stop, then start again: staged changes apply. A start that fails
    starts it again as it ran (see ``Containers.restart``) and says so."""
    return await lifecycle(ctx, "ct", id, "restart", timeout)


@command("ct.kill", mutating=True, target=Target("ct", "id"), needs=Perm.SUDO_SRV)
async def kill(ctx: Context, id: str) -> dict:
    """Stop at once, with no clean shutdown."""
    return await lifecycle(ctx, "ct", id, "kill")


@command("ct.exec", target=Target("ct", "id"), needs=Perm.LOGIN)
async def exec_(ctx: Context, id: str, argv: list[str], env: dict | None = None) -> dict:
    """Run a command inside. With three passed descriptors (stdin, stdout,
    stderr) it runs on them; without, its output is returned."""
    _, ct = find(ctx, id)
    _need_running(ct)
    if not argv:
        raise OsctlError(INVALID, "ct.exec needs a command")
    env = _command_line(argv, env)
    code, out, err = await ctx.node.containers.lxc.attach(ct.pool, ct.id, argv, ctx.fds or None, env)
    result: dict[str, int | bytes] = {"exit_code": code}
    if not ctx.fds:
        result.update(stdout=out, stderr=err)
    return result


@command("ct.attach", target=Target("ct", "id"), needs=Perm.LOGIN)
async def attach(ctx: Context, id: str, env: dict | None = None) -> dict:
    """A login shell inside, on the caller's terminal (passed as descriptors)."""
    _, ct = find(ctx, id)
    _need_running(ct)
    if len(ctx.fds) != 3:
        raise OsctlError(INVALID, "ct.attach needs the caller's stdin, stdout and stderr")
    env = _command_line([], env)
    code, _, _ = await ctx.node.containers.lxc.attach(ct.pool, ct.id, [], ctx.fds, env)
    return {"exit_code": code}


@command("ct.console", target=Target("ct", "id"), needs=Perm.LOGIN)
async def console(ctx: Context, id: str, tty: Annotated[int, Between(0, 63)] = 0) -> dict:
    """The container's console, on the caller's terminal; Ctrl-a q leaves."""
    _, ct = find(ctx, id)
    _need_running(ct)
    code = await ctx.node.containers.lxc.console(ct.pool, ct.id, ctx.fds, tty)
    return {"exit_code": code}


@command("ct.del", mutating=True, target=Target("ct", "id"), needs=Perm.MANAGER)
async def delete(ctx: Context, id: str, force: bool = False, at: str | None = None,
                 cancel: bool = False) -> dict:
    """Delete a stopped (or soft-deleted) container (``force``: stop it
    first, and delete its snapshots too) and its data, and the copy a send
    or replica of it left at another node; or, with ``at``, schedule its
    staged deletion around that date, which ``cancel`` calls off until its
    hard stage."""
    node = ctx.node
    if cancel:
        deletion.past_hard(ctx, "ct", id)
    pstate, ct = find(ctx, id)
    if deletion.staged_args(force, at, cancel):
        return await (deletion.cancel(ctx, pstate, ct) if cancel else
                      deletion.schedule(ctx, pstate, ct, at or ""))
    async with hold_instance(ctx, ct, "ct.del"):
        # Not what the hooks said last: a container rebooting inside is
        # "stopped" between its post-stop and its next start.
        await node.containers.refresh(ct)
        backend = backend_for(pstate.pool)
        if backend.named_snapshots and not force:
            snaps = await backend.snap_list(pstate.pool.rootfs(ct.id))
            if snaps:
                raise OsctlError(CONFLICT, f"container {ct.id} has snapshots "
                                           f"({', '.join(s.name for s in snaps)}): delete them "
                                           "or use --force")
        if ct.running or ct.state not in (STOPPED, SOFT_DELETED):
            if not force:
                raise OsctlError(CONFLICT, f"container {ct.id} is {ct.state}: stop it or use --force")
            await node.containers.stop(ct, 0, kill=True)
        await copies.take_down(node, ct)
        await node.remove_ct(pstate, ct)
    node.events.publish("remove", object="ct", pool=ct.pool, id=ct.id, group=ct.group)
    return {"id": ct.id, "pool": ct.pool}


@command("ct.set", mutating=True, target=Target("ct", "id"), needs=Perm.MANAGER)
async def set_(ctx: Context, id: str, hostname: str | None = None,
               dns_resolvers: list[str] | None = None, autostart: bool | None = None,
               autostart_priority: Annotated[int, Between(0, 10000)] | None = None,
               limits: dict | None = None,
               disk: str | int | None = None, flavor: str | None = None,
               group: str | None = None) -> dict:
    """Change settings; hostname, DNS, limits and disk apply at once to a
    running container. A limit or disk given as ``none`` is lifted; a
    flavor gives the limits and disk not given. The group changes while it
    is stopped, as a VM's (a running container's processes sit in its
    group's cgroup): it starts in the new group's cgroup, bound by its limits."""
    node = ctx.node
    pstate, ct = find(ctx, id)
    limits, disk = _flavored(pstate, flavor, limits, disk)
    if hostname is not None:
        check_hostname(hostname)
    if dns_resolvers is not None:
        dns_resolvers = check_resolvers(dns_resolvers)
    if group is not None:
        group = group_to(ctx, pstate, group, "container")
    async with hold_instance(ctx, ct, "ct.set"):
        if group is not None and group != ct.group:
            pstate.group(group)  # deleted while we waited?
            if ct.state != STOPPED:
                raise OsctlError(CONFLICT, f"container {ct.id} is {ct.state}: stop it to move it "
                                           f"to group {group}")
            node.containers.cgroups.apply_groups(pstate, group)  # its cgroups, with their limits
        if limits is not None or disk is not None:
            await _set_resources(ctx, pstate, ct, limits, disk)
        dist = for_distribution(ct.distribution)(pstate.pool.rootfs(ct.id))
        if hostname is not None:
            dist.set_hostname(hostname)
            ct.hostname = hostname
            if ct.running and ct.init_pid:
                await node.containers.lxc.set_hostname(ct.init_pid, hostname)
        if dns_resolvers is not None:
            dist.set_dns(dns_resolvers)
            ct.dns_resolvers = dns_resolvers
        if autostart is not None:
            ct.autostart = autostart
        if autostart_priority is not None:
            ct.autostart_priority = autostart_priority
        if flavor is not None:
            ct.flavor = flavor
        if group is not None:  # last: a refusal before changes nothing
            ct.group = group
        pstate.save_ct(ct)
        node.containers.write_config(pstate, ct)
    node.events.publish("change", object="ct", pool=ct.pool, id=ct.id, group=ct.group,
                        settings=given(hostname=hostname, dns_resolvers=dns_resolvers,
                                       autostart=autostart, autostart_priority=autostart_priority,
                                       limits=limits, disk=disk, flavor=flavor, group=group))
    return ct.public()


@command("ct.passwd", mutating=True, target=Target("ct", "id"), needs=Perm.LOGIN)
async def passwd(ctx: Context, id: str, user: str, password: str) -> dict:
    """Set a user's password inside a running container."""
    pstate, ct = find(ctx, id)
    _need_running(ct)
    if ":" in user or "\n" in user or "\n" in password:
        raise OsctlError(INVALID, "user and password may not hold ':' or newlines")
    dist = for_distribution(ct.distribution)(pstate.pool.rootfs(ct.id))
    argv, stdin = dist.passwd_command(user, password)
    async with hold_instance(ctx, ct, "ct.passwd"):
        code, _, err = await ctx.node.containers.lxc.attach(
            ct.pool, ct.id, argv, None, stdin=stdin, timeout=INSIDE_TIMEOUT)
    if code != 0:
        why = err.decode(errors="replace").strip() or f"exit {code}"
        raise OsctlError(INVALID, f"{argv[0]} in {ct.id} failed: {why}")
    return {"id": ct.id, "user": user}


async def _set_resources(ctx: Context, pstate, ct: Container, limits: dict | None,
                         disk: str | int | None) -> None:
    """New limits and disk quota: checked against the user's quota, put in
    force (live where it runs), then kept; a refusal on the way changes nothing."""
    containers = ctx.node.containers
    backend = backend_for(pstate.pool)
    new_limits = _limits(ctx, ct.limits, limits)
    new_disk = ct.disk if disk is None else _disk(disk)
    if disk is not None:
        backend.need_quotas()
    pstate.check_quota(replace(ct, limits=new_limits, disk=new_disk), backend.quotas)
    async with Undo() as undo:
        if disk is not None:
            rootfs = pstate.pool.rootfs(ct.id)
            await backend.set_quota(rootfs, new_disk)
            undo.push(backend.set_quota, rootfs, ct.disk)
        if limits is not None and ct.running:
            undo.push(containers.apply_limits, replace(ct))
            containers.apply_limits(replace(ct, limits=new_limits))
    kind = pstate.pool.backend
    if ct.running and wants_proxy(kind, new_disk) and not wants_proxy(kind, ct.disk):
        # df shows the quota through a seccomp filter that LXC sets at start.
        ct.restart_pending = True
    ct.limits, ct.disk = new_limits, new_disk
