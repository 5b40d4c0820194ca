"""osctl: drive osctld from the shell."""

from __future__ import annotations

import os
import sys

import click

from ..output import FORMATS
from ..protocol import OsctlError
from . import account, completion, ct, flavor, group, maintenance, manpage, misc, netif, pool, user, vm
from .common import Settings

# Exit codes by error code, so scripts can tell "not found" from "busy".
EXIT_CODES = {"invalid": 2, "not_found": 3, "exists": 4, "busy": 5, "conflict": 6,
              "denied": 7, "unsupported": 8, "cancelled": 130}


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--socket", envvar="OSCTLD_SOCKET", metavar="PATH",
              help="osctld's socket [default: /run/osctld/osctld.sock, or $OSCTLD_SOCKET]; "
                   "an account (a frontend) names the account socket")
@click.option("--format", "-f", "fmt", type=click.Choice(FORMATS), default="table",
              show_default=True, help="Output format.")
@click.option("-j", "--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("-o", "--columns", metavar="COLS", help="Comma-separated columns to show.")
@click.option("-H", "--no-header", is_flag=True, help="Leave out the header line.")
@click.option("-q", "--quiet", is_flag=True, help="No progress messages.")
@click.version_option(package_name="osctld", prog_name="osctl")
@click.pass_context
def cli(ctx, socket, fmt, as_json, columns, no_header, quiet):
    """Manage containers, users and pools of the osctld on this node.

    Every command talks to osctld over its Unix socket. Errors go to stderr
    with a non-zero exit code (2 invalid, 3 not found, 4 exists, 5 busy,
    6 conflict, 7 denied, 8 unsupported, 1 otherwise).
    """
    ctx.obj = Settings(socket=socket, format="json" if as_json else fmt,
                       columns=[c.strip() for c in columns.split(",")] if columns else None,
                       header=not no_header, quiet=quiet)
    ctx.call_on_close(ctx.obj.close)


for module in (ct, vm, flavor, group, maintenance, user, pool, account, misc, completion, manpage):
    for command in module.COMMANDS:
        cli.add_command(command)
# Objects that belong to a container live under `osctl ct`.
for command in netif.COMMANDS:
    ct.ct.add_command(command)
vm.vm.add_command(netif.vm_netif)


def main() -> None:
    if completion.COMPLETE_VAR in os.environ:  # the shell asks for completions
        completion.install(cli)
    try:
        cli(standalone_mode=False)
    except OsctlError as e:
        click.echo(f"osctl: {e.code}: {e.message}", err=True)
        sys.exit(EXIT_CODES.get(e.code, 1))
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
