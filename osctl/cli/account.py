"""osctl account, osctl permission: who may use the account socket, and where."""

from __future__ import annotations

import click

from .common import call, pass_settings, show
from .groups import Group

LS_COLUMNS = ["account", "uid", "service", "permissions"]
PERMISSION_COLUMNS = ["account", "group", "permission"]
PERMISSIONS = ("stats", "login", "sudo-srv", "manager")
pool_option = click.option("--pool", "-p", help="The group's pool [default: the default pool].")


@click.group("account", cls=Group)
def account():
    """Accounts: host users that act for tenants on the account socket.

    They connect to the account socket and act, with their permissions, on
    resource groups (frontends acting for a tenant). Root keeps every right
    on its own socket."""


@account.command("new")
@click.argument("name")
@click.option("--uid", type=click.IntRange(1, 2**32 - 2), required=True,
              help="The host user that connects as this account (SO_PEERCRED).")
@click.option("--service", is_flag=True,
              help="A service account of --group: named s-..., unique in its group, "
                   "with permissions only there and below.")
@click.option("--group", "-g", metavar="PATH", help="A service account's group.")
@pool_option
@pass_settings
def new(s, name, uid, service, group, pool):
    """Register host user --uid as account NAME.

    \b
    Examples:
      osctl account new frontend --uid 990
      osctl account new s-backup --uid 991 --service --group /prod
    """
    if service != (group is not None):
        raise click.UsageError("--service and --group go together")
    show(s, call(s, "account.new", {"name": name, "uid": uid, "group": group, "pool": pool}))


@account.command("ls")
@pass_settings
def ls(s):
    """List accounts with their permissions (GROUP=PERMISSION).

    \b
    Example:
      osctl account ls
    """
    show(s, call(s, "account.ls"), LS_COLUMNS)


@account.command("show")
@click.argument("account_ref", metavar="ACCOUNT")
@pass_settings
def show_(s, account_ref):
    """Show ACCOUNT (a service account: NAME@[POOL:]GROUP, e.g. s-backup@/prod).

    \b
    Example:
      osctl account show s-backup@/prod
    """
    show(s, call(s, "account.show", {"account": account_ref}))


@account.command("del")
@click.argument("account_ref", metavar="ACCOUNT")
@pass_settings
def delete(s, account_ref):
    """Delete ACCOUNT; its open connections are refused from their next request.

    \b
    Example:
      osctl account del frontend
    """
    show(s, call(s, "account.del", {"account": account_ref}))


@click.group("permission", cls=Group)
def permission():
    """Permissions of accounts on resource groups. Each includes those before it:
    stats (ls, show, events), login (+ exec, attach, console), sudo-srv
    (+ start, stop, restart), manager (+ new, set, del, reinstall, rename,
    netif changes). A permission on a group applies to its children unless a
    child has one of its own for that account."""


@permission.command("add")
@click.argument("account_ref", metavar="ACCOUNT")
@click.argument("group")
@click.argument("perm", metavar="PERMISSION", type=click.Choice(PERMISSIONS))
@pool_option
@pass_settings
def add(s, account_ref, group, perm, pool):
    """Give ACCOUNT PERMISSION on GROUP (replacing the one it had there).

    \b
    Examples:
      osctl permission add frontend /prod manager
      osctl permission add frontend /prod/db stats
      osctl permission add s-backup@/prod /prod login
    """
    show(s, call(s, "permission.add", {"account": account_ref, "group": group,
                                       "permission": perm, "pool": pool}))


@permission.command("del")
@click.argument("account_ref", metavar="ACCOUNT")
@click.argument("group")
@click.argument("perm", metavar="[PERMISSION]", required=False, type=click.Choice(PERMISSIONS))
@pool_option
@pass_settings
def del_(s, account_ref, group, perm, pool):
    """Take ACCOUNT's permission on GROUP away (PERMISSION, if given, must be
    the one it has).

    \b
    Example:
      osctl permission del frontend /prod/db
    """
    show(s, call(s, "permission.del", {"account": account_ref, "group": group,
                                       "permission": perm, "pool": pool}))


@permission.command("ls")
@click.argument("account_ref", metavar="[ACCOUNT]", required=False)
@pass_settings
def ls_permissions(s, account_ref):
    """List permissions: of every account, or of ACCOUNT.

    \b
    Example:
      osctl permission ls frontend
    """
    show(s, call(s, "permission.ls", {"account": account_ref}), PERMISSION_COLUMNS)


