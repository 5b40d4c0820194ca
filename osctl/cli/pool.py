"""osctl pool: where data and configuration live."""

from __future__ import annotations

import click

from .common import attr_commands, attr_option, by_attrs, call, pass_settings, show
from .groups import Group, listing_options

LS_COLUMNS = ["name", "backend", "path", "idmap", "users", "containers", "running"]


@click.group("pool", cls=Group)
def pool():
    """Pools: storage for users and containers, with their configs."""


@pool.command("install")
@click.argument("name")
@click.option("--backend", "-b", type=click.Choice(["dir", "btrfs", "zfs"]), default="dir",
              show_default=True)
@click.option("--path", help="Where the pool lives [default: <state_dir>/pools/NAME].")
@click.option("--image", help="btrfs: a loop-file image to create and mount at the path.")
@click.option("--size", help="btrfs: the image's size, e.g. 20G.")
@click.option("--id-base", type=int, default=1_000_000, show_default=True,
              help="First host ID of the pool's id-range.")
@click.option("--id-block-size", type=int, default=524_288, show_default=True,
              help="IDs per user.")
@pass_settings
def install(s, name, backend, path, image, size, id_base, id_block_size):
    """Create pool NAME.

    It finds out whether the filesystem takes idmapped mounts and says so
    in IDMAP: "idmapped" keeps root filesystems unshifted, "chown" shifts
    every file into the user's range.

    \b
    Examples:
      osctl pool install tank
      osctl pool install fast -b btrfs --image /var/lib/fast.img --size 50G
    """
    show(s, call(s, "pool.install", {"name": name, "backend": backend, "path": path,
                                     "image": image, "size": size, "id_base": id_base,
                                     "id_block_size": id_block_size}))


@listing_options
@pool.command("ls")
@attr_option
@pass_settings
def ls(s, attrs):
    """List pools.

    \b
    Examples:
      osctl pool ls
      osctl pool ls --attr org.example:site
    """
    show(s, by_attrs(call(s, "pool.ls"), attrs), LS_COLUMNS)


@pool.command("show")
@click.argument("name")
@pass_settings
def show_(s, name):
    """Show pool NAME.

    \b
    Example:
      osctl pool show tank
    """
    show(s, call(s, "pool.show", {"name": name}))


@pool.command("export")
@click.argument("name")
@click.option("--force", "-f", is_flag=True, help="Stop its running containers.")
@pass_settings
def export(s, name, force):
    """Stop managing pool NAME; its data and configs stay, ready for import.

    \b
    Example:
      osctl pool export tank -f
    """
    show(s, call(s, "pool.export", {"name": name, "force": force}))


@pool.command("uninstall")
@click.argument("name")
@pass_settings
def uninstall(s, name):
    """Remove pool NAME from the node with its data (users, templates,
    configs, a btrfs image). Refused while it holds containers or VMs.

    \b
    Example:
      osctl pool uninstall tank
    """
    show(s, call(s, "pool.uninstall", {"name": name}))


@pool.command("import")
@click.argument("path")
@click.option("--image", help="btrfs image to mount at PATH first.")
@pass_settings
def import_(s, path, image):
    """Take over the pool at PATH, with its users and containers.

    \b
    Example:
      osctl pool import /srv/pools/tank
    """
    show(s, call(s, "pool.import", {"path": path, "image": image}))



attr_commands(pool, "pool", "pool", "NAME")
