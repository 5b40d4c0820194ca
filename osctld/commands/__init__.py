"""The registry of wire verbs: one decorated function per verb.

A command's signature is its argument schema: ``ctx`` first, then keyword
parameters with type hints. The dispatcher (``osctld/dispatch.py``) checks
the request's arguments against the hints (missing, unknown, mistyped,
out of range: ``invalid``) before the command runs, so command bodies start
from typed, present values.

Every plain integer argument carries its range (``Annotated[int, Between(lo,
hi)]``, e.g. ``Seconds``): msgpack delivers any 64-bit value, and a timeout
of 2**63 s or a negative tty must be ``invalid``, not an exception deep in
asyncio or LXC. No string anywhere in the arguments may hold a NUL byte:
none of them means anything with one, and paths, argv and environments
cannot carry it to the kernel.

A state-changing verb declares the object it acts on (``target``): the
dispatcher writes its history line to that object's pool, so a command
body says nothing about its own bookkeeping.

A verb open to accounts declares the permission it needs (``needs``) and
the object whose group it needs it in (``on``, else its ``target``; a
container, a VM or a group). The dispatcher checks it before the command
runs. A verb that declares no permission is root's alone, so that nothing
is open by accident; one that needs a permission but names no object is a
listing, which shows an account only what it may see (``ctx.access``).

Verbs are named ``<object>[.<sub>...].<verb>`` with dots (``ct.netif.ip.add``).
A verb on containers and VMs alike is two names for one handler
(``instance_command``), its ``vm`` parameter bound by the name. Old names
are kept for one release as ``ALIASES`` (docs/design-notes.md has the table):
the dispatcher resolves them (``resolve``) and ``daemon.commands`` lists them.
"""

from __future__ import annotations

import contextlib
import inspect
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Awaitable, Callable, Literal

from osctl.protocol import INVALID, NOT_FOUND, OsctlError

from ..locks import instance_key, pool_key
from ..model.account import ROOT, Access, Perm
from ..model.group import DEFAULT_GROUP, check_group_path
from ..state import split_ref

if TYPE_CHECKING:  # their types only: commands are given a node, never build one
    from ..model.container import Container
    from ..model.vm import VM
    from ..events import Filter
    from ..node import Node
    from ..state import Registry

Handler = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Between:
    """The range of an integer argument: ``Annotated[int, Between(0, 60)]``."""

    lo: int
    hi: int


# Seconds to wait (a stop before the kill, a power-down): a day at most.
Seconds = Annotated[int, Between(0, 86400)]
# Lines of a log to show (ct log, vm log).
LogLines = Annotated[int, Between(1, 100_000)]


def given(**settings: Any) -> list[str]:
    """The names of the settings a ``set`` verb was given (not None): what its
    ``change`` event says changed."""
    return [k for k, v in settings.items() if v is not None]


def user_ref(user: str, pool: str | None) -> str:
    """A user reference, qualified by ``pool`` when the user is given bare."""
    return f"{pool}:{user}" if pool and ":" not in user else user


