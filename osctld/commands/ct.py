"""Containers: create, run, enter, change, delete."""

from __future__ import annotations

import shutil

from osctl.protocol import CONFLICT, EXISTS, INVALID, OsctlError

from ..distconfig import for_distribution
from ..model.container import Container, check_resolvers
from ..model.naming import check_hostname, check_name
from ..model.pool import IDMAP_CHOWN
from ..runtime.idmapped import shift_tree
from ..undo import Undo
from . import Context, command

STOP_TIMEOUT = 60


def _lock(ctx: Context, ct: Container, what: str):
    return ctx.daemon.locks.hold(("ct", ct.pool, ct.id), what)


def _find(ctx: Context, ref: str):
    pstate, ct = ctx.daemon.registry.ct(ref)
    ctx.pool = pstate.pool.name
    return pstate, ct


def _need_running(ct: Container) -> None:
    if not ct.running:
        raise OsctlError(CONFLICT, f"container {ct.id} is {ct.state}, not running")


@command("ct.new", mutating=True)
async def new(ctx: Context, id: str, user: str, template: str = "busybox",
              version: str | None = None, pool: str | None = None,
              hostname: str | None = None, dns_resolvers: list[str] | None = None,
              autostart: bool = False) -> dict:
    """Create a container from a template; nothing is left behind if a step fails."""
    d = ctx.daemon
    check_name("container", id)
    upool, u = d.registry.user(f"{pool}:{user}" if pool and ":" not in user else user)
    pstate = upool
    ctx.pool = pstate.pool.name
    tpl = d.templates.get(template)
    version = tpl.version(version)
    ct = Container(id=id, pool=pstate.pool.name, user=u.name, distribution=tpl.distribution,
                   version=version, hostname=hostname if hostname is not None else id,
                   dns_resolvers=dns_resolvers or [], autostart=autostart)
    backend = d.backend(pstate)
    async with _lock(ctx, ct, "ct.new"), Undo() as undo:
        if id in pstate.cts:
            raise OsctlError(EXISTS, f"container {id!r} exists in pool {pstate.pool.name}")
        pstate.cts[id] = ct  # reserve the id while the rootfs is made
        undo.push(pstate.cts.pop, id)
        tpl_rootfs = await d.templates.ensure(backend, tpl, version, ctx.progress)
        rootfs = pstate.pool.rootfs(id)
        ctx.progress({"step": "rootfs", "message": f"cloning {tpl.name} {version}"})
        undo.push(shutil.rmtree, pstate.pool.ct_dir(id), True)
        undo.push(backend.destroy, rootfs)
        await backend.clone(tpl_rootfs, rootfs)
        if pstate.pool.idmap == IDMAP_CHOWN:
            ctx.progress({"step": "rootfs", "message": "shifting ownership (no idmapped mounts here)"})
            shift_tree(rootfs, u.root_uid, u.root_gid)
        dist = for_distribution(ct.distribution)(rootfs)
        dist.set_hostname(ct.hostname)
        if ct.dns_resolvers:
            dist.set_dns(ct.dns_resolvers)
        undo.push(d.containers.lxc.remove, ct.pool, id)
        d.containers.write_config(pstate, ct)
        undo.push(pstate.store.delete, "ct", id)
        pstate.save_ct(ct)
    d.events.publish("add", object="ct", pool=ct.pool, id=id)
    return ct.public()


@command("ct.ls")
async def ls(ctx: Context, pool: str | None = None, user: str | None = None,
             state: str | None = None) -> list:
    """Containers, optionally only of a pool, a user or in a state."""
    cts = ctx.daemon.registry.all_cts()
    return [c.public() for c in cts
            if (pool is None or c.pool == pool) and (user is None or c.user == user)
            and (state is None or c.state == state)]


@command("ct.show")
async def show(ctx: Context, id: str) -> dict:
    """One container."""
    pstate, ct = _find(ctx, id)
    u = pstate.users[ct.user]
    return {**ct.public(), "rootfs": str(pstate.pool.rootfs(ct.id)),
            "uid_map": [str(e) for e in u.uid_map], "gid_map": [str(e) for e in u.gid_map]}


@command("ct.start", mutating=True)
async def start(ctx: Context, id: str) -> dict:
    """Start a container."""
    pstate, ct = _find(ctx, id)
    async with _lock(ctx, ct, "ct.start"):
        if ct.running:
            raise OsctlError(CONFLICT, f"container {ct.id} is already running")
        await ctx.daemon.containers.start(pstate, ct)
    return ct.public()


@command("ct.stop", mutating=True)
async def stop(ctx: Context, id: str, timeout: int = STOP_TIMEOUT) -> dict:
    """Stop cleanly (the init's halt signal), killing it after ``timeout`` seconds."""
    _, ct = _find(ctx, id)
    async with _lock(ctx, ct, "ct.stop"):
        await ctx.daemon.containers.stop(ct, timeout)
    return ct.public()


@command("ct.restart", mutating=True)
async def restart(ctx: Context, id: str, timeout: int = STOP_TIMEOUT) -> dict:
    """Stop, then start again."""
    pstate, ct = _find(ctx, id)
    async with _lock(ctx, ct, "ct.restart"):
        await ctx.daemon.containers.stop(ct, timeout)
        await ctx.daemon.containers.start(pstate, ct)
    return ct.public()


