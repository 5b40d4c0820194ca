"""One action on many containers or VMs: ``osctl ct stop web1 web2``,
``osctl ct restart -u alice``, ``osctl vm start --all``.

The targets are the IDs given, or those that ``--all`` and the filters
(``-u USER``, ``-p POOL``, ``-g GROUP``) pick. Their requests go out on one
connection, as many in flight as the node's parallelism (osctld's
``autostart_parallelism``), and each result is printed as it comes in: a
line per target in a table, a list at the end in JSON or YAML. The exit
code is non-zero if any failed (the failure's own code if they all failed
alike). One ID and no filter is the plain single call: its result (the
object, in JSON) and its error exactly as before.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import click

from ..protocol import OsctlError
from .common import (Settings, call, cancel, deletion_text, exit_code, pass_settings,
                     progress_printer, show, wire_args, with_examples)

# How many requests are in flight when the daemon does not say.
DEFAULT_PARALLELISM = 4
MANY = ("Several IDs, or --all and the filters -u, -p, -g, act on many at once "
        "(the node's parallelism), each reported.")


@dataclass
class Selection:
    """What the operator named: IDs, or --all and filters."""

    ids: Sequence[str] = ()
    all: bool = False
    user: str | None = None
    pool: str | None = None
    group: str | None = None

    @property
    def filtered(self) -> bool:
        return self.all or any(v is not None for v in (self.user, self.pool, self.group))

    @property
    def single(self) -> bool:
        """One ID and no filter: the plain call."""
        return len(self.ids) == 1 and not self.filtered

    def check(self) -> None:
        if self.ids and self.filtered:
            raise click.UsageError("give IDs or --all/-u/-p/-g, not both")
        if not self.ids and not self.filtered:
            raise click.UsageError("give one or more IDs, or --all (-u USER, -p POOL, -g GROUP narrow it)")

    def targets(self, s: Settings, obj: str) -> list[str]:
        """POOL:ID of each object picked, in the listing's order."""
        if not self.filtered:
            return list(dict.fromkeys(self.ids))
        rows = call(s, f"{obj}.ls", {"user": self.user, "pool": self.pool})
        return [f"{r['pool']}:{r['id']}" for r in rows if self.group in (None, r.get("group"))]


def selection_options(noun: str, ids: bool = True) -> Callable[[Callable], Callable]:
    """``[ID]... | --all [-u USER] [-p POOL] [-g GROUP]`` on a command: its
    function takes ``ids`` (unless ``ids`` is false: then the command names
    them its own way), ``all_``, ``user``, ``pool`` and ``group``."""

    def decorate(f: Callable) -> Callable:
        for opt in reversed([
            *([click.argument("ids", nargs=-1, metavar="[ID]...")] if ids else []),
            click.option("--all", "-a", "all_", is_flag=True, help=f"Every {noun} (narrowed by -u, -p, -g)."),
            click.option("--user", "-u", help=f"The {noun}s of this user."),
            click.option("--pool", "-p", help=f"The {noun}s in this pool."),
            click.option("--group", "-g", help=f"The {noun}s in this resource group."),
        ]):
            f = opt(f)
        return f

    return decorate


def selection(ids, all_, user, pool, group) -> Selection:
    sel = Selection(tuple(ids), all_, user, pool, group)
    sel.check()
    return sel


@dataclass
class Outcome:
    target: str
    result: Any = None
    error: OsctlError | None = None

    def row(self) -> dict:
        pool, _, id = self.target.rpartition(":")
        out: dict = {"id": id, "pool": pool or None, "ok": self.error is None}
        if self.error is not None:
            out["error"] = {"code": self.error.code, "message": self.error.message}
        elif isinstance(self.result, dict):
            out["state"] = self.result.get("state")
        return out


def parallelism(s: Settings) -> int:
    try:
        return int(call(s, "daemon.status").get("parallelism") or DEFAULT_PARALLELISM)
    except (OsctlError, TypeError, ValueError):
        return DEFAULT_PARALLELISM


