"""osctl ct dataset: containers' own datasets, mounted inside (zfs pools)."""

from __future__ import annotations

import click

from ..units import KINDS, SIZE
from .common import call, pass_settings, show
from .groups import Group, listing_options
from .snapshots import done

KINDS.update(quota=SIZE)
COLUMNS = ["name", "mountpoint", "used", "quota"]


@click.group("dataset", cls=Group)
def dataset():
    """Containers' own datasets, mounted inside (zfs pools)."""


@listing_options
@dataset.command("ls")
@click.argument("id")
@pass_settings
def ls(s, id):
    """List container ID's datasets: where each is mounted inside, what it
    holds and its quota.

    \b
    Example:
      osctl ct dataset ls web1
    """
    show(s, call(s, "ct.dataset.ls", {"id": id}), COLUMNS)


@dataset.command("new")
@click.argument("id")
@click.argument("name")
@click.option("--mountpoint", "-m", help="Where inside [default: /NAME].")
@click.option("--quota", help="The most it may hold, e.g. 10G [default: no limit].")
@pass_settings
def new(s, id, name, mountpoint, quota):
    """A new dataset NAME of container ID's, with a quota of its own,
    mounted inside (at once if it runs). It is in the container's snapshots
    and is deleted with it.

    \b
    Examples:
      osctl ct dataset new web1 www --mountpoint /var/www --quota 10G
      osctl ct dataset new db1 mysql -m /var/lib/mysql
    """
    res = call(s, "ct.dataset.new", {"id": id, "name": name, "mountpoint": mountpoint,
                                     "quota": quota})
    done(s, res, f"dataset {name} on {res['mountpoint']}"
                  + (f" (staged: {res['staged']})" if res.get("staged") else ""))


@dataset.command("del")
@click.argument("id")
@click.argument("name")
@pass_settings
def delete(s, id, name):
    """Delete container ID's dataset NAME with all it holds.

    \b
    Example:
      osctl ct dataset del web1 www
    """
    res = call(s, "ct.dataset.del", {"id": id, "name": name})
    done(s, res, f"dataset {name} deleted")
