"""osctl group: resource groups, cgroup subtrees whose limits bind all below."""

from __future__ import annotations

import click

from .common import (attr_change, attr_commands, attr_option, by_attrs, call, change, limit_args, pass_settings, show,
                     size_value, with_examples)
from .groups import Group, listing_options

LS_COLUMNS = ["pool", "path", "limits", "effective_limits", "containers"]


def limit_options(cmd):
    for opt in reversed([
        click.option("--cpu-limit", metavar="CORES", help="CPU limit in cores (none lifts it)."),
        click.option("--memory", metavar="SIZE", help="Memory limit (none lifts it)."),
        click.option("--swap", metavar="SIZE", help="Swap beyond memory (none lifts it)."),
        click.option("--pids", metavar="N", help="Process limit (none lifts it)."),
    ]):
        cmd = opt(cmd)
    return cmd


@click.group("group", cls=Group)
def group():
    """Resource groups: /prod/web is below /prod, which is below the pool's root /."""


@group.command("new")
@click.argument("path")
@click.option("--pool", "-p", help="Pool [default: the default pool].")
@limit_options
@pass_settings
def new(s, path, pool, **limits):
    """Create group PATH (its parent must exist).

    \b
    Examples:
      osctl group new /prod --cpu-limit 8 --memory 16G
      osctl group new /prod/web -p tank
    """
    show(s, call(s, "group.new", {"path": path, "pool": pool, "limits": limit_args(**limits)}))


@listing_options
@group.command("ls")
@click.option("--pool", "-p", help="Only this pool.")
@attr_option
@pass_settings
def ls(s, pool, attrs):
    """List groups with their own and effective (inherited) limits.

    \b
    Examples:
      osctl group ls -p tank
      osctl group ls --attr org.example:customer=42
    """
    show(s, by_attrs(call(s, "group.ls", {"pool": pool}), attrs), LS_COLUMNS)


def _on_path(verb: str, doc: str, example: str):
    @click.argument("path")
    @click.option("--pool", "-p", help="Pool [default: the default pool].")
    @pass_settings
    def cmd(s, path, pool):
        show(s, call(s, f"group.{verb}", {"path": path, "pool": pool}))

    cmd.__doc__ = with_examples(doc, example)
    return group.command(verb)(cmd)


_on_path("show", "Show group PATH: limits, what is in force, usage, members.", "osctl group show /prod")
_on_path("del", "Delete group PATH; refused while it holds containers or groups.",
         "osctl group del /prod/web -p tank")


@group.command("set")
@click.argument("path")
@click.argument("settings", nargs=-1, metavar="[SETTING VALUE]...")
@click.option("--pool", "-p", help="Pool [default: the default pool].")
@limit_options
@pass_settings
def set_(s, path, settings, pool, **limits):
    """Change group PATH's limits (live; --memory and --swap take +SIZE to
    grow) and settings, which child groups inherit unless they set their own
    (VALUE inherit drops a group's own).

    \b
    Settings (defaults in brackets):
      maintenance-start H, maintenance-end H  the daily window, hours in its
                                   timezone; it may wrap midnight [22, 5]
      timezone NAME                an IANA name [Europe/Berlin]
      notification-leadtime H      hours between announcement and window [12]
      production yes|no            [yes]
      in-maintenance yes|no        an open maintenance now; the daemon ends
                                   it after an hour [no]
      maintenance-until TIME       ISO 8601 with zone; empty or past ends it

    \b
    Examples:
      osctl group set /prod maintenance-start 22 maintenance-end 5 timezone Europe/Berlin
      osctl group set /prod/web notification-leadtime 24 --memory 8G
      osctl group set /prod/web timezone inherit
      osctl group set attr /prod org.example:customer 42   (a frontend's metadata)
    """
    if path == "attr":  # a group's path starts with /: this is set attr PATH KEY VALUE
        if len(settings) != 3 or limit_args(**limits):
            raise click.UsageError("give: osctl group set attr PATH KEY VALUE")
        attr_change(s, "group", "set", {"path": settings[0], "pool": pool}, settings[1], settings[2])
        return
    if len(settings) % 2:
        raise click.UsageError("give settings as SETTING VALUE pairs")
    args = limit_args(**limits)
    pairs = dict(zip(settings[::2], settings[1::2])) or None
    if not args and not pairs:
        raise click.UsageError("give a SETTING VALUE pair or one of --cpu-limit, --memory, --swap, --pids")
    which = {"path": path, "pool": pool}
    for key in ("memory", "swap"):  # +SIZE grows what is set
        if args and key in args:
            args[key] = size_value(s, "group.show", which, args[key],
                                   lambda g, key=key: g["limits"].get(key))
    change(s, "group.set", {**which, "limits": args, "settings": pairs}, "group.show", path, which)



attr_commands(group, "group", "group", "PATH", pool_option=True)
