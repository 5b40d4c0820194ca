"""osctl receive, osctl send: the SSH trust that moves servers between nodes."""

from __future__ import annotations

import sys

import click

from .common import call, pass_settings, show
from .groups import Group

KEY_COLUMNS = ["name", "type", "fingerprint", "from_patterns", "ctid", "single_use", "used"]


@click.group("receive", cls=Group)
def receive():
    """Receiving servers from other nodes: the keys they may send with.

    Another node logs in over SSH as the receive user (osctld-recv) with its
    send key (osctl send key show there); sshd runs osctld's forced command,
    which hands the call to osctld here. sshd needs the "Match User
    osctld-recv" block of the README.
    """


@receive.group("authorized-keys", cls=Group)
def authorized_keys():
    """Keys other nodes may send servers here with."""


@authorized_keys.command("add")
@click.argument("name")
@click.option("--single-use", is_flag=True, help="Good for one transfer, then used up.")
@click.option("--from", "from_", metavar="PATTERNS",
              help="Comma-separated addresses, networks or shell patterns the sender "
                   "may come from [default: anywhere].")
@click.option("--ctid", metavar="PATTERN", help="Only container IDs matching this shell pattern.")
@pass_settings
def keys_add(s, name, single_use, from_, ctid):
    """Authorize the public key given on stdin as NAME.

    \b
    Examples:
      ssh node1 osctl send key show -q | osctl receive authorized-keys add node1
      osctl receive authorized-keys add node1 --from 198.51.100.0/24 --ctid 'web*' < key.pub
    """
    patterns = [p.strip() for p in from_.split(",") if p.strip()] if from_ else None
    show(s, call(s, "receive.key.add", {"name": name, "pubkey": sys.stdin.read(),
                                        "single_use": single_use, "from_patterns": patterns,
                                        "ctid": ctid}), KEY_COLUMNS)


@authorized_keys.command("del")
@click.argument("name")
@pass_settings
def keys_del(s, name):
    """Take key NAME back: no node can send with it any more.

    \b
    Example:
      osctl receive authorized-keys del node1
    """
    show(s, call(s, "receive.key.del", {"name": name}), KEY_COLUMNS)


@authorized_keys.command("ls")
@pass_settings
def keys_ls(s):
    """List the authorized keys.

    \b
    Example:
      osctl receive authorized-keys ls
    """
    show(s, call(s, "receive.key.ls"), KEY_COLUMNS)


@click.group("send", cls=Group)
def send():
    """Sending servers to other nodes: this node's send key.

    Containers go with osctl ct send; the destination must have authorized
    this node's key (osctl receive authorized-keys add there).
    """


@send.group("key", cls=Group)
def key():
    """This node's send key (ed25519, kept in the daemon's state directory)."""


@key.command("gen")
@click.option("--force", is_flag=True, help="Replace the key this node has.")
@pass_settings
def key_gen(s, force):
    """Make this node's send key; prints its public half.

    \b
    Example:
      osctl send key gen
    """
    click.echo(call(s, "send.key.gen", {"force": force})["pubkey"])


@key.command("show")
@pass_settings
def key_show(s):
    """Print this node's public send key.

    \b
    Example:
      osctl send key show | ssh node2 osctl receive authorized-keys add node1
    """
    click.echo(call(s, "send.key.show")["pubkey"])


@send.command("check")
@click.argument("dest")
@pass_settings
def check(s, dest):
    """Check that DEST (HOST or HOST:PORT) takes this node's key: its osctld answers.

    \b
    Example:
      osctl send check node2.example.net
    """
    show(s, call(s, "send.check", {"dest": dest}))
