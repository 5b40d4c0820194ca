"""/etc/subuid and /etc/subgid hold exactly osctld's lines; other lines stay."""

from __future__ import annotations

import pytest

from osctld import subid
from osctld.model.idmap import MapEntry
from osctld.model.user import User
from osctld.subid import SubIds, rewrite

FOREIGN = "alice:100000:65536\nbob:165536:65536\n"


def user(name: str, start: int, gid_start: int | None = None) -> User:
    return User(name, "p", [MapEntry(0, start, 65536)],
                [MapEntry(0, gid_start if gid_start is not None else start, 65536)])


@pytest.fixture
def files(tmp_path):
    uid, gid = tmp_path / "subuid", tmp_path / "subgid"
    uid.write_text(FOREIGN)
    gid.write_text(FOREIGN + "# a comment\n")
    uid.chmod(0o644)
    return SubIds(tmp_path / "state" / "subid-owned.yml", uid, gid, tmp_path / "lock"), uid, gid


def test_rewrite_keeps_foreign_lines_and_order():
    text = "a:1:2\nroot:5:6\nb:3:4\n"
    assert rewrite(text, ["root:5:6"], ["root:7:8"]) == "a:1:2\nb:3:4\nroot:7:8\n"
    # A line we owned that someone removed by hand is simply gone.
    assert rewrite("a:1:2\n", ["root:5:6"], []) == "a:1:2\n"
    # A foreign line identical to one of ours: only one occurrence is ours.
    assert rewrite("root:5:6\nroot:5:6\n", ["root:5:6"], []) == "root:5:6\n"
    # No trailing newline in the original.
    assert rewrite("a:1:2", [], ["root:1:2"]) == "a:1:2\nroot:1:2\n"
    assert rewrite("", [], []) == ""


def test_sync_adds_and_removes_only_our_lines(files):
    s, uid, gid = files
    s.sync([user("u1", 1_000_000, 2_000_000), user("u2", 1_600_000)])
    assert uid.read_text() == FOREIGN + "root:1000000:65536\nroot:1600000:65536\n"
    assert gid.read_text() == FOREIGN + "# a comment\nroot:2000000:65536\nroot:1600000:65536\n"
    s.sync([user("u2", 1_600_000)])
    assert uid.read_text() == FOREIGN + "root:1600000:65536\n"
    s.sync([])
    assert uid.read_text() == FOREIGN
    assert gid.read_text() == FOREIGN + "# a comment\n"
    assert uid.stat().st_mode & 0o777 == 0o644  # the file keeps its mode


def test_lines_added_by_hand_meanwhile_survive(files):
    s, uid, _ = files
    s.sync([user("u1", 1_000_000)])
    uid.write_text(uid.read_text() + "carol:300000:65536\n")
    s.sync([])
    assert uid.read_text() == FOREIGN + "carol:300000:65536\n"


def test_missing_files_are_created(tmp_path):
    s = SubIds(tmp_path / "owned.yml", tmp_path / "subuid", tmp_path / "subgid", tmp_path / "lock")
    s.sync([user("u1", 1_000_000)])
    assert (tmp_path / "subuid").read_text() == "root:1000000:65536\n"
    assert (tmp_path / "subgid").stat().st_mode & 0o777 == 0o644


def test_two_daemons_share_the_files(tmp_path, files):
    a, uid, gid = files
    b = SubIds(tmp_path / "other" / "owned.yml", uid, gid, tmp_path / "lock")
    a.sync([user("u1", 1_000_000)])
    b.sync([user("v1", 9_000_000)])
    assert uid.read_text() == FOREIGN + "root:1000000:65536\nroot:9000000:65536\n"
    a.sync([])
    assert uid.read_text() == FOREIGN + "root:9000000:65536\n"


def test_a_crash_half_way_is_mended_by_the_next_sync(files, monkeypatch):
    s, uid, gid = files
    s.sync([user("u1", 1_000_000)])
    real = subid.atomic_write

    def crash_on_subgid(path, data, mode=0o600):
        if path == gid:
            raise OSError("power cut")
        real(path, data, mode)

    monkeypatch.setattr(subid, "atomic_write", crash_on_subgid)
    with pytest.raises(OSError):
        s.sync([user("u2", 5_000_000)])
    # subuid was rewritten, subgid was not: the record still claims both sets.
    assert uid.read_text() == FOREIGN + "root:5000000:65536\n"
    assert gid.read_text() == FOREIGN + "# a comment\nroot:1000000:65536\n"
    owned = s.owned()
    assert {"root:1000000:65536", "root:5000000:65536"} <= set(owned["subgid"])
    monkeypatch.setattr(subid, "atomic_write", real)
    s.sync([user("u3", 7_000_000)])
    assert uid.read_text() == FOREIGN + "root:7000000:65536\n"
    assert gid.read_text() == FOREIGN + "# a comment\nroot:7000000:65536\n"
    assert s.owned() == {"subuid": ["root:7000000:65536"], "subgid": ["root:7000000:65536"]}


def test_a_crash_before_the_files_are_touched(files, monkeypatch):
    s, uid, gid = files
    s.sync([user("u1", 1_000_000)])
    real = subid.atomic_write
    calls = []

    def crash_after_record(path, data, mode=0o600):
        calls.append(path)
        if len(calls) > 1:
            raise OSError("power cut")
        real(path, data, mode)

    monkeypatch.setattr(subid, "atomic_write", crash_after_record)
    with pytest.raises(OSError):
        s.sync([])
    monkeypatch.setattr(subid, "atomic_write", real)
    s.sync([])
    assert uid.read_text() == FOREIGN
    assert gid.read_text() == FOREIGN + "# a comment\n"
