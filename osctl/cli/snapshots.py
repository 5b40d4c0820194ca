"""osctl ct snapshot: named snapshots of containers' root filesystems."""

from __future__ import annotations

import click

from .common import call, pass_settings, show
from .groups import Group, listing_options

COLUMNS = ["name", "created", "used"]


@click.group("snapshot", cls=Group)
def snapshot():
    """Snapshots of containers' root filesystems (btrfs, zfs pools)."""


def done(s, res: dict, what: str) -> None:
    if s.format != "table":
        show(s, res)
    elif not s.quiet:
        click.echo(f"{res['id']}: {what}")


@listing_options
@snapshot.command("ls")
@click.argument("id")
@pass_settings
def ls(s, id):
    """List container ID's snapshots, oldest first: when each was made and
    USED, the space only it holds (what deleting it frees).

    \b
    Example:
      osctl ct snapshot ls web1
    """
    show(s, call(s, "ct.snapshot.ls", {"id": id}), COLUMNS)


@snapshot.command("new")
@click.argument("id")
@click.argument("name", required=False)
@pass_settings
def new(s, id, name):
    """Snapshot container ID's root filesystem now (it may run). NAME
    defaults to the time in UTC (20261130-071502).

    \b
    Examples:
      osctl ct snapshot new web1 before-upgrade
      osctl ct snapshot new web1
    """
    res = call(s, "ct.snapshot.new", {"id": id, "name": name})
    done(s, res, f"snapshot {res['name']} made")


@snapshot.command("del")
@click.argument("id")
@click.argument("name")
@pass_settings
def delete(s, id, name):
    """Delete container ID's snapshot NAME.

    \b
    Example:
      osctl ct snapshot del web1 before-upgrade
    """
    res = call(s, "ct.snapshot.del", {"id": id, "name": name})
    done(s, res, f"snapshot {name} deleted")


@snapshot.command("rollback")
@click.argument("id")
@click.argument("name")
@click.option("--restart", is_flag=True,
              help="A running container: stop it, roll back, start it again.")
@click.option("--timeout", "-t", type=int, default=60, show_default=True,
              help="With --restart: seconds to wait for a clean shutdown before killing.")
@pass_settings
def rollback(s, id, name, restart, timeout):
    """Put container ID's root filesystem back as snapshot NAME holds it:
    what was written since is lost; the snapshot stays. A running container
    is refused unless --restart.

    \b
    Examples:
      osctl ct snapshot rollback web1 before-upgrade
      osctl ct snapshot rollback web1 before-upgrade --restart
    """
    res = call(s, "ct.snapshot.rollback", {"id": id, "name": name, "restart": restart,
                                           "timeout": timeout})
    done(s, res, f"rolled back to {name}")

