"""The verbs another node may call here over SSH, and the checks before each.

A receive verb is registered as commands are (``@receive_verb(name)``) by the
module that does the work (``commands/ct_send.py``: ``ct.receive.*``; VMs
their own), and gets a ``ReceiveContext`` and the arguments the sender gave
(a dict it checks itself: they come from another node, not from osctl).
Before any verb runs, the key sshd matched is looked up again (deleted
meanwhile: refused) and its ``from``, ``ctid`` and single-use rules are
checked (``AuthorizedKey.check``). Each call is a line in the history (of
the pool its reply names, else the default pool's) with the key and the
sender's address. A single-use key is marked used by its
first call that succeeds, bound to the transfer it opened (the ``token``
its reply names), so the later calls of that transfer, which name the token,
are let through and nothing else is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from osctl.protocol import DENIED, INVALID, OsctlError

if TYPE_CHECKING:
    from ..node import Node
    from .keychain import AuthorizedKey

log = logging.getLogger(__name__)


@dataclass
class ReceiveContext:
    node: Node
    key: AuthorizedKey  # the authorized key the call came with
    peer_ip: str  # the sender's address, as sshd saw it
    # The SSH session's stdin and stdout, passed by the forced command: a
    # verb reads a stream from stdin (and may write one to stdout).
    stdin: int | None = None
    stdout: int | None = None


ReceiveHandler = Callable[[ReceiveContext, dict], Awaitable[dict]]
RECEIVE_VERBS: dict[str, ReceiveHandler] = {}


def receive_verb(name: str) -> Callable[[ReceiveHandler], ReceiveHandler]:
    """Register ``func`` as receive verb ``name`` (``<object>.receive.<verb>``)."""

    def register(func: ReceiveHandler) -> ReceiveHandler:
        if name in RECEIVE_VERBS:
            raise RuntimeError(f"receive verb {name} registered twice")
        RECEIVE_VERBS[name] = func
        return func

    return register


async def run(node: Node, key_name: str, peer_ip: str, verb: str, args: Any,
              stdin: int | None = None, stdout: int | None = None) -> dict:
    """Run receive verb ``verb`` for the key named ``key_name`` from
    ``peer_ip``, once the key may make that call."""
    handler = RECEIVE_VERBS.get(verb)
    if handler is None:
        raise OsctlError(INVALID, f"unknown receive verb {verb!r}")
    if not isinstance(args, dict):
        raise OsctlError(INVALID, f"{verb}: the arguments must be a JSON object")
    key = node.keychain.keys.get(key_name)
    if key is None:  # deleted since sshd read the file
        raise OsctlError(DENIED, f"unknown key {key_name!r}")
    key.check(peer_ip, args)
    entry = {"cmd": verb, "key": key.name, "peer": peer_ip,
             "args": {k: v for k, v in args.items() if isinstance(v, (str, int, bool))}}
    try:
        result = await handler(ReceiveContext(node, key, peer_ip, stdin, stdout), args)
    except BaseException as e:
        # Written to the default pool's history: the call named no pool it got to.
        node.history.write(None, {**entry, "result": "error",
                                  "error": e.message if isinstance(e, OsctlError) else repr(e)})
        raise
    pool = result.get("pool") if isinstance(result, dict) else None
    node.history.write(pool if isinstance(pool, str) else None, {**entry, "result": "ok"})
    if key.single_use and not key.used and node.keychain.keys.get(key.name) is key:
        token = result.get("token") if isinstance(result, dict) else None
        node.keychain.replace(replace(key, used=True, token=token))
    return result
