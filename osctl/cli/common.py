"""What every osctl command shares: requests, output, listings, changes."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import click

from ..output import cell, render, sort_rows
from ..protocol import OsctlError, exit_code  # noqa: F401 (exit_code: osctl's, from here)
from ..units import grown, is_grow
from .groups import Settings, listing_options

pass_settings = click.make_pass_decorator(Settings)

def with_examples(doc: str, *examples: str) -> str:
    """A command's help: ``doc``, then its examples, kept as lines by click."""
    word = "Examples" if len(examples) > 1 else "Example"
    return f"{doc}\n\n\b\n{word}:\n" + "\n".join(f"  {e}" for e in examples)


def progress_printer(settings: Settings, prefix: str = ""):
    def show(data: dict) -> None:
        if settings.quiet:
            return
        msg = data.get("message") or " ".join(f"{k}={v}" for k, v in data.items())
        click.echo(f"{prefix}[{data.get('step', 'progress')}] {msg}", err=True)
    return show


def call(settings: Settings, cmd: str, args: dict | None = None, *,
         fds: Sequence[int] = ()) -> Any:
    """One request; Ctrl-C asks the daemon to cancel (and roll back) the operation."""
    client = settings.client()
    req = client.send(cmd, wire_args(args), fds)
    try:
        return client.wait(req, progress_printer(settings))
    except KeyboardInterrupt:
        click.echo(f"osctl: cancelling {cmd}...", err=True)
        cancel(settings, [req])
        sys.exit(130)


def wire_args(args: dict | None) -> dict:
    """The arguments given: those left as None are the daemon's defaults."""
    return {k: v for k, v in (args or {}).items() if v is not None}


def cancel(settings: Settings, reqs: Sequence[int]) -> None:
    """Ask the daemon to cancel (and roll back) these requests of ours, and
    wait until each has ended."""
    from ..client import Client

    client = settings.client()
    with Client(settings.socket) as other:
        for req in reqs:
            try:
                other.call("op.cancel", {"op": f"{client.server_info.get('conn')}:{req}"})
            except OsctlError:
                pass
    for req in reqs:
        try:
            client.wait(req)
        except OsctlError:
            pass


@dataclass
class Columns:
    """The columns of a listing: each with what it shows, the default ones
    in order, and those osctl works out from a row (``ipv4`` from its netifs).
    ``-L`` prints them, and ``ls --help`` lists them."""

    described: dict[str, str]
    default: Sequence[str]
    derived: dict[str, Callable[[dict], Any]] = field(default_factory=dict)

    def __iter__(self):
        return iter(self.default)

    def add_derived(self, row: dict) -> dict:
        return {**row, **{name: f(row) for name, f in self.derived.items()}}

    def table(self, rows: Sequence[dict] = ()) -> list[dict]:
        """What ``-L`` prints: the described columns, then any other key the rows have."""
        names = {**{n: "" for n in self.default}, **self.described,
                 **{k: "" for r in rows for k in r}}
        return [{"column": name, "default": name in self.default, "description": text or None}
                for name, text in names.items()]

    def help(self) -> str:
        """The column list for an epilog: name, then what it shows; the default ones marked."""
        width = max(len(n) for n in self.described) + 2
        lines = [f"  {n:<{width}}{'*' if n in self.default else ' '} {t}"
                 for n, t in self.described.items()]
        return "\b\nColumns (* shown by default; -o picks, -s sorts):\n" + "\n".join(lines)


def show(settings: Settings, data: Any, default_columns: Sequence[str] | None = None) -> None:
    if isinstance(default_columns, Columns) and isinstance(data, list):
        data = [default_columns.add_derived(r) for r in data]
    if settings.list_columns:
        known = default_columns if isinstance(default_columns, Columns) else \
            Columns({}, list(default_columns or ()))
        show(Settings(format=settings.format, header=settings.header),
             known.table(data if isinstance(data, list) else [data]), ["column", "default", "description"])
        return
    if settings.sort and isinstance(data, list):
        try:
            data = sort_rows(data, settings.sort)
        except ValueError as e:
            raise click.UsageError(str(e)) from None
    columns = settings.columns
    if not columns and settings.format in ("table", "csv") and isinstance(data, list):
        # Default columns name what a row may hold (history's "error"): only
        # columns the user asked for with -o must exist.
        columns = [c for c in default_columns or () if not data or any(c in r for r in data)] or None
    try:
        text = render(data, settings.format, columns, settings.header, settings.human)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    if text:
        click.echo(text)


# What a change shows no line for: read back at run time, or derived from
# what it does show.
RUNTIME_KEYS = {"init_pid", "pid", "limits_in_force", "effective_limits", "prlimits_in_force",
                "last_stop", "running_cores", "running_memory", "rootfs", "uid_map", "gid_map"}


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted keys: ``limits.memory``; a list of named
    objects (netifs) by name: ``netifs.eth0.addresses``."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not prefix and k in RUNTIME_KEYS:
                continue
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    named = _named(value)
    if named is not None:
        return flatten(named, prefix)
    return {prefix.rstrip("."): value}


def _named(value: Any) -> dict[str, dict] | None:
    """A list of named objects (netifs) by name, or None if it is not one."""
    if isinstance(value, list) and value and all(isinstance(v, dict) and "name" in v for v in value):
        return {v["name"]: v for v in value}
    return None


