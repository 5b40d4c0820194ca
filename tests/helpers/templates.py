"""Build templates and VM images into the shared test cache, outside any test node.

A test node's osctld lives in a network namespace with no way out, so a
template or image whose recipe downloads (debian: debootstrap from the
node's apt mirror; the VM images: Debian's kernel) is built here, in the
host's namespace, with osctld's own template code. Every test node then
finds it cached. Tests get them through the session fixtures of
tests/conftest.py, never by calling these directly, so that the build comes
first whatever order pytest picks; a file lock in the cache keeps concurrent
runs from building the same thing twice.
"""

from __future__ import annotations

import asyncio
import fcntl
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from osctld.config import Config
from osctld.model.pool import Pool
from osctld.storage.dir import DirBackend
from osctld.template import Templates

from .node import CACHE, ROOT, WORK

TEST_TEMPLATES = ROOT / "tests" / "vmtemplates"


def ensure_cached(name: str, version: str | None = None) -> Path:
    """The cache tarball of container template ``name``, built first if it is not there."""
    templates = Templates(Config().templates_dir, CACHE)
    tpl = templates.get(name)
    version = tpl.version(version)
    tarball = CACHE / f"{name}-{version}.tar"
    with build_lock(f"{name}-{version}"):
        if tarball.is_file():
            return tarball
        # Its own scratch: a run with another cache may be building the same.
        WORK.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f"template-build-{name}-{version}.", dir=WORK))
        try:
            pool = Pool("build", "dir", scratch)
            asyncio.run(templates.ensure(DirBackend(pool), tpl, version, _progress))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return tarball


def ensure_vm_image(name: str, version: str | None = None) -> Path:
    """The cached VM image of template ``name`` (the tree's templates or the
    test VM templates), built first if it is not there."""
    where = TEST_TEMPLATES if (TEST_TEMPLATES / name).is_dir() else Config().templates_dir
    templates = Templates(where, CACHE)
    tpl = templates.get(name)
    version = tpl.version(version)
    with build_lock(f"vm-{name}-{version}"):
        return asyncio.run(templates.ensure_vm(tpl, version, _progress))


@contextmanager
def build_lock(key: str) -> Iterator[None]:
    """Held while ``key`` is looked up and built: another test run may be building it."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _progress(data: dict) -> None:
    print(f"[{data.get('step')}] {data.get('message')}", file=sys.stderr, flush=True)
