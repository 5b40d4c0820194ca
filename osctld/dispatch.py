"""Requests apart from the socket: what one connection's requests go through
between a decoded message and its reply.

As in h11, the protocol's rules and state live here and the I/O does not:
``osctld/server.py`` reads the socket (frames, descriptors, bounds, hang-ups)
and feeds each decoded message to its connection's ``Dispatcher``, which
answers through the ``send`` it was given. So the rules are unit-tested
without a socket or root (``tests/unit/test_dispatch.py``):

- the envelope (``protocol.parse_request``), an id not already in flight on
  the connection, and as many descriptors arrived as the request announces;
  the descriptors a refused request announced are closed, so that they
  cannot reach the next one;
- each request runs as its own task, named ``<conn>:<id>`` in the node's
  ``Ops`` (``osctld/ops.py``) while its command runs;
- the verb is looked up (an old name resolved to the verb it stands for,
  ``commands.ALIASES``) and its arguments checked against its signature;
- a request of an account (a connection to the account socket) is checked
  against the permission its verb declares, in the group of the object it
  names (``permitted``): ``denied`` naming what is missing, before anything
  runs; the command gets the account as ``ctx.access``;
- a state-changing verb is announced as command events (run, then done or
  failed) and written to the history of the pool its declared target is in,
  with the account that asked; both name the target (``object``, ``id``,
  ``pool``) and the arguments (passwords masked), so that a monitor or the
  history reads ``ct.set web1 memory=2G`` (``osctl/activity.py``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import types
import typing
import uuid
from collections import deque
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Annotated, Any, Callable, Union

from osctl import protocol
from osctl.protocol import CANCELLED, DENIED, INTERNAL, INVALID, NOT_FOUND, OsctlError

from .asker import ASKER, Asker
from .commands import REGISTRY, Between, CommandSpec, Context, resolve
from .events import Filter
from .model.account import ROOT, Access
from .model.group import DEFAULT_GROUP

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger(__name__)


# --- arguments ---------------------------------------------------------------------

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



# --- permissions -------------------------------------------------------------------

def permitted(node: "Node", spec: CommandSpec, args: dict, access: Access | None) -> None:
    """Whether ``access`` may run ``spec`` with ``args`` (checked): nothing
    if so, ``denied`` naming the permission it lacks if not. None is an
    account deleted while its connection was open."""
    if access is ROOT:
        return
    if access is None:
        raise OsctlError(DENIED, "this connection's account no longer exists")
    if spec.needs is None:
        raise OsctlError(DENIED, f"{spec.name} is for root only")
    if spec.on is None:
        return  # a listing: it shows what the account may see
    pool, group = spec.on.group(node.registry, args)
    if not access.may(spec.needs, pool, group):
        has = access.level(pool, group)
        raise OsctlError(DENIED, f"{spec.name} needs permission {spec.needs.wire} on group "
                                 f"{pool}:{group}; account {access.ref} has "
                                 f"{has.wire if has else 'none'} there",
                         {"permission": spec.needs.wire, "group": f"{pool}:{group}"})


# --- requests ----------------------------------------------------------------------

@dataclass(frozen=True)
class Caller:
    """Who sent a connection's requests (from SO_PEERCRED), and whether
    through the account socket (as an account) or root's own."""

    conn: int
    pid: int
    uid: int
    account: bool = False

    def __str__(self) -> str:
        account = " account" if self.account else ""
        return f"<conn {self.conn} pid={self.pid} uid={self.uid}{account}>"


