"""Keep /etc/subuid and /etc/subgid holding exactly the lines osctld owns.

liblxc maps IDs through newuidmap/newgidmap whenever they are installed,
even for root, and those refuse any range that /etc/subuid does not grant
to root. So every user's map must be there as ``root:<start>:<count>``.
Lines the daemon did not write are never touched: which lines are ours is
recorded in the state directory, and only those are taken out again.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import yaml

from .store import atomic_write

NODE_LOCK = Path("/run/lock/osctld-subid.lock")


def rewrite(text: str, owned_before: list[str], wanted: list[str]) -> str:
    """Remove one occurrence of each line we owned, then append what we want."""
    lines = text.splitlines()
    for line in owned_before:
        try:
            lines.remove(line)
        except ValueError:
            pass  # someone removed it by hand; nothing to undo
    lines += wanted
    return "".join(f"{line}\n" for line in lines)


def entries(users) -> tuple[list[str], list[str]]:
    uid = [f"root:{e.host_id}:{e.count}" for u in users for e in u.uid_map]
    gid = [f"root:{e.host_id}:{e.count}" for u in users for e in u.gid_map]
    return uid, gid


class SubIds:
    def __init__(self, record: Path, subuid: Path = Path("/etc/subuid"),
                 subgid: Path = Path("/etc/subgid"), lock: Path = NODE_LOCK):
        self.record = Path(record)
        self.files = {"subuid": Path(subuid), "subgid": Path(subgid)}
        self.lock = Path(lock)

    def owned(self) -> dict[str, list[str]]:
        try:
            data = yaml.safe_load(self.record.read_text()) or {}
        except FileNotFoundError:
            data = {}
        return {k: list(data.get(k) or []) for k in self.files}

    def sync(self, users) -> None:
        """Make the files hold exactly ``users``' lines among ours (under a node-wide lock)."""
        uid, gid = entries(users)
        wanted = {"subuid": uid, "subgid": gid}
        self.lock.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock, "a") as lockf:
            fcntl.flock(lockf, fcntl.LOCK_EX)
            before = self.owned()
            # Claim old and new lines first: a crash half way through leaves
            # a record that still covers whatever the files hold.
            atomic_write(self.record, yaml.safe_dump(
                {k: before[k] + wanted[k] for k in self.files}).encode())
            for key, path in self.files.items():
                try:
                    text = path.read_text()
                except FileNotFoundError:
                    text = ""
                new = rewrite(text, before[key], wanted[key])
                if new != text:
                    mode = os.stat(path).st_mode & 0o7777 if path.exists() else 0o644
                    atomic_write(path, new.encode(), mode)
            atomic_write(self.record, yaml.safe_dump(wanted).encode())
