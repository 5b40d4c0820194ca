"""The node's accounts (``<state_dir>/accounts.yml``) and what each may see.

Accounts are node state, not a pool's: they name host users, which stay
with the node when a pool moves. The file is rewritten whole and atomically
(``store.write_doc``) at each change, and the change takes effect in memory
only once it is written: a failed write changes nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path

from osctl.protocol import EXISTS, NOT_FOUND, OsctlError

from .model.account import ROOT, Access, Account, Perm
from .store import read_doc, write_doc

log = logging.getLogger(__name__)


class Accounts:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.by_ref: dict[str, Account] = {}

    def load(self) -> None:
        if self.path.exists():
            self.by_ref = {a.ref: a for a in map(Account.from_dict,
                                                 read_doc(self.path).get("accounts") or [])}
        log.info("%d accounts", len(self.by_ref))

    def all(self) -> list[Account]:
        return [self.by_ref[r] for r in sorted(self.by_ref)]

    def get(self, ref: str) -> Account:
        try:
            return self.by_ref[ref]
        except KeyError:
            raise OsctlError(NOT_FOUND, f"account {ref} not found") from None

    def by_uid(self, uid: int) -> Account | None:
        return next((a for a in self.by_ref.values() if a.uid == uid), None)

    def add(self, account: Account) -> None:
        """A new account: its reference and its uid are its own."""
        if account.ref in self.by_ref:
            raise OsctlError(EXISTS, f"account {account.ref} exists")
        if (other := self.by_uid(account.uid)) is not None:
            raise OsctlError(EXISTS, f"uid {account.uid} is account {other.ref} already")
        self._commit({**self.by_ref, account.ref: account})

    def replace(self, account: Account) -> None:
        """An account changed (its permissions): the new one in place of the old."""
        self.get(account.ref)
        self._commit({**self.by_ref, account.ref: account})

    def remove(self, ref: str) -> Account:
        account = self.get(ref)
        self._commit({r: a for r, a in self.by_ref.items() if r != ref})
        return account

    def _commit(self, table: dict[str, Account]) -> None:
        write_doc(self.path, {"accounts": [table[r].to_dict() for r in sorted(table)]})
        self.by_ref = table


def sees_event(access: Access | None, event: dict) -> bool:
    """Whether an event may reach a subscriber acting as ``access`` (None: an
    account deleted since it subscribed). Accounts see the events of groups,
    containers, VMs and their netifs (which name their ``group``) that they
    have a permission on, and their own commands; nothing else, so an event
    that does not name its group stays root's."""
    if access is ROOT:
        return True
    if not isinstance(access, Account):
        return False
    if event["type"] == "command":
        return event.get("account") == access.ref
    pool = event.get("pool")
    group = event.get("id") if event.get("object") == "group" else event.get("group")
    return isinstance(pool, str) and isinstance(group, str) and access.may(Perm.STATS, pool, group)
