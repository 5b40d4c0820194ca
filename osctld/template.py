"""Distribution templates: build a rootfs once per pool, cache it for the node.

A template is a folder under templates/: ``meta.yml`` (distribution and
versions), ``build`` (a recipe run as ``build ROOTFS VERSION``) and
``lxc.conf`` (LXC keys for its init). A built rootfs is kept per pool as a
dataset (so that a new container is a snapshot or copy of it) and as a
tarball in the node's cache, so another pool, or a test node, need not run
the recipe again.

A template may also have a ``vm-build`` recipe (``vm-build OUT VERSION``):
it writes a VM image, ``vmlinuz``, ``initrd.img``, ``cmdline`` and
optionally a ``rootfs/`` tree, kept in the node cache (``ensure_vm``).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from osctl.protocol import INTERNAL, INVALID, NOT_FOUND, UNSUPPORTED, OsctlError

from .model.naming import check_name
from .storage.base import Backend, run


@dataclass
class Template:
    name: str
    path: Path
    distribution: str
    versions: list[str]
    default_version: str

    @property
    def lxc_conf(self) -> str:
        f = self.path / "lxc.conf"
        return f.read_text() if f.exists() else ""

    @property
    def vm_build(self) -> Path | None:
        """The recipe of the template's VM image, if it has one."""
        f = self.path / "vm-build"
        return f if f.is_file() else None

    def version(self, wanted: str | None) -> str:
        version = wanted or self.default_version
        check_name("version", version)
        if self.versions and version not in self.versions:
            raise OsctlError(INVALID, f"template {self.name} has no version {version!r} "
                                      f"(known: {', '.join(self.versions)})")
        return version

    def public(self) -> dict:
        return {"name": self.name, "distribution": self.distribution,
                "versions": self.versions, "default_version": self.default_version,
                "vm": self.vm_build is not None}


class Templates:
    def __init__(self, templates_dir: Path, cache_dir: Path):
        self.dir = Path(templates_dir)
        self.cache_dir = Path(cache_dir)
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    def get(self, name: str) -> Template:
        check_name("template", name)
        path = self.dir / name
        meta_file = path / "meta.yml"
        if not meta_file.is_file():
            known = ", ".join(t.name for t in self.all()) or "none"
            raise OsctlError(NOT_FOUND, f"template {name!r} not found (known: {known})")
        meta = yaml.safe_load(meta_file.read_text()) or {}
        return Template(name, path, meta.get("distribution", name),
                        [str(v) for v in meta.get("versions", [])],
                        str(meta.get("default_version", "")))

    def all(self) -> list[Template]:
        if not self.dir.is_dir():
            return []
        return [self.get(p.name) for p in sorted(self.dir.iterdir()) if (p / "meta.yml").is_file()]

    async def ensure(self, backend: Backend, tpl: Template, version: str,
                     progress: Callable[[dict], None]) -> Path:
        """The pool's built rootfs of ``tpl`` at ``version``, building it if need be."""
        key = f"{tpl.name}-{version}"
        final = backend.pool.template_dir(key)
        lock = self._locks.setdefault((backend.pool.name, key), asyncio.Lock())
        async with lock:
            if final.is_dir():
                return final
            tmp = final.parent / f".{key}.build"
            await backend.destroy(tmp)  # a build a crash left behind
            await backend.create(tmp)
            try:
                cache = self.cache_dir / f"{key}.tar"
                if cache.is_file():
                    progress({"step": "template", "message": f"unpacking cached {key}"})
                    await run("tar", "-xpf", str(cache), "--numeric-owner", "-C", str(tmp),
                              what=f"unpacking {cache}")
                else:
                    await self._build(tpl, version, tmp, progress)
                    await self._cache(tmp, cache)
                await backend.rename(tmp, final)  # zfs: a dataset, renamed in ZFS
            except BaseException:
                await backend.destroy(tmp)
                raise
            return final

    async def ensure_vm(self, tpl: Template, version: str,
                        progress: Callable[[dict], None]) -> Path:
        """The node's built VM image of ``tpl`` (kernel, initramfs, cmdline, rootfs/).

        Kept in the node cache under a key that holds a hash of the template's
        files, so a changed recipe builds anew. Several daemons may share the cache (test
        nodes): each builds in a directory of its own and the first rename wins.
        """
        recipe = tpl.vm_build
        if recipe is None:
            raise OsctlError(UNSUPPORTED, f"template {tpl.name} has no VM image (no vm-build)")
        digest = hashlib.sha256(b"".join(f.name.encode() + f.read_bytes() for f in
                                          sorted(tpl.path.iterdir()) if f.is_file())).hexdigest()[:12]
        key = f"{tpl.name}-{version}-{digest}"
        final = self.cache_dir / "vm" / key
        async with self._locks.setdefault(("vm", key), asyncio.Lock()):
            if final.is_dir():
                return final
            tmp = final.with_name(f".{key}.build.{os.getpid()}")
            await asyncio.to_thread(shutil.rmtree, tmp, True)
            tmp.mkdir(parents=True)
            try:
                await self._build(tpl, version, tmp, progress, "vm-build")
                try:
                    os.rename(tmp, final)  # the node cache: a plain directory
                except OSError:
                    if not final.is_dir():
                        raise
            finally:
                await asyncio.to_thread(shutil.rmtree, tmp, True)
            return final

    async def _build(self, tpl: Template, version: str, rootfs: Path,
                     progress: Callable[[dict], None], recipe: str = "build") -> None:
        progress({"step": "template", "message": f"building {tpl.name} {version}"})
        proc = await asyncio.create_subprocess_exec(
            str(tpl.path / recipe), str(rootfs), version,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        assert proc.stdout is not None
        tail: list[str] = []
        try:
            async for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip()
                tail = (tail + [line])[-10:]
                progress({"step": "template", "message": line})
            rc = await proc.wait()
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        if rc != 0:
            raise OsctlError(INTERNAL, f"template {tpl.name} {version} failed to build "
                                       f"(exit {rc}): " + " | ".join(tail[-4:]))

    async def _cache(self, rootfs: Path, cache: Path) -> None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
        try:
            await run("tar", "-cpf", str(tmp), "--numeric-owner", "-C", str(rootfs), ".",
                      what="caching the template")
            os.rename(tmp, cache)
        finally:
            tmp.unlink(missing_ok=True)
