"""The SSH trust between nodes: the keys this node receives from (``receive
key``), its own send key (``send key``), and a check that a destination takes
it (``send check``). The transfers themselves are in ``ct_send.py``."""

from __future__ import annotations

import os

from .. import __version__
from ..transfer import channel
from ..transfer.keychain import AuthorizedKey
from ..transfer.receive_verbs import ReceiveContext, receive_verb
from . import Context, command


@command("receive.key.add")
async def receive_key_add(ctx: Context, name: str, pubkey: str, single_use: bool = False,
                          from_patterns: list[str] | None = None, ctid: str | None = None) -> dict:
    """Let the node holding ``pubkey``'s private key send servers here:
    from the addresses ``from_patterns`` allow (networks, addresses, shell
    patterns; none: any), only container IDs matching ``ctid``, and with
    ``single_use`` for one transfer only."""
    key = AuthorizedKey(name=name, pubkey=pubkey, from_patterns=from_patterns or [], ctid=ctid,
                        single_use=single_use)
    ctx.node.keychain.add(key)
    return key.public()


@command("receive.key.del")
async def receive_key_del(ctx: Context, name: str) -> dict:
    """Take a key back: its line leaves authorized_keys at once."""
    return ctx.node.keychain.remove(name).public()


@command("receive.key.ls")
async def receive_key_ls(ctx: Context) -> list:
    """The keys other nodes may send servers here with."""
    return [k.public() for k in ctx.node.keychain.all()]


@command("send.key.gen")
async def send_key_gen(ctx: Context, force: bool = False) -> dict:
    """Make this node's send key (``force``: replace the one it has)."""
    return {"pubkey": await channel.generate_key(ctx.node, force)}


@command("send.key.show")
async def send_key_show(ctx: Context) -> dict:
    """This node's public send key: add it on the nodes it sends to."""
    return {"pubkey": channel.public_key(ctx.node)}


@command("send.check")
async def send_check(ctx: Context, dest: str) -> dict:
    """Whether ``dest`` (``host[:port]``) takes this node's key: its osctld's
    answer through the SSH channel (a single-use key is used by it)."""
    return await channel.call(ctx.node, dest, "node.receive.hello", {})


@receive_verb("node.receive.hello")
async def receive_hello(rctx: ReceiveContext, args: dict) -> dict:
    """Who receives: what a sender checks before it sends anything."""
    return {"node": os.uname().nodename, "version": __version__, "key": rctx.key.name,
            "peer": rctx.peer_ip,
            "pools": [{"name": p.pool.name, "backend": p.pool.backend}
                      for p in rctx.node.registry.pools.values()]}
