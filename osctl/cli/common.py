"""What every osctl command shares: the client, output options, errors."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import click

from ..client import Client
from ..output import render
from ..protocol import OsctlError


@dataclass
class Settings:
    socket: str | None = None
    format: str = "table"
    columns: list[str] | None = None
    header: bool = True
    quiet: bool = False
    _client: Client | None = field(default=None, repr=False)

    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.socket).connect()
        return self._client

    def close(self) -> None:
        """Close the connection to the daemon, if a command made one."""
        if self._client is not None:
            self._client.close()


pass_settings = click.make_pass_decorator(Settings)


def progress_printer(settings: Settings):
    def show(data: dict) -> None:
        if settings.quiet:
            return
        msg = data.get("message") or " ".join(f"{k}={v}" for k, v in data.items())
        click.echo(f"[{data.get('step', 'progress')}] {msg}", err=True)
    return show


def call(settings: Settings, cmd: str, args: dict | None = None, *,
         fds: Sequence[int] = ()) -> Any:
    """One request; Ctrl-C asks the daemon to cancel (and roll back) the operation."""
    client = settings.client()
    req = client.send(cmd, {k: v for k, v in (args or {}).items() if v is not None}, fds)
    try:
        return client.wait(req, progress_printer(settings))
    except KeyboardInterrupt:
        op = f"{client.server_info.get('conn')}:{req}"
        click.echo(f"osctl: cancelling {cmd} ({op})...", err=True)
        with Client(settings.socket) as other:
            try:
                other.call("op.cancel", {"op": op})
            except OsctlError:
                pass
        try:
            client.wait(req)
        except OsctlError:
            pass
        sys.exit(130)


def show(settings: Settings, data: Any, default_columns: Sequence[str] | None = None) -> None:
    columns = settings.columns
    if not columns and settings.format in ("table", "csv") and isinstance(data, list):
        # Default columns name what a row may hold (history's "error"): only
        # columns the user asked for with -o must exist.
        columns = [c for c in default_columns or () if not data or any(c in r for r in data)] or None
    try:
        text = render(data, settings.format, columns, settings.header)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    if text:
        click.echo(text)


def print_log(s: Settings, res: dict, first: list[str]) -> None:
    """A log as text (``first``: lines to put above it), or the whole answer with -j."""
    if s.format != "table":
        show(s, res)
        return
    for line in first:
        click.echo(line)
    if res["log"]:
        click.echo(res["log"])


def lifecycle_command(group: click.Group, obj: str, verb: str, doc: str,
                      columns: Sequence[str], timeout: click.Option | None = None) -> None:
    """``osctl OBJ VERB ID [--timeout N]``: one call, the object shown after."""

    @click.argument("id")
    @pass_settings
    def cmd(s, id, timeout=None):
        show(s, call(s, f"{obj}.{verb}", {"id": id, "timeout": timeout}), columns)

    cmd.__doc__ = doc
    made = group.command(verb)(cmd)
    if timeout is not None:
        made.params.append(timeout)


def listing_commands(group: click.Group, obj: str, noun: str, columns: Sequence[str],
                     show_doc: str, usage_columns: Sequence[str] = ()) -> None:
    """``osctl OBJ ls [--pool] [--user] [--state]`` and ``osctl OBJ show ID``,
    alike for containers and VMs. ``usage_columns`` cost the daemon reads per
    object: asked for only when ``-o`` names one."""

    @click.option("--pool", "-p", help="Only this pool.")
    @click.option("--user", "-u", help="Only this user's.")
    @click.option("--state", "-s", help="Only in this state (running, stopped, ...).")
    @pass_settings
    def ls(s, pool, user, state):
        usage = bool(set(s.columns or ()) & set(usage_columns)) or None
        show(s, call(s, f"{obj}.ls", {"pool": pool, "user": user, "state": state, "usage": usage}),
             columns)

    @click.argument("id")
    @pass_settings
    def show_(s, id):
        out = call(s, f"{obj}.show", {"id": id})
        if s.format in ("table", "csv") and out.get("deletion"):
            out["deletion"] = deletion_text(out["deletion"])
        show(s, out)

    ls.__doc__ = f"List {noun}."
    show_.__doc__ = show_doc
    group.command("ls")(ls)
    group.command("show")(show_)


def limit_args(**values) -> dict | None:
    """Limit options given on the command line (``--cpu-limit`` arrives as
    ``cpu_limit``: the wire's name too)."""
    out = {k: v for k, v in values.items() if v is not None}
    return out or None


def wire_name(typed: str) -> str:
    """The wire's name of a limit or quota as operators type it: cpu-limit
    is ``cpu_limit``, ipv6-64 is ``ipv6_64``."""
    return typed.replace("-", "_")


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(t))


def deletion_text(d: dict) -> str:
    """A staged deletion for people: its date, then each stage with when it
    is due, or when it was reached."""
    stages = [f"{name} {'reached ' + _when(d['reached'][name]) if name in d['reached'] else 'due ' + _when(due)}"
              for name, due in d["due"].items()]
    return f"on {_when(d['at'])}: " + "; ".join(stages)


def deletion_command(group: click.Group, obj: str, noun: str, what: str) -> None:
    """``osctl OBJ del ID [--force | --at DATE | --cancel]``, alike for containers and VMs."""

    @click.argument("id")
    @click.option("--force", "-f", is_flag=True, help="Stop it first if it runs (at once only).")
    @click.option("--at", metavar="DATE",
                  help="Staged deletion around DATE (ISO 8601; without a zone, the group's). "
                       "Earliest: tomorrow, midnight.")
    @click.option("--cancel", is_flag=True, help="Call a staged deletion off (before its hard stage).")
    @pass_settings
    def cmd(s, id, force, at, cancel):
        show(s, call(s, f"{obj}.del", {"id": id, "force": force, "at": at, "cancel": cancel}))

    cmd.__doc__ = f"""Delete {noun} ID and {what}.

    At once (operators), or staged with --at: announced 5 days before
    (prepare), stopped and kept, not startable, on the date (soft), data,
    addresses and config gone 3 days after (hard), backups after 32 days
    (purge), the name free again after 38 (recycle); the node's config
    sets these times. --cancel until the hard stage brings it back, stopped.

    \b
    Examples:
      osctl {obj} del web1 --force
      osctl {obj} del web1 --at 2026-12-24
      osctl {obj} del web1 --at 2026-12-24T18:00+01:00
      osctl {obj} del web1 --cancel
    """
    group.command("del")(cmd)
