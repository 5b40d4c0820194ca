"""osctl consumption: what instances and resource groups used, per month."""

from __future__ import annotations

import click

from ..units import DURATION, KINDS, SIZE
from .common import call, pass_settings, show
from .groups import Group

HEAD = ["period", "pool", "type", "object", "id", "group"]
COLUMNS = {
    "traffic": HEAD + ["netif", "rx_bytes", "tx_bytes", "rx_packets", "tx_packets"],
    "ct": HEAD + ["cores", "memory", "seconds", "cpu_seconds"],
    "disk": HEAD + ["bytes", "seconds"],
    None: HEAD + ["netif", "rx_bytes", "tx_bytes", "cores", "memory", "bytes", "seconds",
                  "cpu_seconds"],
}
COLUMNS["vm"] = COLUMNS["ct"]
# The records' own keys, in the units every table uses (rx_bytes, memory: sizes already).
KINDS.update({"bytes": SIZE, "seconds": DURATION, "cpu_seconds": DURATION, "core_seconds": DURATION})


@click.group("consumption", cls=Group)
def consumption():
    """Consumption records: traffic, running time and disk, per calendar month."""


@consumption.command("ls")
@click.option("--period", metavar="YYYY-MM", help="The month [default: this one].")
@click.option("--pool", "-p", help="Only this pool.")
@click.option("--group", "-g", metavar="PATH", help="Only this group and those below it.")
@click.option("--type", "-t", "type_", type=click.Choice(["traffic", "vm", "ct", "disk"]),
              help="Only records of this type.")
@pass_settings
def ls(s, period, pool, group, type_):
    """List a month's records: one per instance (and netif or size held),
    then one per group with all of its instances and child groups.

    Records of deleted instances stay. The table shows sizes and times in
    human units; -j and -f csv give bytes and seconds.

    \b
    Examples:
      osctl consumption ls                          # this month, every pool
      osctl consumption ls --period 2026-11 --type traffic
      osctl consumption ls --group /prod -o id,seconds,core_seconds
      osctl -f csv consumption ls --type vm > vm-2026-11.csv
    """
    rows = call(s, "consumption.ls", {"period": period, "pool": pool, "group": group,
                                      "type": type_})
    show(s, rows, COLUMNS[type_])


