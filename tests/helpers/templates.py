"""Build a template's rootfs into the shared test cache, outside any test node.

A test node's osctld lives in a network namespace with no way out, so a
template whose recipe downloads (debian: debootstrap from the node's apt
mirror) is built here, in the host's namespace, with osctld's own template
code. Every test node then unpacks the cached tarball instead of building.
"""

from __future__ import annotations

import asyncio
import fcntl
import shutil
import sys
from pathlib import Path

from osctld.config import Config
from osctld.model.pool import Pool
from osctld.storage.dir import DirBackend
from osctld.template import Templates

from .node import CACHE, WORK


def ensure_cached(name: str, version: str | None = None) -> Path:
    """The cache tarball of template ``name``, built first if it is not there."""
    templates = Templates(Config().templates_dir, CACHE)
    tpl = templates.get(name)
    version = tpl.version(version)
    tarball = CACHE / f"{name}-{version}.tar"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".{name}-{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run may be building it
        if tarball.is_file():
            return tarball
        scratch = WORK / f"template-build-{name}-{version}"
        shutil.rmtree(scratch, ignore_errors=True)
        try:
            pool = Pool("build", "dir", scratch)
            asyncio.run(templates.ensure(DirBackend(pool), tpl, version, _progress))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return tarball


def _progress(data: dict) -> None:
    print(f"[{data.get('step')}] {data.get('message')}", file=sys.stderr, flush=True)
