"""osctl monitor, history, status, template ls, op ls|cancel."""

from __future__ import annotations

import sys
import time

import click

from .. import activity
from ..protocol import EVENT_OBJECTS, EVENT_TYPES
from .common import call, pass_settings, show
from .groups import Group, listing_options


@click.command("monitor")
@click.option("--type", "types", multiple=True, type=click.Choice(EVENT_TYPES),
              help="Only events of this type (repeatable).")
@click.option("--pool", "-p", "pools", multiple=True, help="Only about this pool (repeatable).")
@click.option("--object", "objects", multiple=True, type=click.Choice(EVENT_OBJECTS),
              help="Only about this kind of object (repeatable).")
@click.option("--id", "ids", multiple=True, metavar="ID",
              help="Only about this object: a container, VM, user, group... (repeatable).")
@pass_settings
def monitor(s, types, pools, objects, ids):
    """Print osctld's events as they happen, until interrupted.

    A command reads as it was asked for (`command done ct.set web1
    memory=2G account=root`); -j prints each event as a JSON line.

    \b
    Examples:
      osctl monitor --type command
      osctl monitor --pool tank --object ct --id web1
    """
    import json  # here, not at the top: osctl's start-up pays for every import

    client = s.client()
    filters = {k: list(v) for k, v in
               (("types", types), ("pools", pools), ("objects", objects), ("ids", ids)) if v}
    try:
        for ev in client.events(**filters):
            click.echo(json.dumps(ev) if s.format == "json" else activity.event_line(ev))
    except KeyboardInterrupt:
        pass


def _since(ctx, param, value):
    try:
        return None if value is None else activity.since(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


@click.command("history")
@click.argument("id", required=False)
@click.option("--pool", "-p", help="Only this pool [default: all].")
@click.option("--since", "-s", metavar="TIME", callback=_since,
              help="Only since TIME: a span back (30m, 2h, 1d) or an ISO date or time.")
@click.option("--user", "-u", "account", metavar="ACCOUNT",
              help="Only what ACCOUNT did (root: root's own).")
@click.option("--limit", "-n", type=int, default=50, show_default=True, help="Last N entries (0: all).")
@pass_settings
def history(s, id, pool, since, account, limit):
    """State-changing commands run on the node (on object ID), oldest first.

    Each line names who acted (ACCOUNT: root, or an account through the
    account socket) and what it did, as `ct.set web1 memory=2G`.

    \b
    Examples:
      osctl history web1 --since 1d
      osctl history --user front --since 2026-11-30
    """
    rows = call(s, "history.ls", {"id": id, "pool": pool, "since": since, "account": account,
                                  "limit": limit})
    if s.format in ("table", "csv"):
        for r in rows:
            r["time"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["time"]))
            r["command"] = activity.command_text(r)
    show(s, rows, ["time", "pool", "account", "command", "result", "error"])


@click.command("status")
@pass_settings
def status(s):
    """The daemon's version, uptime and counts.

    \b
    Examples:
      osctl status
      osctl status -j
    """
    show(s, call(s, "daemon.status"))


@click.command("healthcheck")
@click.option("--repair", "-r", is_flag=True, help="Repair what is safe to repair, and say what worked.")
@pass_settings
def healthcheck(s, repair):
    """Check every object's pieces against what the node has.

    Configs, rootfs and disks, LXC configs, cgroups, host veths and routes,
    bind mount sources, /etc/subuid and /etc/subgid lines, lxcfs and the
    statfs proxy: each mismatch with what --repair does about it (REPAIR
    empty: nothing safe to do alone; the problem says what it means). Exits
    1 while something is wrong and not repaired.

    \b
    Examples:
      osctl healthcheck
      osctl healthcheck --repair -j
    """
    res = call(s, "daemon.healthcheck", {"repair": repair or None})
    if s.format != "table":
        show(s, res)
    elif res["findings"]:
        columns = ["object", "id", "check", "problem", "repair"] + (["repaired", "error"] if repair else [])
        show(s, res["findings"], columns)
    elif not s.quiet:
        click.echo("nothing wrong found")
    sys.exit(0 if res["ok"] else 1)


@click.command("shutdown")
@click.option("--timeout", "-t", type=int, default=60, show_default=True,
              help="Seconds each container or VM has to stop cleanly before it is killed.")
@pass_settings
def shutdown(s, timeout):
    """Take the node down: stop every container and VM, then lxcfs, the
    statfs proxy and osctld itself. Autostart containers and online VMs
    start again with the next osctld.

    \b
    Example:
      osctl shutdown --timeout 120
    """
    show(s, call(s, "daemon.shutdown", {"timeout": timeout}))


@click.group("template", cls=Group)
def template():
    """Templates containers are built from."""


@listing_options
@template.command("ls")
@pass_settings
def template_ls(s):
    """List templates.

    \b
    Example:
      osctl template ls
    """
    show(s, call(s, "template.ls"), ["name", "distribution", "versions", "default_version"])


@click.group("op", cls=Group)
def op():
    """Operations in flight: each request osctld is running, by its id."""


@listing_options
@op.command("ls")
@pass_settings
def op_ls(s):
    """List operations in flight (other than this one).

    \b
    Example:
      osctl op ls
    """
    show(s, [{"op": name} for name in call(s, "op.ls")], ["op"])


@op.command("cancel")
@click.argument("ops", nargs=-1, required=True, metavar="OP...")
@pass_settings
def op_cancel(s, ops):
    """Cancel operations OP (as op ls names them); each rolls back what it did.

    \b
    Example:
      osctl op cancel 12:1
    """
    for name in ops:
        call(s, "op.cancel", {"op": name})
        if not s.quiet:
            click.echo(f"{name}: cancelled")
