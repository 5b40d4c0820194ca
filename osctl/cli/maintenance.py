"""osctl maintenance: restarts planned into the groups' maintenance windows."""

from __future__ import annotations

import click

from .common import call, pass_settings, show, with_examples
from .groups import Group

LS_COLUMNS = ["id", "machine", "group", "starts", "ends", "estimated_duration", "activities",
              "announced", "state", "result"]


def _duration(seconds: int) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


@click.group("maintenance", cls=Group)
def maintenance():
    """Maintenances: restarts into changes, planned into the group's window.

    A running instance's restart into changes that need one (VM cores and
    memory, container features and devices changed while it runs), planned into its
    group's window and announced ahead.

    \b
    Examples:
      osctl group set /prod maintenance-start 22 maintenance-end 5 timezone Europe/Berlin
      osctl vm set cores v1 4           # planned into /default's next window
      osctl maintenance ls --group /prod
      osctl maintenance run 3f9c2a1b7e  # now, outside the window
    """


@maintenance.command("ls")
@click.option("--pool", "-p", help="Only this pool.")
@click.option("--group", "-g", help="Only instances in this group or below it.")
@pass_settings
def ls(s, pool, group):
    """List planned, active and ended maintenances, soonest first (times in UTC).

    \b
    Example:
      osctl maintenance ls --group /prod
    """
    rows = call(s, "maintenance.ls", {"pool": pool, "group": group})
    if s.format == "table":
        for r in rows:
            r["estimated_duration"] = _duration(r["estimated_duration"])
    show(s, rows, LS_COLUMNS)


def _by_id(verb: str, doc: str) -> None:
    @click.argument("id")
    @pass_settings
    def cmd(s, id):
        show(s, call(s, f"maintenance.{verb}", {"id": id}))

    cmd.__doc__ = with_examples(doc, f"osctl maintenance {verb} 3f9c2a1b7e")
    maintenance.command(verb)(cmd)


_by_id("show", "Show maintenance ID ([pool:]id).")
_by_id("run", "Do maintenance ID now, outside its window: its instance restarts into the changes "
              "(or gets its old settings back if it cannot start with them).")


