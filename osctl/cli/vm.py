"""osctl vm: virtual machines."""

from __future__ import annotations

import os
import sys
import termios
import tty

import click

from .common import call, lifecycle_command, listing_commands, pass_settings, passwd_command, show

LS_COLUMNS = ["pool", "id", "user", "group", "template", "cores", "memory", "disk", "online", "state",
              "pid", "pending_restart"]


@click.group("vm")
def vm():
    """Virtual machines (QEMU): create, start, console, change, delete."""


@vm.command("new")
@click.argument("id")
@click.option("--user", "-u", required=True, help="Owner: a user name, or POOL:USER.")
@click.option("--cores", "-c", type=int, required=True, help="Virtual CPUs.")
@click.option("--memory", "-m", required=True, help="Memory, e.g. 1G or 512M.")
@click.option("--disk", "-d", required=True, help="Disk size, e.g. 10G (sparse on the node).")
@click.option("--template", "-t", default="debian", show_default=True,
              help="Template with a VM image (osctl template ls).")
@click.option("--version", "-v", "version", help="Distribution version [default: the template's].")
@click.option("--pool", "-p", help="Pool [default: the user's].")
@click.option("--group", "-g", default="/default", show_default=True,
              help="Resource group: its limits bind the VM's QEMU process.")
@click.option("--hostname", help="Hostname inside [default: the VM's id].")
@click.option("--ssh-key", "ssh_keys", multiple=True, type=click.File("r"), metavar="FILE",
              help="Public keys (an authorized_keys file) root logs in with; repeatable.")
@click.option("--start", "start_after", is_flag=True, help="Start it once created.")
@pass_settings
def new(s, id, user, cores, memory, disk, template, version, pool, group, hostname, ssh_keys,
        start_after):
    """Create VM ID owned by USER.

    The template's VM image is built once per node (the debian one takes
    minutes the first time); the disk is a sparse file in the user's pool.
    Its root filesystem grows to the disk at each boot (after vm set disk).
    Root is locked: give --ssh-key, or set a password with vm passwd.

    \b
    Example:
      osctl vm new vm1 -u alice -c 2 -m 1G -d 10G --ssh-key ~/.ssh/id_ed25519.pub
    """
    res = call(s, "vm.new", {"id": id, "user": user, "cores": cores, "memory": memory,
                             "disk": disk, "template": template, "version": version,
                             "pool": pool, "hostname": hostname, "group": group,
                             "ssh_keys": [f.read() for f in ssh_keys] or None})
    if start_after:
        res = call(s, "vm.start", {"id": f"{res['pool']}:{id}"})
    show(s, res)


passwd_command(vm, "vm", """Set USER's password in stopped VM ID (root's opens its serial console).

    \b
    Example:
      osctl vm passwd vm1 root
    """)


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


@vm.command("del")
@click.argument("id")
@click.option("--force", "-f", is_flag=True, help="Kill it first if it runs.")
@pass_settings
def delete(s, id, force):
    """Delete VM ID and its disk."""
    show(s, call(s, "vm.del", {"id": id, "force": force}))


@vm.group("set")
def set_():
    """Change a VM's settings."""


def _setter(what: str, metavar: str, doc: str, convert=str) -> None:
    @click.argument("id")
    @click.argument("value", metavar=metavar)
    @pass_settings
    def cmd(s, id, value):
        show(s, call(s, "vm.set", {"id": id, what: convert(value)}))

    cmd.__doc__ = doc
    set_.command(what)(cmd)


_setter("cores", "N", "Set the number of CPUs (applies at the next start).", int)
_setter("memory", "SIZE", "Set the memory, e.g. 2G (applies at the next start).")
_setter("disk", "SIZE", "Grow the disk, e.g. 20G (live on a running VM; never shrinks).")
_setter("group", "GROUP", "Move a stopped VM to resource group GROUP.")


@set_.command("online")
@click.argument("id")
@click.argument("value", type=click.Choice(["true", "false", "on", "off"]))
@click.option("--timeout", "-t", type=int, help="Seconds to wait for the power-down before killing.")
@pass_settings
def set_online(s, id, value, timeout):
    """Start (true) or cleanly power down (false) VM ID, and keep it so."""
    show(s, call(s, "vm.set", {"id": id, "online": value in ("true", "on"), "timeout": timeout}))


COMMANDS = [vm]