@dataclass(frozen=True)
class Target:
    """The object a state-changing verb acts on, as its arguments name it.

    ``kind`` says what argument ``arg`` holds: a pool's name (None: the
    default pool), the path a pool is at, a user, a container, a VM or a
    group's path (None: the default group), a maintenance or an account (a service
    account's is in its group's pool, a person's in the default pool: they
    are node state, their history is kept there). ``pool_arg`` names the argument
    that qualifies a bare user or a group; ``pool_of`` an object whose pool
    the group is in.
    """

    kind: Literal["pool", "pool_path", "user", "ct", "vm", "group", "maintenance", "account"]
    arg: str
    pool_arg: str | None = None
    # A group of the pool another object is in (a new container's group is
    # in its user's pool).
    pool_of: Target | None = None

    @property
    def reads(self) -> set[str]:
        """The arguments it is found by."""
        return ({self.arg} | ({self.pool_arg} if self.pool_arg else set())
                | (self.pool_of.reads if self.pool_of else set()))

    def pool(self, registry: Registry, args: dict) -> str:
        """The name of the pool the object is in: OsctlError if it is not
        (or not yet, or no longer) there."""
        value = args.get(self.arg)
        if self.kind == "pool":
            return registry.pool(value).pool.name
        if self.pool_of is not None:
            return self.pool_of.pool(registry, args)
        if self.kind == "group":
            return registry.pool(args.get(self.pool_arg) if self.pool_arg else None).pool.name
        if not isinstance(value, str):  # checked arguments: only a missing one
            raise OsctlError(NOT_FOUND, f"{self.arg} not given")
        if self.kind == "account":
            return registry.pool(split_ref(value.partition("@")[2])[0] if "@" in value
                                 else None).pool.name
        if self.kind == "pool_path":
            for pstate in registry.pools.values():
                if pstate.pool.path == Path(value):
                    return pstate.pool.name
            raise OsctlError(NOT_FOUND, f"no pool at {value}")
        if self.kind == "user":
            pool = args.get(self.pool_arg) if self.pool_arg else None
            return registry.user(user_ref(value, pool))[0].pool.name
        return getattr(registry, self.kind)(value)[0].pool.name

    def group(self, registry: Registry, args: dict) -> tuple[str, str]:
        """The pool and group the object is in (a group: itself); OsctlError
        if it is not there."""
        if self.kind == "group":
            return self.pool(registry, args), check_group_path(args.get(self.arg, DEFAULT_GROUP))
        assert self.kind in ("ct", "vm", "maintenance")
        obj = getattr(registry, self.kind)(args[self.arg])[1]
        return obj.pool, obj.group


@dataclass
class CommandSpec:
    name: str
    func: Handler
    hints: dict[str, Any]
    required: frozenset[str]
    mutating: bool
    summary: str
    target: Target | None = None
    bound: dict[str, Any] = field(default_factory=dict)  # given by the name, not the caller
    needs: Perm | None = None  # None: root's alone
    on: Target | None = None  # what ``needs`` is checked on; None: a listing

    async def run(self, ctx: Context, args: dict) -> Any:
        return await self.func(ctx, **self.bound, **args)


@dataclass(frozen=True)
class Alias:
    """An old wire name, kept for one release: it runs ``verb``. An old name
    that took a ``vm`` flag runs ``vm_verb`` when the flag is true; the flag
    itself is dropped (the new names bind it)."""

    verb: str
    vm_verb: str | None = None

    def resolve(self, args: dict) -> tuple[str, dict]:
        if self.vm_verb is None:
            return self.verb, args
        rest = dict(args)
        vm = rest.pop("vm", False)
        if not isinstance(vm, bool):
            raise OsctlError(INVALID, f"argument 'vm' must be bool, got {type(vm).__name__}")
        return (self.vm_verb if vm else self.verb), rest


REGISTRY: dict[str, CommandSpec] = {}
ALIASES: dict[str, Alias] = {}


def resolve(cmd: str, args: dict) -> tuple[CommandSpec | None, dict]:
    """The verb a wire name runs (None: no such verb), with its arguments."""
    alias = ALIASES.get(cmd)
    if alias is not None:
        cmd, args = alias.resolve(args)
    return REGISTRY.get(cmd), args


def aliases_of(name: str) -> list[str]:
    """The old names that run verb ``name``."""
    return sorted(old for old, a in ALIASES.items() if name in (a.verb, a.vm_verb))


def _alias(old: str, alias: Alias) -> None:
    if old in REGISTRY or ALIASES.get(old, alias) != alias:
        raise RuntimeError(f"alias {old} clashes")
    ALIASES[old] = alias