def differences(before: dict, after: dict, human: bool = True) -> list[str]:
    """What changed from ``before`` to ``after``, a line each: ``limits.memory
    1G -> 2G``, ``features +tun``, ``netifs +eth1`` for a named object
    added; keys only ``after`` has are notes of what the command did
    (``restarted yes``)."""
    lines: list[str] = []
    whole: list[str] = []
    for key in dict.fromkeys([*before, *after]):
        old_named = _named(before.get(key)) or {}
        new_named = _named(after.get(key)) or {}
        changed = [f"+{n}" for n in new_named if n not in old_named] + \
            [f"-{n}" for n in old_named if n not in new_named]
        if changed:
            lines.append(f"{key} {' '.join(changed)}")
            whole += [f"{key}.{n[1:]}." for n in changed]
    gone_or_new = tuple(whole)  # their keys are in the line above, not each on its own
    old = {k: v for k, v in flatten(before).items() if not k.startswith(gone_or_new)}
    new = {k: v for k, v in flatten(after).items() if not k.startswith(gone_or_new)}
    for key, value in new.items():
        leaf = key.rsplit(".", 1)[-1]
        if key not in old:
            if any(k.startswith(key + ".") for k in old) or (value in (None, False, [], {})):
                continue
            lines.append(f"{key} {cell(value, leaf, human)}")
        elif old[key] != value:
            if isinstance(value, list) and isinstance(old[key], list):
                lines.append(key + " " + " ".join(
                    [f"+{cell(v, leaf, human)}" for v in value if v not in old[key]]
                    + [f"-{cell(v, leaf, human)}" for v in old[key] if v not in value]))
            else:
                lines.append(f"{key} {cell(old[key], leaf, human)} -> {cell(value, leaf, human)}")
    lines += [f"{k} -" for k in old if k not in new and not any(n.startswith(k + ".") for n in new)]
    return lines


def change(settings: Settings, cmd: str, args: dict, show_cmd: str, label: str,
           show_args: dict | None = None) -> Any:
    """Run state-changing ``cmd`` and print what it changed of the object
    ``show_cmd`` shows (``label: limits.memory 1G -> 2G``), or nothing with
    -q; JSON, YAML and CSV get the command's whole result, as scripts
    expect. ``show_args`` name the object [default: ``args``' id]. Returns
    the result."""
    human_output = settings.format == "table"
    which = show_args or {"id": args["id"]}
    before = call(settings, show_cmd, which) if human_output and not settings.quiet else None
    res = call(settings, cmd, args)
    if not human_output:
        show(settings, res)
    elif before is not None:
        after = call(settings, show_cmd, which)
        # A result that is the object itself may say more: restarted, applied_to.
        same = isinstance(res, dict) and all(res.get(k) == after.get(k)
                                             for k in ("id", "name", "path") if k in after)
        notes = {k: v for k, v in res.items() if k not in after} if same else {}
        lines = differences(before, {**after, **notes}, settings.human)
        for line in lines or ["no change"]:
            click.echo(f"{label}: {line}")
    return res


def print_log(s: Settings, res: dict, first: list[str]) -> None:
    """A log as text (``first``: lines to put above it), or the whole answer with -j."""
    if s.format != "table":
        show(s, res)
        return
    for line in first:
        click.echo(line)
    if res["log"]:
        click.echo(res["log"])


def passwd_command(group: click.Group, obj: str, doc: str) -> None:
    """``osctl OBJ passwd ID USER [--password P]``: asked for (twice) unless given."""

    @click.argument("id")
    @click.argument("user")
    @click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
                  help="The new password [default: asked for].")
    @pass_settings
    def passwd(s, id, user, password):
        call(s, f"{obj}.passwd", {"id": id, "user": user, "password": password})

    passwd.__doc__ = doc
    group.command("passwd")(passwd)


def listing_commands(group: click.Group, obj: str, noun: str, columns: Columns,
                     show_doc: str, show_examples: Sequence[str], ls_examples: Sequence[str],
                     usage_columns: Sequence[str] = ()) -> None:
    """``osctl OBJ ls [--pool] [--user] [--group] [--state]`` and ``osctl OBJ
    show ID``, alike for containers and VMs. ``usage_columns`` cost the
    daemon reads per object: asked for only when ``-o`` or ``-s`` names one."""

    @click.option("--pool", "-p", help="Only this pool.")
    @click.option("--user", "-u", help="Only this user's.")
    @click.option("--group", "-g", help="Only in this resource group.")
    @click.option("--state", "-S", help="Only in this state (running, stopped, ...).")
    @pass_settings
    def ls(s, pool, user, group, state):
        # -L: the described columns, without asking the daemon.
        usage = bool({*(s.columns or ()), (s.sort or "").lstrip("-")} & set(usage_columns)) or None
        rows = [] if s.list_columns else call(s, f"{obj}.ls", {"pool": pool, "user": user,
                                                               "state": state, "usage": usage})
        show(s, [r for r in rows if group in (None, r.get("group"))], columns)

    @click.argument("id")
    @pass_settings
    def show_(s, id):
        out = call(s, f"{obj}.show", {"id": id})
        if s.format in ("table", "csv") and out.get("deletion"):
            out["deletion"] = deletion_text(out["deletion"])
        show(s, out)

    ls.__doc__ = with_examples(f"List {noun}.", *ls_examples)
    show_.__doc__ = with_examples(show_doc, *show_examples)
    listing_options(group.command("ls", epilog=columns.help())(ls))
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


def size_value(settings: Settings, show_cmd: str, which: dict, value: str,
               current: Callable[[dict], int | None]) -> str:
    """A size as typed, or for ``+SIZE`` (a grow) the sum of SIZE and what
    the object has: ``show_cmd`` with arguments ``which`` shows it,
    ``current`` picks the value from that."""
    if not is_grow(value):
        return value
    try:
        return str(grown(current(call(settings, show_cmd, which)), value))
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="VALUE") from None
