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
"""

from __future__ import annotations

import contextlib
import inspect
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Awaitable, Callable, Literal

from osctl.protocol import NOT_FOUND, OsctlError

from ..locks import ct_key, pool_key, vm_key

if TYPE_CHECKING:  # their types only: commands are given a node, never build one
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


def user_ref(user: str, pool: str | None) -> str:
    """A user reference, qualified by ``pool`` when the user is given bare."""
    return f"{pool}:{user}" if pool and ":" not in user else user


@dataclass(frozen=True)
class Target:
    """The object a state-changing verb acts on, as its arguments name it.

    ``kind`` says what argument ``arg`` holds: a pool's name (None: the
    default pool), the path a pool is at, a user, a container, a VM, or an
    ``instance``: a VM if the verb's ``vm`` argument is true, else a
    container. ``pool_arg`` names the argument that qualifies a bare user.
    """

    kind: Literal["pool", "pool_path", "user", "ct", "vm", "instance"]
    arg: str
    pool_arg: str | None = None

    @property
    def reads(self) -> set[str]:
        """The arguments it is found by."""
        return {self.arg} | ({self.pool_arg} if self.pool_arg else set()) | (
            {"vm"} if self.kind == "instance" else set())

    def pool(self, registry: Registry, args: dict) -> str:
        """The name of the pool the object is in: OsctlError if it is not
        (or not yet, or no longer) there."""
        value = args.get(self.arg)
        if self.kind == "pool":
            return registry.pool(value).pool.name
        if not isinstance(value, str):  # checked arguments: only a missing one
            raise OsctlError(NOT_FOUND, f"{self.arg} not given")
        if self.kind == "pool_path":
            for pstate in registry.pools.values():
                if pstate.pool.path == Path(value):
                    return pstate.pool.name
            raise OsctlError(NOT_FOUND, f"no pool at {value}")
        if self.kind == "user":
            pool = args.get(self.pool_arg) if self.pool_arg else None
            return registry.user(user_ref(value, pool))[0].pool.name
        kind = ("vm" if args.get("vm") else "ct") if self.kind == "instance" else self.kind
        return getattr(registry, kind)(value)[0].pool.name


@dataclass
class CommandSpec:
    name: str
    func: Handler
    hints: dict[str, Any]
    required: frozenset[str]
    mutating: bool
    summary: str
    target: Target | None = None


REGISTRY: dict[str, CommandSpec] = {}


def command(name: str, *, mutating: bool = False, target: Target | None = None) -> Callable[[Handler], Handler]:
    """Register ``func`` as the handler of wire verb ``name``.

    ``mutating`` commands are the state-changing ones: they are announced as
    command events and written to the history of the pool ``target`` is in.
    """

    def register(func: Handler) -> Handler:
        if name in REGISTRY:
            raise RuntimeError(f"command {name} registered twice")
        sig = inspect.signature(func)
        hints = typing.get_type_hints(func, include_extras=True)
        params = list(sig.parameters.values())[1:]  # skip ctx
        if mutating != (target is not None) or (target and not target.reads <= {p.name for p in params}):
            raise RuntimeError(f"command {name}: a state-changing verb, and only one, "
                               "names its target among its arguments")
        REGISTRY[name] = CommandSpec(
            name=name,
            func=func,
            hints={p.name: hints.get(p.name, Any) for p in params},
            required=frozenset(p.name for p in params if p.default is inspect.Parameter.empty),
            mutating=mutating,
            summary=(func.__doc__ or "").strip().split("\n")[0],
            target=target,
        )
        return func

    return register


@dataclass
class Context:
    """What a command gets besides its arguments."""

    node: Node
    op: str  # "<connection>:<request id>", what op.cancel names
    peer_uid: int
    fds: list[int] = field(default_factory=list)
    progress: Callable[[dict], None] = lambda data: None
    subscribe: Callable[[dict], None] | None = None


@contextlib.asynccontextmanager
async def hold_server(ctx: Context, server: Any, what: str, new: bool = False):
    """Hold a container's or VM's lock, and its pool's lock shared (so that
    pool export waits for it). An existing object is looked for again once
    the locks are held: a command before us may have deleted it."""
    kind, table = ("vm", "vms") if type(server).__name__ == "VM" else ("ct", "cts")
    key = vm_key if kind == "vm" else ct_key
    locks = ctx.node.locks
    async with locks.hold(pool_key(server.pool), what, shared=True), \
            locks.hold(key(server.pool, server.id), what):
        pstate = ctx.node.registry.pools.get(server.pool)
        if pstate is None:
            raise OsctlError(NOT_FOUND, f"pool {server.pool} is gone")
        if not new and getattr(pstate, table).get(server.id) is not server:
            raise OsctlError(NOT_FOUND, f"{kind} {server.pool}:{server.id} is gone")
        yield


def load_all() -> None:
    """Import every command module so that their verbs register."""
    from . import (ct, ct_device, ct_feature, ct_prlimit, daemon, group, netif, pool,  # noqa: F401
                   user, vm)
