"""The registry of wire verbs: one decorated function per verb.

A command's signature is its argument schema: ``ctx`` first, then keyword
parameters with type hints. ``dispatch`` checks the request's arguments
against the hints (missing, unknown, mistyped: ``invalid``) before the
command runs, so command bodies start from typed, present values.

Every plain integer argument carries its range (``Annotated[int, Between(lo,
hi)]``, e.g. ``Seconds``): msgpack delivers any 64-bit value, and a timeout
of 2**63 s or a negative tty must be ``invalid``, not an exception deep in
asyncio or LXC. No string anywhere in the arguments may hold a NUL byte:
none of them means anything with one, and paths, argv and environments
cannot carry it to the kernel.
"""

from __future__ import annotations

import contextlib
import inspect
import types
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Awaitable, Callable, Union

from osctl.protocol import INVALID, NOT_FOUND, OsctlError

if TYPE_CHECKING:  # its type only: commands are given a node, never build one
    from ..node import Node

Handler = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Between:
    """The range of an integer argument: ``Annotated[int, Between(0, 60)]``."""

    lo: int
    hi: int


# Seconds to wait (a stop before the kill, a power-down): a day at most.
Seconds = Annotated[int, Between(0, 86400)]


@dataclass
class CommandSpec:
    name: str
    func: Handler
    hints: dict[str, Any]
    required: frozenset[str]
    mutating: bool
    summary: str


REGISTRY: dict[str, CommandSpec] = {}


def command(name: str, *, mutating: bool = False) -> Callable[[Handler], Handler]:
    """Register ``func`` as the handler of wire verb ``name``.

    ``mutating`` commands are the state-changing ones: they are written to
    the pool's history and announced as command events.
    """

    def register(func: Handler) -> Handler:
        if name in REGISTRY:
            raise RuntimeError(f"command {name} registered twice")
        sig = inspect.signature(func)
        hints = typing.get_type_hints(func, include_extras=True)
        params = list(sig.parameters.values())[1:]  # skip ctx
        REGISTRY[name] = CommandSpec(
            name=name,
            func=func,
            hints={p.name: hints.get(p.name, Any) for p in params},
            required=frozenset(p.name for p in params if p.default is inspect.Parameter.empty),
            mutating=mutating,
            summary=(func.__doc__ or "").strip().split("\n")[0],
        )
        return func

    return register


def _type_ok(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin is Annotated:
        return _type_ok(value, typing.get_args(hint)[0])
    if origin in (Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (elem,) = typing.get_args(hint) or (Any,)
        return isinstance(value, list) and all(_type_ok(v, elem) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is Annotated:
        return _type_name(typing.get_args(hint)[0])
    if typing.get_origin(hint) in (Union, types.UnionType):
        return " | ".join(_type_name(h) for h in typing.get_args(hint))
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def between(hint: Any) -> Between | None:
    """The range an argument's hint gives its integers, if any."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        return next(filter(None, map(between, typing.get_args(hint))), None)
    if typing.get_origin(hint) is Annotated:
        return next((m for m in typing.get_args(hint)[1:] if isinstance(m, Between)), None)
    return None


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\0" in value
    if isinstance(value, list):
        return any(map(_holds_nul, value))
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    return False


def check_args(spec: CommandSpec, args: dict) -> dict:
    unknown = set(args) - set(spec.hints)
    if unknown:
        raise OsctlError(INVALID, f"{spec.name}: unknown argument(s) {', '.join(sorted(map(str, unknown)))}")
    missing = spec.required - set(args)
    if missing:
        raise OsctlError(INVALID, f"{spec.name}: missing argument(s) {', '.join(sorted(missing))}")
    for key, value in args.items():
        hint = spec.hints[key]
        if not _type_ok(value, hint):
            raise OsctlError(
                INVALID,
                f"{spec.name}: argument {key!r} must be {_type_name(hint)}, "
                f"got {type(value).__name__}",
            )
        limits = between(hint)
        if limits and isinstance(value, int) and not limits.lo <= value <= limits.hi:
            raise OsctlError(INVALID, f"{spec.name}: argument {key!r} is {value}, out of range: "
                                      f"{limits.lo} to {limits.hi}")
        if _holds_nul(value):
            raise OsctlError(INVALID, f"{spec.name}: argument {key!r} holds a NUL byte")
    return args


@dataclass
class Context:
    """What a command gets besides its arguments."""

    node: Node
    op: str  # "<connection>:<request id>", what op.cancel names
    peer_uid: int
    fds: list[int] = field(default_factory=list)
    progress: Callable[[dict], None] = lambda data: None
    subscribe: Callable[[dict], None] | None = None
    # The pool a mutating command acted on, for its history line.
    pool: str | None = None


@contextlib.asynccontextmanager
async def hold_server(ctx: Context, server: Any, what: str, new: bool = False):
    """Hold a container's or VM's lock, and its pool's lock shared (so that
    pool export waits for it). An existing object is looked for again once
    the locks are held: a command before us may have deleted it."""
    kind, table = ("vm", "vms") if type(server).__name__ == "VM" else ("ct", "cts")
    locks = ctx.node.locks
    async with locks.hold(("pool", server.pool), what, shared=True), \
            locks.hold((kind, server.pool, server.id), what):
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
