"""osctl flavor: named sizes that containers and VMs are created from."""

from __future__ import annotations

import click

from .common import call, pass_settings, show, with_examples
from .groups import Group

LS_COLUMNS = ["pool", "name", "cores", "memory", "disk", "swap"]


@click.group("flavor", cls=Group)
def flavor():
    """Flavors: cores, memory, disk (and swap) by one name.

    \b
    Examples:
      osctl flavor new small --cores 1 --memory 1G --disk 10G --swap 512M
      osctl ct new web1 -u alice --flavor small
      osctl vm new db1 -u alice --flavor small --memory 2G
      osctl ct set flavor web1 large
    """


@flavor.command("new")
@click.argument("name")
@click.option("--cores", "-c", type=int, required=True,
              help="Cores: a VM's CPUs, a container's cpu-limit.")
@click.option("--memory", "-m", required=True, help="Memory, e.g. 1G.")
@click.option("--disk", "-d", required=True, help="Disk, e.g. 10G (a container's quota on btrfs).")
@click.option("--swap", help="Swap beyond memory (containers).")
@click.option("--pool", "-p", help="Pool [default: the default pool].")
@pass_settings
def new(s, name, cores, memory, disk, swap, pool):
    """Create flavor NAME; it must meet the node's VM policy (cores 1 to 8,
    memory at least 256M, disk at least 10G by default).

    \b
    Example:
      osctl flavor new small --cores 1 --memory 1G --disk 10G
    """
    show(s, call(s, "flavor.new", {"name": name, "cores": cores, "memory": memory, "disk": disk,
                                   "swap": swap, "pool": pool}))


@flavor.command("ls")
@click.option("--pool", "-p", help="Only this pool.")
@pass_settings
def ls(s, pool):
    """List flavors.

    \b
    Example:
      osctl flavor ls
    """
    show(s, call(s, "flavor.ls", {"pool": pool}), LS_COLUMNS)


def _by_name(verb: str, doc: str) -> None:
    """``osctl flavor VERB NAME [--pool P]``."""

    @click.argument("name")
    @click.option("--pool", "-p", help="Pool [default: the default pool].")
    @pass_settings
    def cmd(s, name, pool):
        show(s, call(s, f"flavor.{verb}", {"name": name, "pool": pool}))

    cmd.__doc__ = with_examples(doc, f"osctl flavor {verb} small")
    flavor.command(verb)(cmd)


_by_name("show", "Show flavor NAME and the containers and VMs that have it.")
_by_name("del", "Delete flavor NAME (no container or VM may have it).")


