"""osctl group: resource groups, cgroup subtrees whose limits bind all below."""

from __future__ import annotations

import click

from .common import call, change, limit_args, pass_settings, show, size_value, with_examples
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
@pass_settings
def ls(s, pool):
    """List groups with their own and effective (inherited) limits.

    \b
    Example:
      osctl group ls -p tank
    """
    show(s, call(s, "group.ls", {"pool": pool}), LS_COLUMNS)


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
@click.option("--pool", "-p", help="Pool [default: the default pool].")
@limit_options
@pass_settings
def set_(s, path, pool, **limits):
    """Change group PATH's limits, live; --memory and --swap take +SIZE to grow.

    \b
    Examples:
      osctl group set /prod --memory +8G
      osctl group set /prod --cpu-limit none
    """
    args = limit_args(**limits)
    if not args:
        raise click.UsageError("give at least one of --cpu-limit, --memory, --swap, --pids")
    which = {"path": path, "pool": pool}
    for key in ("memory", "swap"):  # +SIZE grows what is set
        if key in args:
            args[key] = size_value(s, "group.show", which, args[key],
                                   lambda g, key=key: g["limits"].get(key))
    change(s, "group.set", {**which, "limits": args}, "group.show", path, which)

