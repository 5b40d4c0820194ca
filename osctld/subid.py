"""Keep /etc/subuid and /etc/subgid holding exactly the lines osctld owns.

liblxc maps IDs through newuidmap/newgidmap whenever they are installed,
even for root, and those refuse any range that /etc/subuid does not grant
to root. So every user's map must be there as ``root:<start>:<count>``.
Lines the daemon did not write are never touched: which lines are ours is
recorded in the state directory, and only those are taken out again.

The files are shared with useradd, userdel and other daemons: they are
changed only under shadow-utils' locks (``shadowlock``), read and written
whole under them, and a new user's ranges are checked there against every
line that is not ours, so no host user and no other program is given the
same IDs.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import yaml

from osctl.protocol import CONFLICT, OsctlError

from . import shadowlock
from .model.idmap import overlaps
from .store import TEMP_NAME, atomic_write

log = logging.getLogger(__name__)
KINDS = {"uid": "subuid", "gid": "subgid"}


@dataclass(frozen=True)
class Grant:
    """One line of /etc/subuid: ``owner`` may map ``count`` IDs from ``start``."""

    owner: str
    start: int
    count: int

    @property
    def end(self) -> int:
        return self.start + self.count

    @classmethod
    def parse(cls, line: str) -> "Grant | None":
        parts = line.strip().split(":")
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            return None  # a comment, a blank or broken line: it grants nothing
        return cls(parts[0], int(parts[1]), int(parts[2]))


def rewrite(text: str, owned_before: list[str], wanted: list[str]) -> str:
    """Remove every line we owned (duplicates too), then append what we want, once each."""
    owned = set(owned_before)
    lines = [line for line in text.splitlines() if line not in owned]
    lines += dict.fromkeys(wanted)
    return "".join(f"{line}\n" for line in lines)


def foreign(text: str, owned: list[str]) -> list[Grant]:
    """The grants of lines that are not ours: host users', other programs'."""
    mine = set(owned)
    return [g for line in text.splitlines() if line not in mine and (g := Grant.parse(line))]


def entries(users) -> tuple[list[str], list[str]]:
    uid = [f"root:{e.host_id}:{e.count}" for u in users for e in u.uid_map]
    gid = [f"root:{e.host_id}:{e.count}" for u in users for e in u.gid_map]
    return uid, gid


def check_free(users, grants: dict[str, list[Grant]]) -> None:
    """Refuse users whose host ranges overlap a grant that is not ours."""
    for u in users:
        for kind, start, end in u.host_ranges():
            name = KINDS[kind]
            for g in grants[name]:
                if overlaps(start, end, g.start, g.end):
                    raise OsctlError(CONFLICT, f"{kind.upper()} range {start}-{end - 1} of user "
                                               f"{u.name} overlaps {g.start}-{g.end - 1}, given to "
                                               f"{g.owner!r} in /etc/{name}")


class SubIds:
    def __init__(self, record: Path, subuid: Path = Path("/etc/subuid"),
                 subgid: Path = Path("/etc/subgid"), pwd_lock: Path = shadowlock.PWD_LOCK,
                 timeout: float = shadowlock.TIMEOUT):
        self.record = Path(record)
        self.files = {"subuid": Path(subuid), "subgid": Path(subgid)}
        self.pwd_lock = Path(pwd_lock)
        self.timeout = timeout
        # shadowlock's locks are per process: our own threads queue here.
        self._mutex = threading.Lock()

    def owned(self) -> dict[str, list[str]]:
        try:
            data = yaml.safe_load(self.record.read_text()) or {}
        except FileNotFoundError:
            data = {}
        return {k: list(data.get(k) or []) for k in self.files}

    def _read(self) -> dict[str, str]:
        out = {}
        for key, path in self.files.items():
            try:
                out[key] = path.read_text()
            except FileNotFoundError:
                out[key] = ""
        return out

    def foreign(self) -> dict[str, list[Grant]]:
        """Grants that are not ours, read without the lock: a hint to the
        block allocator; ``sync`` checks again under the lock."""
        owned, texts = self.owned(), self._read()
        return {k: foreign(texts[k], owned[k]) for k in self.files}

    def sync(self, users, new: Iterable = ()) -> None:
        """Make the files hold exactly ``users``' lines among ours. Users in
        ``new`` are refused (CONFLICT, nothing written) where they overlap a
        line that is not ours. Blocks on shadow-utils' locks: call it in a
        thread."""
        uid, gid = entries(users)
        wanted = {"subuid": uid, "subgid": gid}
        with self._mutex, shadowlock.locked(list(self.files.values()), self.pwd_lock, self.timeout):
            before, texts = self.owned(), self._read()
            check_free(new, {k: foreign(texts[k], before[k]) for k in self.files})
            self._remove_temp_files()
            # Claim old and new lines first: a crash half way through leaves
            # a record that still covers whatever the files hold.
            atomic_write(self.record, yaml.safe_dump(
                {k: before[k] + wanted[k] for k in self.files}).encode())
            for key, path in self.files.items():
                text = texts[key]
                new_text = rewrite(text, before[key], wanted[key])
                if new_text != text:
                    try:
                        st = os.stat(path)
                        mode, owner = st.st_mode & 0o7777, (st.st_uid, st.st_gid)
                    except FileNotFoundError:
                        mode, owner = 0o644, None
                    atomic_write(path, new_text.encode(), mode, owner=owner)
            atomic_write(self.record, yaml.safe_dump(wanted).encode())

    def _remove_temp_files(self) -> None:
        """Temporary files of a rewrite that a kill interrupted (held lock: no
        rewrite of ours runs now)."""
        for path in self.files.values():
            if not path.parent.is_dir():
                continue
            for p in path.parent.iterdir():
                m = TEMP_NAME.match(p.name)
                if m and m.group(1) == path.name:
                    log.warning("removing %s, left by an interrupted rewrite of %s", p, path)
                    p.unlink(missing_ok=True)