def command(name: str, *, mutating: bool = False, target: Target | None = None,
            needs: Perm | None = None, on: Target | None = None,
            aliases: tuple[str, ...] = (), bound: dict[str, Any] | None = None,
            ) -> Callable[[Handler], Handler]:
    """Register ``func`` as the handler of wire verb ``name``.

    ``mutating`` commands are the state-changing ones: they are announced as
    command events and written to the history of the pool ``target`` is in.
    ``needs`` is the permission an account needs for it in the group of
    ``on`` (default: ``target``); without it the verb is root's alone.
    ``aliases`` are its old names; ``bound`` the arguments its name gives.
    """
    on = on or (target if needs else None)

    def register(func: Handler) -> Handler:
        if name in REGISTRY or name in ALIASES:
            raise RuntimeError(f"command {name} registered twice")
        sig = inspect.signature(func)
        hints = typing.get_type_hints(func, include_extras=True)
        params = [p for p in list(sig.parameters.values())[1:]  # skip ctx
                  if p.name not in (bound or {})]
        names = {p.name for p in params}
        if mutating != (target is not None) and not (target and needs) \
                or any(t and not t.reads <= names for t in (target, on)):
            raise RuntimeError(f"command {name}: a state-changing verb, and only one, "
                               "names its target among its arguments (or one that needs "
                               "a permission on it)")
        if on and (not needs or on.kind not in ("ct", "vm", "group", "maintenance")) or (needs and mutating and not on):
            raise RuntimeError(f"command {name}: a permission is needed in the group of a "
                               "container, a VM, a group or a maintenance it names")
        REGISTRY[name] = CommandSpec(
            name=name,
            func=func,
            hints={p.name: hints.get(p.name, Any) for p in params},
            required=frozenset(p.name for p in params if p.default is inspect.Parameter.empty),
            mutating=mutating,
            summary=(func.__doc__ or "").strip().split("\n")[0],
            target=target,
            bound=dict(bound or {}),
            needs=needs,
            on=on,
        )
        for old in aliases:
            _alias(old, Alias(name))
        return func

    return register


def instance_command(verb: str, *, mutating: bool = False, needs: Perm | None = None,
                     alias: str | None = None) -> Callable[[Handler], Handler]:
    """Register ``func`` as ``ct.<verb>`` and ``vm.<verb>``: one handler, its
    ``vm`` parameter bound by the name, its target the ``id`` of that kind.
    ``alias`` is the old name that chose the kind by a ``vm`` flag."""

    def register(func: Handler) -> Handler:
        for kind in ("ct", "vm"):
            command(f"{kind}.{verb}", mutating=mutating, bound={"vm": kind == "vm"}, needs=needs,
                    target=Target(kind, "id") if mutating or needs else None)(func)
        if alias:
            _alias(alias, Alias(f"ct.{verb}", f"vm.{verb}"))
        return func

    return register


@dataclass
class Context:
    """What a command gets besides its arguments."""

    node: Node
    op: str  # "<connection>:<request id>", what op.cancel names
    fds: list[int] = field(default_factory=list)
    progress: Callable[[dict], None] = lambda data: None
    # Who asks: root, or the account whose permissions were checked.
    access: Access = ROOT
    subscribe: Callable[[Filter], None] | None = None


@contextlib.asynccontextmanager
async def hold_instance(ctx: Context, inst: Container | VM, what: str, new: bool = False):
    """Hold a container's or VM's lock, and its pool's lock shared (so that
    pool export waits for it). An existing object is looked for again once
    the locks are held: a command before us may have deleted it."""
    locks = ctx.node.locks
    async with locks.hold(pool_key(inst.pool), what, shared=True), \
            locks.hold(instance_key(inst.kind, inst.pool, inst.id), what):
        pstate = ctx.node.registry.pools.get(inst.pool)
        if pstate is None:
            raise OsctlError(NOT_FOUND, f"pool {inst.pool} is gone")
        if not new and pstate.instances(inst.kind).get(inst.id) is not inst:
            raise OsctlError(NOT_FOUND, f"{inst.kind} {inst.pool}:{inst.id} is gone")
        yield


def load_all() -> None:
    """Import every command module so that their verbs register."""
    from . import (account, attr, cluster, cluster_ha, consumption, ct, ct_copy, ct_dataset,  # noqa: F401
                   ct_device, ct_feature, ct_import_vz, ct_inside, ct_mount, ct_prlimit, ct_rename,
                   ct_reinstall, ct_replica, ct_send, ct_snapshot, ct_usage, daemon, flavor, group,
                   maintenance, netif, pool, transfer, user, vm, vm_migrate, vm_replica)