def run_each(s: Settings, cmd: str, targets: Sequence[str], args: dict,
             on_done: Callable[[Outcome], None], width: int | None = None) -> list[Outcome]:
    """``cmd`` for every target, ``width`` at a time on one connection;
    ``on_done`` sees each outcome as it comes in. Ctrl-C cancels those in
    flight (each rolls back) and starts no more."""
    client = s.client()
    width = width or parallelism(s)
    todo = list(targets)
    flying: dict[int, str] = {}
    outcomes: list[Outcome] = []
    try:
        while todo or flying:
            while todo and len(flying) < width:
                target = todo.pop(0)
                flying[client.send(cmd, wire_args({**args, "id": target}))] = target
            req, result, error = client.wait_any(
                flying, lambda req, data: progress_printer(s, f"{flying[req]}: ")(data))
            outcome = Outcome(flying.pop(req), result, error)
            outcomes.append(outcome)
            on_done(outcome)
    except KeyboardInterrupt:
        click.echo(f"osctl: cancelling {len(flying)} in flight; {len(todo)} not started", err=True)
        cancel(s, list(flying))
        sys.exit(130)
    return outcomes


def act(s: Settings, obj: str, verb: str, sel: Selection, args: dict,
        describe: Callable[[Any], str] = lambda res: (res or {}).get("state", "done")) -> None:
    """``OBJ.VERB`` on every object ``sel`` picks, reported as it goes."""
    if sel.single:
        res = call(s, f"{obj}.{verb}", {**args, "id": sel.ids[0]})
        if s.format == "table":
            if not s.quiet:
                click.echo(f"{sel.ids[0]}: {describe(res)}")
        else:
            show(s, res)
        return
    targets = sel.targets(s, obj)
    if not targets:
        click.echo("osctl: nothing matches", err=True)
        return
    name_width = max(len(t) for t in targets)

    def report(o: Outcome) -> None:
        if s.format != "table" or (s.quiet and o.error is None):
            return
        what = f"error {o.error.code}: {o.error.message}" if o.error else describe(o.result)
        click.echo(f"{o.target:<{name_width}}  {what}")

    outcomes = run_each(s, f"{obj}.{verb}", targets, args, report)
    if s.format != "table":
        show(s, [o.row() for o in sorted(outcomes, key=lambda o: targets.index(o.target))])
    failed = [o for o in outcomes if o.error is not None]
    if failed:
        click.echo(f"osctl: {obj} {verb}: {len(failed)} of {len(outcomes)} failed", err=True)
        codes = {o.error.code for o in failed if o.error is not None}
        sys.exit(exit_code(codes.pop()) if len(codes) == 1 else 1)


def bulk_command(group: click.Group, obj: str, noun: str, verb: str, doc: str,
                 *options: Callable, describe: Callable[[Any], str] | None = None) -> click.Command:
    """``osctl OBJ VERB [ID]... [--all] [-u USER] [-p POOL] [-g GROUP] [options]``."""

    @selection_options(noun)
    @pass_settings
    def cmd(s, ids, all_, user, pool, group, **kw):
        act(s, obj, verb, selection(ids, all_, user, pool, group), kw,
            *([describe] if describe else []))

    cmd.__doc__ = doc
    for option in options:
        cmd = option(cmd)
    return group.command(verb)(cmd)


def lifecycle_commands(group: click.Group, obj: str, noun: str,
                       docs: dict[str, tuple[str, Sequence[str]]], timeout: Callable,
                       force_help: str, start_options: Sequence[Callable] = ()) -> None:
    """start, stop, restart, kill and del of containers or VMs, each on many
    at once; ``docs`` has each verb's help and examples, ``timeout`` is the
    option of stop and restart, ``start_options`` those of start."""
    staged = [
        click.option("--at", metavar="DATE", help=(
            "Staged deletion around DATE (ISO 8601; without a zone, the group's; earliest: "
            "tomorrow, midnight): announced 5 days before, stopped and kept on the date, data, "
            "addresses and config gone 3 days after, the name free after 38 (node config).")),
        click.option("--cancel", is_flag=True, default=None,
                     help="Call a staged deletion off (before its hard stage)."),
    ]
    for verb, (doc, examples) in docs.items():
        options = {"start": list(start_options), "stop": [timeout], "restart": [timeout],
                   "del": [click.option("--force", "-f", is_flag=True, help=force_help), *staged],
                   }.get(verb, [])
        bulk_command(group, obj, noun, verb, with_examples(f"{doc} {MANY}", *examples), *options,
                     describe={"del": _deleted, "start": _started}.get(verb))


def _started(result: Any) -> str:
    """Its state, and the note of one that was running already."""
    result = result if isinstance(result, dict) else {}
    return "; ".join(str(v) for v in (result.get("state", "done"), result.get("note")) if v)


def _deleted(result: Any) -> str:
    """What a del did: deleted at once, a staged deletion's stages, or called off."""
    if isinstance(result, dict) and result.get("deletion"):
        return "deletion " + deletion_text(result["deletion"])
    if isinstance(result, dict) and result.get("state"):
        return result["state"]
    return "deleted"
