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
@click.option("--image", help="btrfs, zfs: a file to create the filesystem (zfs: a zpool) on.")
@click.option("--size", help="btrfs, zfs: the image's size, e.g. 20G.")
@click.option("--dataset", help="zfs: the dataset POOL/PATH to hold the pool (made if missing) "
                                "[with --image: osctld-NAME].")
@click.option("--id-base", type=int, default=1_000_000, show_default=True,
              help="First host ID of the pool's id-range.")
@click.option("--id-block-size", type=int, default=524_288, show_default=True,
              help="IDs per user.")
@pass_settings
def install(s, name, backend, path, image, size, dataset, id_base, id_block_size):
    """Create pool NAME.

    It finds out whether the filesystem takes idmapped mounts and says so
    in IDMAP: "idmapped" keeps root filesystems unshifted, "chown" shifts
    every file into the user's range.

    \b
    Examples:
      osctl pool install tank
      osctl pool install fast -b btrfs --image /var/lib/fast.img --size 50G
      osctl pool install zt -b zfs --dataset tank/osctld
      osctl pool install zi -b zfs --image /var/lib/zi.img --size 20G
    """
    show(s, call(s, "pool.install", {"name": name, "backend": backend, "path": path,
                                     "image": image, "size": size, "dataset": dataset,
                                     "id_base": id_base,
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
@click.option("--image", help="btrfs image to mount at PATH first; zfs: the file its zpool is on.")
@click.option("--dataset", help="zfs: the pool's dataset, mounted at PATH (its zpool imported "
                                "first if need be).")
@pass_settings
def import_(s, path, image, dataset):
    """Take over the pool at PATH, with its users and containers.

    \b
    Examples:
      osctl pool import /srv/pools/tank
      osctl pool import /srv/pools/zt --dataset tank/osctld
    """
    show(s, call(s, "pool.import", {"path": path, "image": image, "dataset": dataset}))



attr_commands(pool, "pool", "pool", "NAME")
