"""osctl: drive osctld from the shell.

Only the group that runs is imported (``GROUPS``): an osctl call pays for
its own command's module, not for every command there is.
"""

from __future__ import annotations

import os
import sys

import click

from ..protocol import OsctlError
from .common import exit_code
from .groups import OUTPUT_OPTIONS, Group, Settings, add_options

# name: ("module:attribute", one-line summary for `osctl --help`). A new
# command group plugs in here; tests/unit/test_cli.py checks the summary
# against the command's own help.
GROUPS = {
    "ct": ("osctl.cli.ct:ct", "Containers: create, start, enter, change, delete."),
    "vm": ("osctl.cli.vm:vm", "Virtual machines (QEMU): create, start, console, change, delete."),
    "group": ("osctl.cli.group:group",
              "Resource groups: /prod/web is below /prod, which is below the pool's root /."),
    "user": ("osctl.cli.user:user", "Users: each owns containers that share one UID/GID map."),
    "pool": ("osctl.cli.pool:pool", "Pools: storage for users and containers, with their configs."),
    "template": ("osctl.cli.misc:template", "Templates containers are built from."),
    "monitor": ("osctl.cli.misc:monitor", "Print osctld's events as they happen, until interrupted."),
    "history": ("osctl.cli.misc:history",
                "State-changing commands run on the node (on object ID), oldest first."),
    "completion": ("osctl.cli.completion:completion", "Print the completion script for SHELL."),
    "manpage": ("osctl.cli.manpage:manpage",
                "Print osctl's manual page (roff), made from its commands' help."),
    "status": ("osctl.cli.misc:status", "The daemon's version, uptime and counts."),
    "healthcheck": ("osctl.cli.misc:healthcheck",
                    "Check every object's pieces against what the node has."),
    "op": ("osctl.cli.misc:op", "Operations in flight: each request osctld is running, by its id."),
    "shutdown": ("osctl.cli.misc:shutdown", "Take the node down: stop every container and VM, then "
                 "lxcfs, the statfs proxy and osctld itself."),
    "flavor": ("osctl.cli.flavor:flavor", "Flavors: cores, memory, disk (and swap) by one name."),
    "maintenance": ("osctl.cli.maintenance:maintenance",
                    "Maintenances: restarts into changes, planned into the group's window."),
    "account": ("osctl.cli.account:account",
                "Accounts: host users that act for tenants on the account socket."),
    "permission": ("osctl.cli.account:permission", "Permissions of accounts on resource groups."),
    "send": ("osctl.cli.transfer:send", "Sending servers to other nodes: this node's send key."),
    "receive": ("osctl.cli.transfer:receive",
                "Receiving servers from other nodes: the keys they may send with."),
    "cluster": ("osctl.cli.cluster:cluster",
                "The cluster on etcd this node is a member of: its nodes and instances."),
    "server-group": ("osctl.cli.cluster:server_group",
                     "Server groups: instances kept on one node or on different nodes."),
    "consumption": ("osctl.cli.consumption:consumption",
                    "Consumption records: traffic, running time and disk, per calendar month."),
}


@click.group(cls=Group, lazy={name: target for name, (target, _) in GROUPS.items()},
             summaries={name: summary for name, (_, summary) in GROUPS.items()},
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--socket", envvar="OSCTLD_SOCKET", metavar="PATH",
              help="osctld's socket [default: /run/osctld/osctld.sock, or $OSCTLD_SOCKET]; "
                   "an account (a frontend) names the account socket")
@click.version_option(package_name="osctld", prog_name="osctl")
@click.pass_context
def cli(ctx, socket):
    """Manage containers, VMs, users and pools of the osctld on this node.

    Every command talks to osctld over its Unix socket. Errors go to stderr
    with a non-zero exit code (2 invalid, 3 not found, 4 exists, 5 busy,
    6 conflict, 7 denied, 8 unsupported, 1 otherwise).

    The output options (-f, -j, -o, -H, -p, -q) go before the command or
    after it: osctl -j ct ls, osctl ct ls -o id,state.

    \b
    Examples:
      osctl ct ls
      osctl ct new web1 -u alice --start
    """
    settings = ctx.ensure_object(Settings)
    settings.socket = socket
    ctx.call_on_close(settings.close)


add_options(cli, OUTPUT_OPTIONS)


def main() -> None:
    if "_OSCTL_COMPLETE" in os.environ:  # the shell asks for completions (completion.COMPLETE_VAR)
        from . import completion

        completion.install(cli)
    try:
        cli(standalone_mode=False)
    except OsctlError as e:
        click.echo(f"osctl: {e.code}: {e.message}", err=True)
        sys.exit(exit_code(e.code))
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
