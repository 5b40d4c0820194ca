"""osctl vm: virtual machines."""

from __future__ import annotations

import os
import sys
import termios
import tty

import click

from .common import (call, deletion_command, lifecycle_command, listing_commands, pass_settings, print_log,
                     show)

LS_COLUMNS = ["pool", "id", "user", "group", "template", "cores", "memory", "disk", "online", "state",
              "pid", "pending_restart"]


@click.group("vm")
def vm():
    """Virtual machines (QEMU): create, start, console, change, delete."""


@vm.command("new")
@click.argument("id")
@click.option("--user", "-u", required=True, help="Owner: a user name, or POOL:USER.")
@click.option("--flavor", "-f", help="Flavor: its cores, memory and disk (osctl flavor ls).")
@click.option("--cores", "-c", type=int, help="Virtual CPUs [default: the flavor's].")
@click.option("--memory", "-m", help="Memory, e.g. 1G or 512M [default: the flavor's].")
@click.option("--disk", "-d", help="Disk size, e.g. 10G (sparse on the node) [default: the flavor's].")
@click.option("--template", "-t", default="debian", show_default=True,
              help="Template with a VM image (osctl template ls).")
@click.option("--version", "-v", "version", help="Distribution version [default: the template's].")
@click.option("--pool", "-p", help="Pool [default: the user's].")
@click.option("--group", "-g", default="/default", show_default=True,
              help="Resource group: its limits bind the VM's QEMU process.")
@click.option("--hostname", help="Hostname inside [default: the VM's id].")
@click.option("--start", "start_after", is_flag=True, help="Start it once created.")
@pass_settings
def new(s, id, user, flavor, cores, memory, disk, template, version, pool, group, hostname,
        start_after):
    """Create VM ID owned by USER, sized by --flavor or --cores, --memory
    and --disk (which override the flavor's).

    The template's VM image is built once per node (the debian one takes
    minutes the first time); the disk is a sparse file in the user's pool.

    \b
    Examples:
      osctl vm new db1 -u alice --cores 2 --memory 2G --disk 20G
      osctl vm new db1 -u alice --flavor small --memory 2G
    """
    res = call(s, "vm.new", {"id": id, "user": user, "flavor": flavor, "cores": cores, "memory": memory,
                             "disk": disk, "template": template, "version": version,
                             "pool": pool, "hostname": hostname, "group": group})
    if start_after:
        res = call(s, "vm.start", {"id": f"{res['pool']}:{id}"})
    show(s, res)


listing_commands(vm, "vm", "VMs", LS_COLUMNS,
                 "Show one VM (pending_restart: cores or memory changed since it started).")


def _timeout() -> click.Option:
    return click.Option(["--timeout", "-t"], type=int,
                        help="Seconds to wait for the guest to power down before killing "
                             "[default: the node's vm.stop_timeout].")


lifecycle_command(vm, "vm", "start", "Start VM ID.", LS_COLUMNS)
lifecycle_command(vm, "vm", "stop", "Power VM ID down (ACPI); kill it after --timeout.",
                  LS_COLUMNS, _timeout())
lifecycle_command(vm, "vm", "restart",
                  "Power VM ID down, then start it (applies cores and memory).", LS_COLUMNS, _timeout())
lifecycle_command(vm, "vm", "kill", "Stop VM ID at once, without a clean shutdown.", LS_COLUMNS)


@vm.command("console")
@click.argument("id")
@pass_settings
def console(s, id):
    """Attach this terminal to the serial console of VM ID (Ctrl-a q leaves)."""
    saved = termios.tcgetattr(0) if os.isatty(0) else None
    if saved is not None:
        tty.setraw(0)  # before the banner: setraw flushes input typed until then
        click.echo(f"Console of VM {id}; Ctrl-a q leaves.\r", err=True)
    # The daemon stops relaying when this pipe ends: when we do, however.
    lifeline, keep = os.pipe()
    try:
        call(s, "vm.console", {"id": id}, fds=(0, 1, lifeline))
    finally:
        os.close(lifeline)
        os.close(keep)
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
            click.echo("", err=True)
    sys.exit(0)


deletion_command(vm, "vm", "VM", "its disk")


@vm.group("set")
def set_():
    """Change a VM's settings."""


def _setter(what: str, metavar: str, doc: str, convert=str, restart: bool = False) -> None:
    @click.argument("id")
    @click.argument("value", metavar=metavar)
    @pass_settings
    def cmd(s, id, value, now=False):
        show(s, call(s, "vm.set", {"id": id, what: convert(value), "now": now or None}))

    cmd.__doc__ = doc
    made = set_.command(what)(cmd)
    if restart:
        made.params.append(click.Option(["--now"], is_flag=True, help=(
            "Restart a running VM into it at once, not in its group's maintenance window.")))


_RESTART_DOC = ("applies at the next start: a running VM's restart is planned into its "
                "group's maintenance window (see osctl maintenance), or done at once with --now")
_setter("cores", "N", f"Set the number of CPUs ({_RESTART_DOC}).", int, restart=True)
_setter("memory", "SIZE", f"Set the memory, e.g. 2G ({_RESTART_DOC}).", restart=True)
_setter("disk", "SIZE", "Grow the disk, e.g. 20G (live on a running VM; never shrinks).")
_setter("group", "GROUP", "Move a stopped VM to resource group GROUP.")
_setter("flavor", "FLAVOR", "Give the VM flavor FLAVOR's cores and memory (at the next start) "
                            "and disk (grown; a smaller one keeps its disk).")


@set_.command("online")
@click.argument("id")
@click.argument("value", type=click.Choice(["true", "false", "on", "off"]))
@click.option("--timeout", "-t", type=int, help="Seconds to wait for the power-down before killing.")
@pass_settings
def set_online(s, id, value, timeout):
    """Start (true) or cleanly power down (false) VM ID, and keep it so."""
    show(s, call(s, "vm.set", {"id": id, "online": value in ("true", "on"), "timeout": timeout}))


@vm.command("log")
@click.argument("id")
@click.option("--lines", "-n", type=int, default=200, show_default=True, help="Lines from the end.")
@pass_settings
def log(s, id, lines):
    """Show the console log of VM ID (its serial console, across its runs).

    \b
    Example:
      osctl vm log vm1 -n 50
    """
    print_log(s, call(s, "vm.log", {"id": id, "lines": lines}), [])


COMMANDS = [vm]
