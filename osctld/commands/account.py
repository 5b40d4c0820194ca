"""Accounts and their permissions: who may use the account socket, and where.

Root's alone (no verb here declares a permission). An account is named by
its name, a service account by ``<name>@[<pool>:]<group>``; a group by its
path and pool. Each change is written (atomically, the whole table) before
it takes effect.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from osctl.protocol import INVALID, NOT_FOUND, OsctlError

from ..model.account import MAX_UID, SERVICE_PREFIX, Account, Perm, group_ref
from ..model.group import check_group_path
from ..state import split_ref
from . import Between, Context, Target, command


def _group(ctx: Context, path: str, pool: str | None) -> str:
    """An existing group as ``<pool>:<path>``."""
    pstate = ctx.node.registry.pool(pool)
    return group_ref(pstate.pool.name, pstate.group(check_group_path(path)).path)


def _account(ctx: Context, ref: str) -> Account:
    """An account by ``name`` or ``name@[pool:]group``."""
    name, at, where = ref.partition("@")
    if at:
        pool, path = split_ref(where)
        pstate = ctx.node.registry.pool(pool)
        ref = f"{name}@{group_ref(pstate.pool.name, check_group_path(path))}"
    return ctx.node.accounts.get(ref)


@command("account.new", mutating=True, target=Target("pool", "pool"))
async def new(ctx: Context, name: str, uid: Annotated[int, Between(1, MAX_UID)],
              group: str | None = None, pool: str | None = None) -> dict:
    """Register host user ``uid`` as an account; with ``group``, a service
    account of that group (named s-..., unique in the group)."""
    if (group is None) != (not name.startswith(SERVICE_PREFIX)):
        raise OsctlError(INVALID, f"a service account is named {SERVICE_PREFIX}... and given "
                                  "its group; other accounts neither")
    account = Account(name, uid, _group(ctx, group, pool) if group is not None else None)
    ctx.node.accounts.add(account)
    ctx.node.events.publish("add", object="account", id=account.ref)
    return account.public()


@command("account.ls")
async def ls(ctx: Context) -> list:
    """Every account with its permissions."""
    return [a.public() for a in ctx.node.accounts.all()]


@command("account.show")
async def show(ctx: Context, account: str) -> dict:
    """One account with its permissions."""
    return _account(ctx, account).public()


@command("account.del", mutating=True, target=Target("account", "account"))
async def delete(ctx: Context, account: str) -> dict:
    """Remove an account: its connections are refused from their next request."""
    gone = ctx.node.accounts.remove(_account(ctx, account).ref)
    ctx.node.events.publish("remove", object="account", id=gone.ref)
    return gone.public()


@command("permission.add", mutating=True, target=Target("group", "group", pool_arg="pool"))
async def permission_add(ctx: Context, account: str, group: str, permission: str,
                         pool: str | None = None) -> dict:
    """Give an account a permission on a group (and its children, unless a
    child has one of its own); replaces the one it had there."""
    acc, ref, perm = _account(ctx, account), _group(ctx, group, pool), Perm.parse(permission)
    if not acc.within(ref):
        raise OsctlError(INVALID, f"service account {acc.ref} holds permissions only in its "
                                  f"own group and below, not in {ref}")
    changed = replace(acc, grants={**acc.grants, ref: perm})
    ctx.node.accounts.replace(changed)
    return changed.public()


@command("permission.del", mutating=True, target=Target("group", "group", pool_arg="pool"))
async def permission_del(ctx: Context, account: str, group: str, permission: str | None = None,
                         pool: str | None = None) -> dict:
    """Take an account's permission on a group away (``permission``, if
    given, must be the one it has); its children then follow the parent's,
    if the account has one there."""
    acc = _account(ctx, account)
    pstate = ctx.node.registry.pool(pool)
    ref = group_ref(pstate.pool.name, check_group_path(group))  # the group may be gone
    if ref not in acc.grants or permission is not None and acc.grants[ref] != Perm.parse(permission):
        raise OsctlError(NOT_FOUND, f"account {acc.ref} has no permission "
                                    f"{permission or ''}{' ' if permission else ''}on group {ref}")
    changed = replace(acc, grants={g: p for g, p in acc.grants.items() if g != ref})
    ctx.node.accounts.replace(changed)
    return changed.public()


@command("permission.ls")
async def permission_ls(ctx: Context, account: str | None = None) -> list:
    """Permissions: of every account, or of one."""
    accounts = [_account(ctx, account)] if account else ctx.node.accounts.all()
    return [{"account": a.ref, "group": g, "permission": p.wire}
            for a in accounts for g, p in sorted(a.grants.items())]
