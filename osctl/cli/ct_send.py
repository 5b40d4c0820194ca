"""osctl ct send: a container to another node, at once or stage by stage."""

from __future__ import annotations

import click

from .common import call, pass_settings, show
from .groups import Group

STAGES = ("config", "rootfs", "sync", "state", "cleanup", "cancel")


class SendGroup(Group):
    """``ct send ID DEST`` runs every stage (the hidden ``now``); ``ct send
    STAGE ...`` one of them."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["now", *args]
        return super().parse_args(ctx, args)


@click.group("send", cls=SendGroup)
def send():
    """Move a container to another node, at once or stage by stage.

    osctl ct send ID DEST runs every stage: config (DEST registers a staged
    container), rootfs (the full copy while it runs), sync (what changed
    since), state (it stops here, the last changes go, DEST starts it),
    cleanup (it is deleted here). Each stage is also a command of its own;
    cancel, before state, leaves the destination as it was. DEST is HOST or
    HOST:PORT of the other node's sshd; it must have authorized this node's
    key (osctl send key show; osctl receive authorized-keys add there).
    Progress (bytes, rate) goes to stderr; Ctrl-C cancels.

    \b
    Examples:
      osctl ct send web1 node2.example.net
      osctl ct send config web1 node2 --as-id web7 --to-pool fast
      osctl ct send rootfs web1; osctl ct send sync web1
      osctl ct send state web1; osctl ct send cleanup web1
      osctl ct send cancel web1
    """


as_id_option = click.option("--as-id", metavar="NEW", help="Its ID at the destination.")
to_pool_option = click.option("--to-pool", metavar="POOL", help="Its pool at the destination.")
no_start_option = click.option("--no-start", is_flag=True,
                               help="Leave it stopped at the destination.")
clone_option = click.option("--clone", is_flag=True,
                            help="Keep it here (running on); the copy there stays stopped.")


@send.command("now", hidden=True)
@click.argument("id")
@click.argument("dest")
@as_id_option
@to_pool_option
@no_start_option
@clone_option
@pass_settings
def now(s, id, dest, as_id, to_pool, no_start, clone):
    """Move container ID to DEST: every stage in turn.

    \b
    Example:
      osctl ct send web1 node2.example.net
    """
    show(s, call(s, "ct.send", {"id": id, "dest": dest, "as_id": as_id, "to_pool": to_pool,
                                "start": not no_start, "clone": clone}))


@send.command("config")
@click.argument("id")
@click.argument("dest")
@as_id_option
@to_pool_option
@pass_settings
def config(s, id, dest, as_id, to_pool):
    """Register container ID at DEST as a staged container (nothing copied yet).

    \b
    Example:
      osctl ct send config web1 node2 --as-id web7
    """
    show(s, call(s, "ct.send.config", {"id": id, "dest": dest, "as_id": as_id, "to_pool": to_pool}))


def _stage(name: str, doc: str, example: str) -> None:
    @send.command(name, help=f"{doc}\n\n\b\nExample:\n  {example}")
    @click.argument("id")
    @pass_settings
    def stage(s, id):
        show(s, call(s, f"ct.send.{name}", {"id": id}))


_stage("rootfs", "Copy the rootfs of container ID in full, while it runs.", "osctl ct send rootfs web1")
_stage("sync", "Copy what changed since the last copy, while it runs (repeatable).",
       "osctl ct send sync web1")
_stage("cleanup", "After state: delete container ID here (a clone is kept).",
       "osctl ct send cleanup web1")


@send.command("state")
@click.argument("id")
@no_start_option
@clone_option
@pass_settings
def state(s, id, no_start, clone):
    """Stop container ID, copy the last changes, and hand it over: it starts
    at the destination if it ran here.

    \b
    Example:
      osctl ct send state web1
    """
    show(s, call(s, "ct.send.state", {"id": id, "start": not no_start, "clone": clone}))


@send.command("cancel")
@click.argument("id")
@click.option("--local", is_flag=True, help="Only here: the destination is gone or unreachable.")
@pass_settings
def cancel(s, id, local):
    """Before state: the destination drops what it received; ID stays as it is.

    \b
    Example:
      osctl ct send cancel web1
    """
    show(s, call(s, "ct.send.cancel", {"id": id, "local": local}))


@click.command("replicate")
@click.argument("id")
@click.argument("dest")
@to_pool_option
@pass_settings
def replicate(s, id, dest, to_pool):
    """One pass of a container's replica on another node (HA).

    The full copy of container ID to DEST the first time (DEST keeps a
    staged container that never starts), then what changed since (ct send's
    sync). A cluster does this on a schedule for
    containers marked ha; osctl ct send cancel ID drops the replica.

    \b
    Example:
      osctl ct replicate web1 node2.example.net
    """
    show(s, call(s, "ct.replicate", {"id": id, "dest": dest, "to_pool": to_pool}))


@click.command("recover")
@click.argument("id")
@no_start_option
@pass_settings
def recover(s, id, no_start):
    """Start a container from its replica here (its node is gone).

    On the node holding its replica: container ID is made of the last pass
    that arrived, and started with its addresses. What it wrote after the last pass
    is lost; data_age says how long ago that pass was taken.

    \b
    Example:
      osctl ct recover web1
    """
    show(s, call(s, "ct.recover", {"id": id, "start": not no_start}))
