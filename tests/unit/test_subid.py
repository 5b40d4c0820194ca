"""/etc/subuid and /etc/subgid hold exactly osctld's lines; other lines stay."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from osctl.protocol import OsctlError
from osctld import shadowlock, subid
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
    # Duplicates of our lines (left by racing writers without the lock) all go,
    # and what we want is written once.
    assert rewrite("root:5:6\na:1:2\nroot:5:6\n", ["root:5:6"], ["root:5:6", "root:5:6"]) \
        == "a:1:2\nroot:5:6\n"
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

    def crash_on_subgid(path, data, mode=0o600, **kw):
        if path == gid:
            raise OSError("power cut")
        real(path, data, mode, **kw)

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

    def crash_after_record(path, data, mode=0o600, **kw):
        calls.append(path)
        if len(calls) > 1:
            raise OSError("power cut")
        real(path, data, mode, **kw)

    monkeypatch.setattr(subid, "atomic_write", crash_after_record)
    with pytest.raises(OSError):
        s.sync([])
    monkeypatch.setattr(subid, "atomic_write", real)
    s.sync([])
    assert uid.read_text() == FOREIGN
    assert gid.read_text() == FOREIGN + "# a comment\n"


def test_a_new_user_overlapping_a_host_grant_is_refused(files):
    s, uid, gid = files
    s.sync([user("u1", 1_000_000)])
    before = (uid.read_text(), gid.read_text(), s.owned())
    clash = user("x", 120_000, 3_000_000)  # inside alice's 100000:65536
    with pytest.raises(OsctlError) as e:
        s.sync([user("u1", 1_000_000), clash], new=[clash])
    assert e.value.code == "conflict" and "'alice'" in e.value.message and "/etc/subuid" in e.value.message
    gid_clash = user("y", 3_000_000, 170_000)  # inside bob's subgid range
    with pytest.raises(OsctlError, match="'bob'.*/etc/subgid"):
        s.sync([gid_clash], new=[gid_clash])
    assert (uid.read_text(), gid.read_text(), s.owned()) == before
    # Our own lines are not in the way of our own users.
    s.sync([user("u1", 1_000_000)], new=[user("u1", 1_000_000)])
    assert {g.owner for g in s.foreign()["subuid"]} == {"alice", "bob"}


def test_temp_files_of_an_interrupted_rewrite_go(files):
    s, uid, _ = files
    left = uid.parent / ".subuid.ab12cd_9"
    left.write_text("half")
    other = uid.parent / ".subuid.notours"  # not the shape of one of ours
    other.write_text("x")
    s.sync([])
    assert not left.exists() and other.exists()


def sleeper() -> subprocess.Popen:
    return subprocess.Popen(["sleep", "30"])


def test_shadow_lock_waits_for_a_live_holder_and_takes_a_stale_one(tmp_path):
    f, pwd = tmp_path / "subuid", tmp_path / ".pwd.lock"
    lock = tmp_path / "subuid.lock"
    holder = sleeper()
    try:
        lock.write_bytes(f"{holder.pid}\0".encode())
        t0 = time.monotonic()
        with pytest.raises(OsctlError) as e:
            with shadowlock.locked([f], pwd, timeout=0.3):
                pass
        assert e.value.code == "busy" and time.monotonic() - t0 >= 0.3
        assert lock.read_bytes() == f"{holder.pid}\0".encode()  # left to its holder
    finally:
        holder.kill()
        holder.wait()
    # Its holder is dead now: the lock is stale and taken over.
    with shadowlock.locked([f], pwd, timeout=0.3):
        assert lock.read_bytes() == f"{os.getpid()}\0".encode()
        assert os.stat(lock).st_mode & 0o777 == 0o600
    assert not lock.exists() and sorted(p.name for p in tmp_path.iterdir()) == [".pwd.lock"]


def test_shadow_lock_waits_for_lckpwdf(tmp_path):
    """Another process holding glibc's lckpwdf() lock (useradd does) keeps us waiting."""
    pwd = tmp_path / ".pwd.lock"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(pwd)!r}, os.O_WRONLY | os.O_CREAT, 0o600)\n"
        "fcntl.lockf(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(0.6)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        with shadowlock.locked([tmp_path / "subuid"], pwd, timeout=5):
            waited = time.monotonic() - t0
        assert 0.3 < waited < 5
    finally:
        holder.kill()
        holder.wait()