class Dispatcher:
    """One connection's requests: checked, run, answered through ``send``.

    ``node`` is what commands get as ``ctx.node``; the dispatcher itself
    uses its ``events``, ``ops``, ``registry`` (to find a target's pool),
    ``history`` and ``cluster`` (where an instance not here lives). ``send`` encodes and queues a message; it raises
    ``protocol.EncodeError`` for one that cannot be encoded.
    """

    def __init__(self, node: "Node", caller: Caller, send: Callable[[dict], None],
                 subscribe: Callable[[Filter], None] | None = None):
        self.node = node
        self.caller = caller
        self.send = send
        self.subscribe = subscribe
        self.fds: deque[int] = deque()  # arrived, not yet taken by a request
        # Requests in flight by id, and whether each changes state (those
        # outlive their caller).
        self.tasks: dict[int, tuple[asyncio.Task, bool]] = {}

    def access(self) -> Access | None:
        """Who the connection's requests run as now: root, or its account
        (looked up at each request: None once it is deleted)."""
        if not self.caller.account:
            return ROOT
        return self.node.accounts.by_uid(self.caller.uid)

    def fds_arrived(self, fds: list[int]) -> None:
        self.fds.extend(fds)

    def receive(self, msg: dict) -> asyncio.Task | None:
        """Take one decoded message: its request's task, or None if it was
        refused (and answered so)."""
        try:
            req = _resolved(protocol.parse_request(msg))
            if req.id in self.tasks:
                raise OsctlError(INVALID, f"request id {req.id} is already in flight")
            if len(self.fds) < req.fds:
                raise OsctlError(INVALID, f"request announced {req.fds} file descriptors, "
                                          f"{len(self.fds)} arrived")
        except OsctlError as e:
            log.info("%s: bad request: %s", self.caller, e.message)
            self.send(protocol.error(protocol.request_id(msg), e))
            announced = msg.get("fds")
            if isinstance(announced, int) and not isinstance(announced, bool):
                for _ in range(min(max(announced, 0), len(self.fds))):
                    os.close(self.fds.popleft())
            return None
        fds = [self.fds.popleft() for _ in range(req.fds)]
        spec = REGISTRY.get(req.cmd)
        task = asyncio.create_task(self._execute(req, spec, fds))
        self.tasks[req.id] = (task, spec is not None and spec.mutating)
        task.add_done_callback(lambda _t, rid=req.id: self.tasks.pop(rid, None))
        return task

    def caller_gone(self) -> None:
        """The caller went: end what served only it (read-only verbs, and
        exec, attach, console); state-changing ones run on to their end."""
        for task, mutating in self.tasks.values():
            if not mutating:
                task.cancel()

    def drop_fds(self) -> None:
        """Close the descriptors no request took."""
        while self.fds:
            os.close(self.fds.popleft())

    async def _execute(self, req: protocol.Request, spec: CommandSpec | None, fds: list[int]) -> None:
        op = f"{self.caller.conn}:{req.id}"
        ctx = Context(
            node=self.node, op=op, fds=fds,
            progress=lambda data: self.send(protocol.progress(req.id, data)),
            subscribe=self.subscribe,
        )
        args: dict | None = None
        pool: str | None = None
        subject: dict = {}
        access = self.access()
        who = access.ref if access is not None else None
        try:
            if spec is None:
                raise OsctlError(INVALID, f"unknown command {req.cmd!r}")
            args = check_args(spec, req.args)
            pool = self._pool(spec, args)  # as it was: a deleted object's pool is gone after
            subject = _subject(spec, args, pool)
            permitted(self.node, spec, args, access)
            assert access is not None
            ctx.access = access
            ASKER.set(Asker(op, spec.name, ctx.progress))  # this request's task alone
            with self.node.ops.running(op, asyncio.current_task(), access.ref, spec.name):
                if spec.mutating:
                    self.node.events.publish("command", phase="run", cmd=req.cmd, op=op,
                                             account=who, pool=pool, **subject)
                result = await spec.run(ctx, args)
        except OsctlError as e:
            e = self._elsewhere(req.cmd, args, e)
            reply, error = protocol.error(req.id, e), e.message
        except asyncio.CancelledError:
            reply = protocol.error(req.id, OsctlError(CANCELLED, f"{req.cmd} was cancelled"))
            error = "cancelled"
        except Exception:
            err = _internal(req.cmd)
            reply, error = protocol.error(req.id, err), f"internal error {err.details['reference']}"
        else:
            reply, error = protocol.ok(req.id, result), None
        finally:
            for fd in fds:
                os.close(fd)
        if spec is not None and spec.mutating:
            if pool is None and args is not None:
                pool = self._pool(spec, args)  # a created object's pool is there only now
                subject = _subject(spec, args, pool)
            self._finished(req, op, pool, error, who, subject)
        try:
            self.send(reply)
        except protocol.EncodeError:
            # A reply that cannot be encoded (a value out of msgpack's range)
            # must still end the request, or its client waits forever.
            self.send(protocol.error(req.id, _internal(req.cmd)))

    def _elsewhere(self, cmd: str, args: dict | None, e: OsctlError) -> OsctlError:
        """A container or VM not found here that the cluster says lives on
        another node: refused with that node's name (docs: README, Cluster)."""
        kind = cmd.split(".")[0]
        cluster = self.node.cluster
        if e.code != NOT_FOUND or cluster is None or kind not in ("ct", "vm") \
                or cmd.endswith(".new") or not isinstance((args or {}).get("id"), str):
            return e
        assert args is not None
        id = args["id"].rpartition(":")[2]
        there = cluster.where(kind, id)
        if there is None:
            return e
        noun = "container" if kind == "ct" else "VM"
        return OsctlError(NOT_FOUND, f"{noun} {id} lives on node {there}: run {cmd} there",
                          {"node": there})

    def _pool(self, spec: CommandSpec, args: dict) -> str | None:
        """The pool of a state-changing verb's target, if it is there."""
        if spec.target is None:
            return None
        try:
            return spec.target.pool(self.node.registry, args)
        except OsctlError:
            return None

    def _finished(self, req: protocol.Request, op: str, pool: str | None, error: str | None,
                  who: str | None, subject: dict) -> None:
        """The command event and history line of a state-changing verb."""
        self.node.events.publish("command", phase="failed" if error else "done", cmd=req.cmd,
                                 op=op, account=who, pool=pool, **subject,
                                 **({"error": error} if error else {}))
        entry = {"cmd": req.cmd, "args": _redact(req.args), **subject, "account": who,
                 "uid": self.caller.uid, "pid": self.caller.pid,
                 "result": "ok" if error is None else "error"}
        if error:
            entry["error"] = error
        self.node.history.write(pool, entry)


