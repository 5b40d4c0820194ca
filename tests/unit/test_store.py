"""Config files: atomic replacement, schema versions, migrations."""

from __future__ import annotations

import os

import pytest

from osctl.protocol import INTERNAL, OsctlError
from osctld import store
from osctld.store import PoolStore, atomic_write, read_doc, write_doc


def test_atomic_write_replaces_and_sets_mode(tmp_path):
    f = tmp_path / "sub" / "a.yml"
    atomic_write(f, b"one")
    assert f.read_bytes() == b"one" and f.stat().st_mode & 0o777 == 0o600
    atomic_write(f, b"two", 0o644)
    assert f.read_bytes() == b"two" and f.stat().st_mode & 0o777 == 0o644
    assert os.listdir(f.parent) == ["a.yml"]  # no temporary left


def test_directories_made_for_a_config_are_root_only(tmp_path):
    f = tmp_path / "conf" / "ct" / "a.yml"
    old = os.umask(0o022)  # the usual umask would leave them 0755
    try:
        write_doc(f, {"id": "a"})
    finally:
        os.umask(old)
    assert f.stat().st_mode & 0o777 == 0o600
    assert [d.stat().st_mode & 0o777 for d in (f.parent, f.parent.parent)] == [0o700, 0o700]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    f = tmp_path / "a.yml"
    atomic_write(f, b"old")

    def fail(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(f, b"new")
    assert f.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.yml"]


def test_the_file_is_never_seen_half_written(tmp_path, monkeypatch):
    """Until the rename, readers see the old content."""
    f = tmp_path / "a.yml"
    atomic_write(f, b"old")
    seen = []
    real_rename = os.rename

    def rename(src, dst):
        seen.append(f.read_bytes())
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    atomic_write(f, b"new" * 1000)
    assert seen == [b"old"] and f.read_bytes() == b"new" * 1000


def test_docs_carry_a_schema_version(tmp_path):
    f = tmp_path / "ct.yml"
    write_doc(f, {"id": "c1", "list": [1, 2]})
    assert f.read_text().startswith(f"schema: {store.SCHEMA}\n")
    assert read_doc(f) == {"id": "c1", "list": [1, 2]}


def test_a_doc_without_schema_is_schema_one(tmp_path):
    f = tmp_path / "ct.yml"
    f.write_text("id: c1\n")
    assert read_doc(f) == {"id": "c1"}
    f.write_text("")
    assert read_doc(f) == {}


def test_newer_schema_is_refused(tmp_path):
    f = tmp_path / "ct.yml"
    f.write_text(f"schema: {store.SCHEMA + 1}\nid: c1\n")
    with pytest.raises(OsctlError, match="newer than this osctld"):
        read_doc(f)


def test_older_schema_is_migrated_step_by_step(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "SCHEMA", 3)
    monkeypatch.setattr(store, "MIGRATIONS", {
        1: lambda d: {("hostname" if k == "host" else k): v for k, v in d.items()},
        2: lambda d: {**d, "autostart": False},
    })
    f = tmp_path / "ct.yml"
    f.write_text("schema: 1\nid: c1\nhost: h\n")
    assert read_doc(f) == {"id": "c1", "hostname": "h", "autostart": False}
    f.write_text("schema: 2\nid: c1\nhostname: h\n")
    assert read_doc(f) == {"id": "c1", "hostname": "h", "autostart": False}


@pytest.mark.parametrize("text", ["id: [unclosed\n", "- a list\n", "just a string\n"])
def test_corrupt_docs_are_internal_errors_naming_the_file(tmp_path, text):
    f = tmp_path / "ct.yml"
    f.write_text(text)
    with pytest.raises(OsctlError) as e:
        read_doc(f)
    assert e.value.code == INTERNAL and str(f) in e.value.message


def test_pool_store(tmp_path):
    s = PoolStore(tmp_path / "conf")
    assert s.load_all("ct") == []
    s.save("ct", "b", {"id": "b"})
    s.save("ct", "a", {"id": "a"})
    (tmp_path / "conf" / "ct" / ".a.yml.tmp").write_text("half")  # not a *.yml
    assert s.load_all("ct") == [{"id": "a"}, {"id": "b"}]
    s.delete("ct", "a")
    s.delete("ct", "a")  # gone already: fine
    assert s.load_all("ct") == [{"id": "b"}]

