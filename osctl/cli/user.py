"""osctl user: tenants and their UID/GID maps."""

from __future__ import annotations

import click

from .common import (attr_commands, attr_option, by_attrs, call, change, pass_settings, show, size_value,
                     wire_name)
from .groups import Group, listing_options

LS_COLUMNS = ["pool", "name", "uid_map", "gid_map", "containers"]


@click.group("user", cls=Group)
def user():
    """Users: each owns containers that share one UID/GID map."""


@user.command("new")
@click.argument("name")
@click.option("--pool", "-p", help="Pool [default: the default pool].")
@click.option("--map", "maps", multiple=True, metavar="NS:HOST:COUNT",
              help="Explicit map for UIDs and GIDs (repeatable).")
@click.option("--map-uid", multiple=True, metavar="NS:HOST:COUNT", help="Explicit UID map entry.")
@click.option("--map-gid", multiple=True, metavar="NS:HOST:COUNT", help="Explicit GID map entry.")
@pass_settings
def new(s, name, pool, maps, map_uid, map_gid):
    """Create user NAME with the next free block of the pool's id-range,
    or with explicit maps (checked: 32 bits, at least 65536 IDs, no overlap).

    \b
    Examples:
      osctl user new alice
      osctl user new bob -p tank --map 0:200000:65536
    """
    uid = list(map_uid) or list(maps) or None
    gid = list(map_gid) or list(maps) or None
    show(s, call(s, "user.new", {"name": name, "pool": pool, "uid_map": uid, "gid_map": gid}))


@user.group("set")
def set_():
    """Change a user's settings."""


@set_.command("quota")
@click.argument("name")
@click.argument("values", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--preset", help="Start from a preset: staging (8 CPUs, 4G memory, 120G disk, "
                               "4 IPv4, 32 IPv6 /64, 4 containers).")
@pass_settings
def set_quota(s, name, values, preset):
    """Set user NAME's quota: KEY is cpus, memory, disk, ipv4, ipv6-64 or
    containers (VMs count as containers); VALUE none lifts it, +SIZE grows
    memory or disk. Checked at ct new, ct set, vm new and vm set.

    \b
    Examples:
      osctl user set quota alice memory=4G cpus=8 disk=+50G
      osctl user set quota alice --preset staging
    """
    bad = [v for v in values if "=" not in v]
    if bad or not (values or preset):
        raise click.UsageError("give --preset and/or KEY=VALUE pairs, e.g. memory=4G cpus=8")
    quota = {wire_name(k): v for k, v in (v.split("=", 1) for v in values)}
    for key in ("memory", "disk"):  # +SIZE grows what is set
        if key in quota:
            quota[key] = size_value(s, "user.show", {"name": name}, quota[key],
                                    lambda u, key=key: u["quota"].get(key))
    change(s, "user.set", {"name": name, "quota": quota or None, "quota_preset": preset},
           "user.show", name, {"name": name})


@listing_options
@user.command("ls")
@click.option("--pool", "-p", help="Only this pool.")
@attr_option
@pass_settings
def ls(s, pool, attrs):
    """List users.

    \b
    Examples:
      osctl user ls -p tank
      osctl user ls --attr org.example:customer=42
    """
    show(s, by_attrs(call(s, "user.ls", {"pool": pool}), attrs), LS_COLUMNS)


@user.command("show")
@click.argument("name")
@pass_settings
def show_(s, name):
    """Show user NAME (or POOL:NAME).

    \b
    Examples:
      osctl user show alice
      osctl user show tank:alice
    """
    show(s, call(s, "user.show", {"name": name}))


@user.command("del")
@click.argument("name")
@pass_settings
def delete(s, name):
    """Delete user NAME; refused while it owns containers.

    \b
    Example:
      osctl user del alice
    """
    show(s, call(s, "user.del", {"name": name}))



attr_commands(user, "user", "user", "NAME")