@command("ct.kill", mutating=True)
async def kill(ctx: Context, id: str) -> dict:
    """Stop at once, with no clean shutdown."""
    _, ct = _find(ctx, id)
    async with _lock(ctx, ct, "ct.kill"):
        await ctx.daemon.containers.stop(ct, 0, kill=True)
    return ct.public()


@command("ct.exec")
async def exec_(ctx: Context, id: str, argv: list[str], env: dict | None = None) -> dict:
    """Run a command inside. With three passed descriptors (stdin, stdout,
    stderr) it runs on them; without, its output is returned."""
    _, ct = _find(ctx, id)
    _need_running(ct)
    if not argv:
        raise OsctlError(INVALID, "ct.exec needs a command")
    env = {str(k): str(v) for k, v in (env or {}).items()}
    code, out, err = await ctx.daemon.containers.lxc.attach(ct.pool, ct.id, argv, ctx.fds or None, env)
    result = {"exit_code": code}
    if not ctx.fds:
        result.update(stdout=out, stderr=err)
    return result


@command("ct.attach")
async def attach(ctx: Context, id: str, env: dict | None = None) -> dict:
    """A login shell inside, on the caller's terminal (passed as descriptors)."""
    _, ct = _find(ctx, id)
    _need_running(ct)
    if len(ctx.fds) != 3:
        raise OsctlError(INVALID, "ct.attach needs the caller's stdin, stdout and stderr")
    env = {str(k): str(v) for k, v in (env or {}).items()}
    code, _, _ = await ctx.daemon.containers.lxc.attach(ct.pool, ct.id, [], ctx.fds, env)
    return {"exit_code": code}


@command("ct.console")
async def console(ctx: Context, id: str, tty: int = 0) -> dict:
    """The container's console, on the caller's terminal; Ctrl-a q leaves."""
    _, ct = _find(ctx, id)
    _need_running(ct)
    code = await ctx.daemon.containers.lxc.console(ct.pool, ct.id, ctx.fds, tty)
    return {"exit_code": code}


@command("ct.del", mutating=True)
async def delete(ctx: Context, id: str, force: bool = False) -> dict:
    """Delete a stopped container (``force``: stop it first) and its data."""
    d = ctx.daemon
    pstate, ct = _find(ctx, id)
    async with _lock(ctx, ct, "ct.del"):
        if ct.running or ct.state != "stopped":
            if not force:
                raise OsctlError(CONFLICT, f"container {ct.id} is {ct.state}: stop it or use --force")
            await d.containers.stop(ct, 0, kill=True)
        # Config first: a crash after it leaves an orphan dataset, never a
        # config that points at a half-deleted rootfs.
        pstate.store.delete("ct", ct.id)
        del pstate.cts[ct.id]
        d.containers.lxc.remove(ct.pool, ct.id)
        await d.backend(pstate).destroy(pstate.pool.rootfs(ct.id))
        shutil.rmtree(pstate.pool.ct_dir(ct.id), ignore_errors=True)
    d.events.publish("remove", object="ct", pool=ct.pool, id=ct.id)
    return {"id": ct.id, "pool": ct.pool}


@command("ct.set", mutating=True)
async def set_(ctx: Context, id: str, hostname: str | None = None,
               dns_resolvers: list[str] | None = None, autostart: bool | None = None,
               autostart_priority: int | None = None) -> dict:
    """Change settings; hostname and DNS apply at once to a running container."""
    d = ctx.daemon
    pstate, ct = _find(ctx, id)
    if hostname is not None:
        check_hostname(hostname)
    if dns_resolvers is not None:
        dns_resolvers = check_resolvers(dns_resolvers)
    async with _lock(ctx, ct, "ct.set"):
        dist = for_distribution(ct.distribution)(pstate.pool.rootfs(ct.id))
        if hostname is not None:
            dist.set_hostname(hostname)
            ct.hostname = hostname
            if ct.running:
                await d.containers.lxc.attach(ct.pool, ct.id, ["hostname", hostname], None)
        if dns_resolvers is not None:
            dist.set_dns(dns_resolvers)
            ct.dns_resolvers = dns_resolvers
        if autostart is not None:
            ct.autostart = autostart
        if autostart_priority is not None:
            ct.autostart_priority = autostart_priority
        pstate.save_ct(ct)
        d.containers.write_config(pstate, ct)
    return ct.public()


@command("ct.passwd", mutating=True)
async def passwd(ctx: Context, id: str, user: str, password: str) -> dict:
    """Set a user's password inside a running container."""
    pstate, ct = _find(ctx, id)
    _need_running(ct)
    if ":" in user or "\n" in user or "\n" in password:
        raise OsctlError(INVALID, "user and password may not hold ':' or newlines")
    dist = for_distribution(ct.distribution)(pstate.pool.rootfs(ct.id))
    argv, stdin = dist.passwd_command(user, password)
    async with _lock(ctx, ct, "ct.passwd"):
        code, _, err = await ctx.daemon.containers.lxc.attach(ct.pool, ct.id, argv, None, stdin=stdin)
    if code != 0:
        why = err.decode(errors="replace").strip() or f"exit {code}"
        raise OsctlError(INVALID, f"{argv[0]} in {ct.id} failed: {why}")
    return {"id": ct.id, "user": user}
