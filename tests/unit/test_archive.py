"""What export and import decide without a container: how owners move
between the ways pools store them, and which files are no export."""

from __future__ import annotations

import asyncio
import os

import pytest

from osctl.protocol import OsctlError
from tests.conftest import require


# --- owners between stored maps (model.idmap.translator) ---------------------------------

def test_owners_move_between_maps_through_what_the_container_sees():
    from osctld.model.idmap import MapEntry, translator

    alice = [MapEntry(0, 1_000_000, 65536)]
    bob = [MapEntry(0, 2_000_000, 1000), MapEntry(1000, 3_000_000, 64536)]
    assert translator(None, None) is None and translator(alice, list(alice)) is None
    shift = translator(alice, bob)
    assert [shift(i) for i in (1_000_000, 1_000_999, 1_001_000, 1_065_535)] == \
        [2_000_000, 2_000_999, 3_000_000, 3_064_535]
    assert shift(5) == 5  # not alice's: left as it is
    unshift = translator(alice, None)  # from a chown pool into an idmapped one
    assert (unshift(1_000_000), unshift(1_001_000)) == (0, 1000)
    assert translator(None, bob)(1500) == 3_000_500


# --- the archive's head (osctld.archive) -----------------------------------------------------

def _archive(tmp_path, first: str, body: bytes) -> int:
    import io
    import tarfile

    path = tmp_path / "a.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(first)
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    return os.open(path, os.O_RDONLY)


@pytest.mark.parametrize("first, body, words", [
    ("metadata.json", b'{"kind": "ct", "format": 2}', "format 2"),
    ("metadata.json", b'{"kind": "vm", "format": 1}', "not a container export"),
    ("metadata.json", b'{"kind": "ct", "format": 1, "container": {}}', "lacks its user"),
    ("metadata.json", b'not json', "not a readable"),
    ("rootfs/etc", b'', "first member is not metadata.json"),
])
def test_an_archive_whose_head_is_not_an_exports_is_invalid(tmp_path, first, body, words):
    from osctld import archive

    fd = _archive(tmp_path, first, body)
    try:
        assert archive.input_file(fd) == ("none", os.fstat(fd).st_size)
        with pytest.raises(OsctlError) as e:
            asyncio.run(archive.read_metadata(fd, "none"))
        assert e.value.code == "invalid" and words in e.value.message
    finally:
        os.close(fd)


def test_an_import_reads_a_file_not_a_pipe(tmp_path):
    from osctld import archive

    r, w = os.pipe()
    (tmp_path / "x").write_bytes(b"hello" * 200)
    fd = os.open(tmp_path / "x", os.O_RDONLY)
    try:
        for bad, words in ((r, "not a pipe"), (fd, "neither tar, gzip nor zstd")):
            with pytest.raises(OsctlError) as e:
                archive.input_file(bad)
            assert e.value.code == "invalid" and words in e.value.message
        with pytest.raises(OsctlError, match="unknown compression 'lz4'"):
            archive.compression_of("lz4")
    finally:
        for f in (r, w, fd):
            os.close(f)


def test_a_chown_pools_tree_is_shifted_from_one_users_map_into_anothers(tmp_path):
    from osctld.model.idmap import MapEntry, translator
    from osctld.runtime.idmapped import remap_tree

    require("chown needs root" if os.geteuid() != 0 else None)  # CI=true: a failure
    alice, bob = [MapEntry(0, 1_000_000, 65536)], [MapEntry(0, 2_000_000, 65536)]
    tree = tmp_path / "rootfs"
    tree.mkdir()
    (tree / "su").write_text("x")
    os.link(tree / "su", tree / "hard")
    os.symlink("su", tree / "link")
    os.chown(tree, 1_000_000, 1_000_000)
    os.chown(tree / "su", 1_001_000, 1_001_001)
    os.chmod(tree / "su", 0o4755)
    os.chown(tree / "link", 1_000_000, 1_000_005, follow_symlinks=False)

    remap_tree(tree, translator(alice, bob), translator(alice, bob))
    owners = {p.name: (p.lstat().st_uid, p.lstat().st_gid) for p in (tree, *tree.iterdir())}
    assert owners == {"rootfs": (2_000_000, 2_000_000), "su": (2_001_000, 2_001_001),
                      "hard": (2_001_000, 2_001_001), "link": (2_000_000, 2_000_005)}
    assert (tree / "su").stat().st_mode & 0o7777 == 0o4755  # setuid kept (chown clears it)
