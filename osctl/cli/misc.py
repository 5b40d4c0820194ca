"""osctl monitor, history, status, template ls, op ls|cancel."""

from __future__ import annotations

import time

import click

from ..output import cell
from .common import call, pass_settings, show
from .groups import Group, listing_options


@click.command("monitor")
@click.option("--type", "types", multiple=True,
              help="Only these event types (state, add, remove, command, maintenance, change).")
@pass_settings
def monitor(s, types):
    """Print osctld's events as they happen, until interrupted.

    \b
    Examples:
      osctl monitor
      osctl monitor --type state -j
    """
    import json  # here, not at the top: osctl's start-up pays for every import

    client = s.client()
    try:
        for ev in client.events(types=list(types) or None):
            if s.format == "json":
                click.echo(json.dumps(ev))
                continue
            stamp = time.strftime("%H:%M:%S", time.localtime(ev.pop("time", time.time())))
            kind = ev.pop("type")
            click.echo(f"{stamp} {kind:<8} " + " ".join(f"{k}={cell(v)}" for k, v in ev.items()))
    except KeyboardInterrupt:
        pass


@click.command("history")
@click.option("--pool", "-p", help="Pool [default: the default pool].")
@click.option("--limit", "-n", type=int, default=50, show_default=True, help="Last N entries (0: all).")
@pass_settings
def history(s, pool, limit):
    """State-changing commands run on a pool.

    \b
    Examples:
      osctl history -n 20
      osctl history -p tank -o time,cmd,result
    """
    rows = call(s, "history.ls", {"pool": pool, "limit": limit})
    if s.format in ("table", "csv"):
        for r in rows:
            r["time"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["time"]))
    show(s, rows, ["time", "pool", "cmd", "args", "account", "result", "error"])


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
