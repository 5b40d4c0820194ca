"""Persistent configuration: atomic writes, a schema version, migrations.

Every config file is written to a temporary file in the same directory,
fsynced, renamed over the old one, and the directory fsynced: a kill -9 at
any moment leaves the old file or the new one, never half of either.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Callable

import yaml

from osctl.protocol import INTERNAL, OsctlError

SCHEMA = 1
# What atomic_write's temporary files are called: mkstemp's 8 random characters.
TEMP_NAME = re.compile(r"^\.(.+)\.[a-z0-9_]{8}$")
# schema N -> function that turns a schema N document into schema N+1.
MIGRATIONS: dict[int, Callable[[dict], dict]] = {}


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private_dirs(path: Path) -> None:
    """Make ``path`` and its missing parents, each new one 0700: what the
    daemon writes names tenants, their maps and limits."""
    path = Path(path)
    if not path.is_dir():
        private_dirs(path.parent)
        path.mkdir(mode=0o700, exist_ok=True)


def atomic_write(path: Path, data: bytes, mode: int = 0o600, durable: bool = True,
                 owner: tuple[int, int] | None = None) -> None:
    """Replace ``path`` by ``data`` whole. ``durable=False`` skips the fsyncs, for
    files derived from the configuration and made anew after a crash. A
    temporary file a crash leaves is named ``.<name>.<8 characters>``
    (``TEMP_NAME``); the daemon removes those at start."""
    path = Path(path)
    private_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if owner is not None:
                os.fchown(f.fileno(), *owner)
            os.fchmod(f.fileno(), mode)
            if durable:
                os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if durable:
        fsync_dir(path.parent)


def write_doc(path: Path, doc: dict) -> None:
    body = {"schema": SCHEMA, **doc}
    atomic_write(path, yaml.safe_dump(body, sort_keys=False, default_flow_style=False).encode())


def read_doc(path: Path) -> dict:
    try:
        doc = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as e:
        raise OsctlError(INTERNAL, f"corrupt config {path}: {e}") from None
    if not isinstance(doc, dict):
        raise OsctlError(INTERNAL, f"corrupt config {path}: not a mapping")
    version = doc.pop("schema", 1)
    if version > SCHEMA:
        raise OsctlError(INTERNAL, f"{path} has schema {version}, newer than this osctld ({SCHEMA})")
    while version < SCHEMA:
        doc = MIGRATIONS[version](doc)
        version += 1
    return doc


def remove(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    fsync_dir(Path(path).parent)


class PoolStore:
    """The per-object config files of one pool: conf/<kind>/<name>.yml."""

    def __init__(self, conf_dir: Path):
        self.conf_dir = Path(conf_dir)

    def path(self, kind: str, name: str) -> Path:
        return self.conf_dir / kind / f"{name}.yml"

    def save(self, kind: str, name: str, doc: dict) -> None:
        write_doc(self.path(kind, name), doc)

    def delete(self, kind: str, name: str) -> None:
        remove(self.path(kind, name))

    def load_all(self, kind: str) -> list[dict]:
        d = self.conf_dir / kind
        if not d.is_dir():
            return []
        return [read_doc(p) for p in sorted(d.glob("*.yml"))]

    def load_tree(self, kind: str) -> list[dict]:
        """Like ``load_all``, for kinds kept in a directory tree (groups)."""
        d = self.conf_dir / kind
        return [read_doc(p) for p in sorted(d.rglob("*.yml"))] if d.is_dir() else []

