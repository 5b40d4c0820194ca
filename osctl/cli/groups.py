"""How osctl's commands hang together: groups that load their modules only
when one of their commands runs, and the output options that every command
takes after its name as well as before it.

A new command group plugs in with one line in ``main.GROUPS`` (its module,
the group's attribute and its one-line summary); inside the module,
``@click.group("name", cls=Group)`` makes every subgroup and command below
it take the output options (``-o -j -H -f -p -q``) too.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

import click

from ..output import FORMATS


@dataclass
class Settings:
    """What the options before and after the command's name asked for."""

    socket: str | None = None
    format: str = "table"
    columns: list[str] | None = None
    header: bool = True
    quiet: bool = False
    human: bool = True  # sizes, rates and times in units; -p: exact numbers
    sort: str | None = None
    list_columns: bool = False
    _client: Any = None

    def client(self):
        """The connection to osctld, made at the first request."""
        if self._client is None:
            from ..client import Client

            self._client = Client(self.socket).connect()
        return self._client

    def close(self) -> None:
        """Close the connection to the daemon, if a command made one."""
        if self._client is not None:
            self._client.close()


def _setter(field: str, convert: Callable[[Any], Any] = lambda v: v):
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
        if value is not None and value is not False:
            setattr(ctx.ensure_object(Settings), field, convert(value))
    return callback


def _columns(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


# (declarations, help, what it sets): one list for before and after the command.
OUTPUT_OPTIONS: list[tuple[tuple[str, ...], dict]] = [
    (("-f", "--format"), dict(type=click.Choice(FORMATS), help="Output format [default: table].",
                              callback=_setter("format"))),
    (("-j", "--json"), dict(is_flag=True, help="Same as --format json.",
                            callback=_setter("format", lambda _v: "json"))),
    (("-o", "--columns"), dict(metavar="COLS", help="Comma-separated columns to show.",
                               callback=_setter("columns", _columns))),
    (("-H", "--no-header"), dict(is_flag=True, help="Leave out the header line.",
                                 callback=_setter("header", lambda _v: False))),
    (("-p", "--parsable"), dict(is_flag=True, help="Exact numbers (bytes, seconds) in tables.",
                                callback=_setter("human", lambda _v: False))),
    (("-q", "--quiet"), dict(is_flag=True, help="No progress messages; changes print nothing.",
                             callback=_setter("quiet"))),
]

# Sorting and the column list: for listings (``ls``), see ``listing_options``.
LISTING_OPTIONS: list[tuple[tuple[str, ...], dict]] = [
    (("-s", "--sort"), dict(metavar="COLUMN", help="Sort by COLUMN (-COLUMN: descending).",
                            callback=_setter("sort"))),
    (("-L", "--list-columns"), dict(is_flag=True, help="List the columns there are, and stop.",
                                    callback=_setter("list_columns"))),
]


def add_options(cmd: click.Command, options: list[tuple[tuple[str, ...], dict]]) -> None:
    """Give ``cmd`` these options, each under the names ``cmd`` does not use
    itself (``ct del -f`` stays --force: there --format is long only)."""
    taken = {name for p in cmd.params for name in (*p.opts, *p.secondary_opts)}
    taken.update(cmd.context_settings.get("help_option_names", ("-h", "--help")))
    for decls, kw in options:
        free = [d for d in decls if d not in taken]
        if any(d.startswith("--") for d in free):
            cmd.params.append(click.Option(free, expose_value=False, **kw))
            taken.update(free)


def listing_options(cmd: click.Command) -> click.Command:
    """Decorator: ``-s COLUMN`` and ``-L`` for a command that lists."""
    add_options(cmd, LISTING_OPTIONS)
    return cmd


def takes_output_options(cmd: click.Command) -> bool:
    """Not a command whose arguments are another program's (``ct exec``):
    its ``-o`` is that program's."""
    return not cmd.context_settings.get("ignore_unknown_options")


class Group(click.Group):
    """A group whose commands take the output options, and whose ``lazy``
    commands (name: ``"module:attribute"``) are imported only when they run.

    ``summaries`` gives each lazy command's one-line help, so that
    ``osctl --help`` imports none of them.
    """

    group_class = type  # subgroups made with @group.group are Groups too

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None,
                 summaries: dict[str, str] | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.lazy = dict(lazy or {})
        self.summaries = dict(summaries or {})

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        if not isinstance(cmd, click.Group) and takes_output_options(cmd) \
                and not getattr(cmd, "_osctl_output", False):
            add_options(cmd, OUTPUT_OPTIONS)
            cmd._osctl_output = True  # type: ignore[attr-defined]
        super().add_command(cmd, name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in self.lazy:
            module, _, attr = self.lazy[name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return self.commands.get(name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in self.commands or name not in self.summaries:
                cmd = self.get_command(ctx, name)
                if cmd is None or cmd.hidden:
                    continue
                rows.append((name, cmd.get_short_help_str(limit=formatter.width)))
            else:
                rows.append((name, self.summaries[name]))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