def _resolved(req: protocol.Request) -> protocol.Request:
    """The request as its verb's new name: an old name (an alias) runs, and
    is announced and written to history, as the verb it stands for."""
    spec, args = resolve(req.cmd, req.args)
    return replace(req, cmd=spec.name, args=args) if spec else req


def _internal(cmd: str) -> OsctlError:
    """The client's side of an unexpected exception (being handled): logged
    with its traceback under a reference the client is given."""
    ref = uuid.uuid4().hex[:12]
    log.exception("internal error in %s (reference %s)", cmd, ref)
    return OsctlError(INTERNAL, f"internal error in {cmd}; see the daemon log, reference {ref}",
                      {"reference": ref})


# The arguments that name the object of a verb on it, in that order: a
# server's id (its netifs' verbs name the netif as ``name``), a name, a
# group's path, an account.
_NAMED_BY = ("id", "name", "path", "account")


def _subject(spec: CommandSpec, args: dict, pool: str | None) -> dict:
    """What a state-changing verb acts on, as its events and history name it:
    the kind of object its name starts with (``ct.new``: the new container,
    though its pool is found by its user) with the id it was given (a
    group's path, an account's reference, a pool's name: the default pool's
    if none was given), and the arguments. A verb named for no kind of
    object (``permission.add``) names its target."""
    kind = spec.name.split(".")[0]
    if kind in protocol.EVENT_OBJECTS:
        value = next((args[k] for k in _NAMED_BY if args.get(k) is not None), None)
    elif spec.target is not None:
        kind, value = spec.target.kind, args.get(spec.target.arg)
    else:
        return {"args": _redact(args)}
    if kind == "pool" and pool is not None:
        value = pool  # an imported pool's name, once it is known
    elif kind == "group" and value is None:
        value = DEFAULT_GROUP
    return {"object": kind, "id": value, "args": _redact(args)}


def _redact(args: dict) -> dict:
    return {k: ("***" if "password" in k else v) for k, v in args.items()}
