"""osctl vm: virtual machines."""

from __future__ import annotations

import os
import sys
import termios
import tty

import click

from .bulk import lifecycle_commands
from .common import (Columns, attr_commands, call, change, listing_commands, pass_settings, passwd_command, print_log,
                     show,
                     size_value, with_examples)
from .cluster_settings import instance_settings
from .groups import Group

COLUMNS = Columns({
    "pool": "the pool it lives in",
    "id": "its name, unique in the pool",
    "user": "its owner",
    "group": "its resource group",
    "template": "the template its disk came from",
    "version": "the template's version",
    "cores": "virtual CPUs",
    "memory": "memory",
    "disk": "disk size",
    "online": "kept running (started again with osctld)",
    "state": "running, stopped, ...",
    "pid": "QEMU's PID on the node",
    "pending_restart": "cores, memory or netifs changed since it started",
}, ["pool", "id", "user", "group", "template", "cores", "memory", "disk", "online", "state",
    "pid", "pending_restart"])


@click.group("vm", cls=Group, lazy={"netif": "osctl.cli.netif:vm_netif"},
             summaries={"netif": "Network interfaces of VMs (ID is a VM): routed only, a tap on the "
                                 "node each; changes to a running VM apply at its next start."})
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
@click.option("--ssh-key", "ssh_keys", multiple=True, type=click.File("r"), metavar="FILE",
              help="Public keys (an authorized_keys file) root logs in with; repeatable.")
@click.option("--start", "start_after", is_flag=True,
              help="Start it once created (with --node: on that node).")
@click.option("--node", "-n", "node", metavar="NAME|auto",
              help="In a cluster: create it on that node, or (auto) where the leader places it.")
@click.option("--server-group", metavar="NAME",
              help="In a cluster: its server group (osctl server-group ls); implies --node auto.")
@pass_settings
def new(s, id, user, flavor, cores, memory, disk, template, version, pool, group, hostname,
        ssh_keys, start_after, node, server_group):
    """Create VM ID owned by USER, sized by --flavor or --cores, --memory
    and --disk (which override the flavor's).

    The template's VM image is built once per node (the debian one takes
    minutes the first time); the disk is a sparse file in the user's pool.
    Its root filesystem grows to the disk at each boot (after vm set disk).
    Root is locked: give --ssh-key, or set a password with vm passwd.
    In a cluster, --node auto has the leader place it (see osctl ct new);
    --start starts it there.

    \b
    Examples:
      osctl vm new v1 -u alice -c 2 -m 2G -d 20G --start
      osctl vm new db1 -u alice --flavor small --memory 2G
      osctl vm new vm1 -u alice -c 2 -m 1G -d 10G --ssh-key ~/.ssh/id_ed25519.pub
      osctl vm new db2 -u alice --flavor small --node auto --server-group db
    """
    res = call(s, "vm.new", {"id": id, "user": user, "flavor": flavor, "cores": cores, "memory": memory,
                             "disk": disk, "template": template, "version": version,
                             "pool": pool, "hostname": hostname, "group": group,
                             "ssh_keys": [f.read() for f in ssh_keys] or None, "node": node,
                             "server_group": server_group, "start": start_after})
    show(s, res)


passwd_command(vm, "vm", """Set USER's password in stopped VM ID (root's opens its serial console).

    \b
    Example:
      osctl vm passwd vm1 root
    """)


listing_commands(vm, "vm", "VMs", COLUMNS,
                 "Show one VM (pending_restart: cores or memory changed since it started).",
                 ["osctl vm show v1"], ["osctl vm ls -o id,state,memory -s memory", "osctl vm ls -u alice -j"])

_timeout = click.option("--timeout", "-t", type=int,
                        help="Seconds to wait for the guest to power down before killing "
                             "[default: the node's vm.stop_timeout].")
lifecycle_commands(vm, "vm", "VM", {
    "start": ("Start VMs.", ["osctl vm start v1", "osctl vm start -u alice"]),
    "stop": ("Power VMs down (ACPI); kill them after --timeout.",
             ["osctl vm stop v1 -t 120", "osctl vm stop --all"]),
    "restart": ("Power VMs down, then start them (applies cores and memory).",
                ["osctl vm restart v1", "osctl vm restart -g /prod"]),
    "kill": ("Stop VMs at once, without a clean shutdown.", ["osctl vm kill v1"]),
    "del": ("Delete VMs and their disks, at once or staged (--at).",
            ["osctl vm del v1", "osctl vm del -f -u alice", "osctl vm del v1 --at 2026-12-24"]),
}, _timeout, "Kill a running one first; a replica (vm replicate) goes too, at its standby.")


@vm.command("console")
@click.argument("id")
@pass_settings
def console(s, id):
    """Attach this terminal to the serial console of VM ID (Ctrl-a q leaves).

    \b
    Example:
      osctl vm console v1
    """
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


@vm.group("set")
def set_():
    """Change a VM's settings."""


def set_vm(s, id: str, **changes) -> None:
    """``vm.set`` of VM ID, printing what changed."""
    change(s, "vm.set", {"id": id, **changes}, "vm.show", id)


