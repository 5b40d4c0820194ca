"""osctl ct mount: bind mounts of the node's directories in containers."""

from __future__ import annotations

import click

from .common import call, pass_settings, show
from .groups import Group, listing_options

COLUMNS = ["src", "dst", "ro", "idmapped", "mounted"]


@click.group("mount", cls=Group)
def mount():
    """Bind mounts of the node's directories (or files) in containers."""


@listing_options
@mount.command("ls")
@click.argument("id")
@pass_settings
def ls(s, id):
    """List container ID's bind mounts; MOUNTED says whether each is mounted
    inside now (empty while it is stopped).

    \b
    Example:
      osctl ct mount ls web1
    """
    show(s, call(s, "ct.mount.ls", {"id": id}), COLUMNS)


def _done(s, id: str, res: dict, what: str) -> None:
    if s.format != "table":
        show(s, res)
    elif not s.quiet:
        click.echo(f"{id}: {what}" + (f" (staged: {res['staged']})" if res.get("staged") else ""))


@mount.command("add")
@click.argument("id")
@click.argument("src")
@click.argument("dst")
@click.option("--ro", is_flag=True, help="Read-only inside.")
@pass_settings
def add(s, id, src, dst, ro):
    """Bind node path SRC (a directory or file that exists) on DST inside
    container ID, at once if it runs and at every start.

    DST is the container's path (made if missing, as its root); SRC is
    mapped as the rootfs is: on an idmapped pool the node's root is the
    container's root there. Root only.

    \b
    Examples:
      osctl ct mount add web1 /srv/shared/www /var/www
      osctl ct mount add web1 /srv/shared/certs /etc/ssl/shared --ro
    """
    res = call(s, "ct.mount.add", {"id": id, "src": src, "dst": dst, "ro": ro})
    _done(s, id, res, f"mounts +{res['dst']} ({res['src']}{', ro' if ro else ''})")


@mount.command("del")
@click.argument("id")
@click.argument("dst")
@pass_settings
def delete(s, id, dst):
    """Remove container ID's mount on DST (unmounted at once if it runs).

    \b
    Example:
      osctl ct mount del web1 /var/www
    """
    res = call(s, "ct.mount.del", {"id": id, "dst": dst})
    _done(s, id, res, f"mounts -{res['dst']}")