def _setter(what: str, metavar: str, doc: str, example: str, kind=str, restart: bool = False) -> None:
    @click.argument("id")
    @click.argument("value", metavar=metavar, type=kind)
    @pass_settings
    def cmd(s, id, value, now=False):
        if metavar == "SIZE":  # +SIZE grows it
            value = size_value(s, "vm.show", {"id": id}, value, lambda vm: vm[what])
        set_vm(s, id, **{what: value, "now": now or None})

    cmd.__doc__ = with_examples(doc, example)
    made = set_.command(what)(cmd)
    if restart:
        made.params.append(click.Option(["--now"], is_flag=True, help=(
            "Restart a running VM into it at once, not in its group's maintenance window.")))


_RESTART_DOC = ("applies at the next start: a running VM's restart is planned into its "
                "group's maintenance window (see osctl maintenance), or done at once with --now")
_setter("cores", "N", f"Set the number of CPUs ({_RESTART_DOC}).",
        "osctl vm set cores v1 4", int, restart=True)
_setter("memory", "SIZE", f"Set the memory, e.g. 2G or +1G ({_RESTART_DOC}).",
        "osctl vm set memory v1 4G", restart=True)
_setter("disk", "SIZE", "Grow the disk to SIZE, or by +SIZE (live on a running VM; never shrinks).",
        "osctl vm set disk v1 +10G")
_setter("group", "GROUP", "Move a stopped VM to resource group GROUP.",
        "osctl vm set group v1 /prod")
_setter("flavor", "FLAVOR", "Give the VM flavor FLAVOR's cores and memory (at the next start) "
                            "and disk (grown; a smaller one keeps its disk).",
        "osctl vm set flavor v1 large")


@set_.command("online")
@click.argument("id")
@click.argument("value", type=click.BOOL, metavar="on|off")
@click.option("--timeout", "-t", type=int, help="Seconds to wait for the power-down before killing.")
@pass_settings
def set_online(s, id, value, timeout):
    """Start (on) or cleanly power down (off) VM ID, and keep it so; also
    yes/no, true/false.

    \b
    Example:
      osctl vm set online v1 off -t 120
    """
    set_vm(s, id, online=value, timeout=timeout)

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


attr_commands(vm, "vm", "VM")

@vm.command("migrate")
@click.argument("id")
@click.argument("dest")
@click.option("--to-pool", help="Its pool on the destination [default: the destination's default pool].")
@pass_settings
def migrate(s, id, dest, to_pool):
    """Move VM ID to the node at DEST (host or host:port of its sshd, which
    has this node's send key: osctl receive authorized-keys add there).

    A running VM moves live: its disk is mirrored and its memory copied while
    it runs, then it pauses for at most about the node's vm.migrate_downtime
    and runs on at DEST, its addresses with it. A stopped VM moves by copying
    its files. Its user and group must exist at DEST. On failure (or Ctrl-C)
    it stays here as it was, and nothing of it is left at DEST.

    \b
    Examples:
      osctl vm migrate v1 198.51.100.11
      osctl vm migrate v1 node2.example.net:2222 --to-pool tank
    """
    show(s, call(s, "vm.migrate", {"id": id, "dest": dest, "to_pool": to_pool}))


@vm.command("replicate")
@click.argument("id")
@click.argument("dest")
@click.option("--to-pool", metavar="POOL", help="Its pool at DEST (the first pass).")
@pass_settings
def replicate(s, id, dest, to_pool):
    """One pass of a VM's replica on another node (HA).

    The first time, DEST registers VM ID as a staged VM that never starts
    and gets its files; each later pass sends what changed. Between two
    btrfs pools a pass is a snapshot taken with the guest paused for its
    instant, sent incrementally (btrfs send); from or to another pool the
    whole disk goes each time, and only while the VM is stopped. A replica
    of a running VM is crash-consistent: its disk as a power cut would
    leave it. A cluster does this on a schedule for VMs marked ha;
    osctl vm drop-replica ID drops the replica.

    \b
    Example:
      osctl vm replicate v1 node2.example.net
    """
    show(s, call(s, "vm.replicate", {"id": id, "dest": dest, "to_pool": to_pool}))


@vm.command("drop-replica")
@click.argument("id")
@click.option("--local", is_flag=True, help="Only here: its node is gone.")
@pass_settings
def drop_replica(s, id, local):
    """Drop VM ID's replica, at its node and here.

    \b
    Examples:
      osctl vm drop-replica v1
      osctl vm drop-replica v1 --local
    """
    show(s, call(s, "vm.replica.drop", {"id": id, "local": local}))


@vm.command("recover")
@click.argument("id")
@click.option("--no-start", is_flag=True, help="Leave it stopped.")
@pass_settings
def recover(s, id, no_start):
    """Start a VM from its replica here (its node is gone).

    On the node holding its replica: VM ID is made of the last pass that
    arrived, and started with its addresses. What it wrote after the last
    pass is lost; data_age says how long ago that pass was taken.

    \b
    Example:
      osctl vm recover v1
    """
    show(s, call(s, "vm.recover", {"id": id, "start": not no_start}))


instance_settings(set_, "vm")
