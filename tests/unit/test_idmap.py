"""UID/GID maps and the id-range allocator: overlap, exhaustion, persistence, reload."""

from __future__ import annotations

import pytest

from osctl.protocol import CONFLICT, INVALID, OsctlError
from osctld.model.container import Container
from osctld.model.idmap import ID_LIMIT, IdRange, MapEntry, check_map
from osctld.model.pool import Pool
from osctld.model.user import User
from osctld.state import PoolState, Registry

BLOCK = 524288


def user(name: str, pool: str, start: int, count: int = BLOCK, block: int | None = None) -> User:
    e = MapEntry(0, start, count)
    return User(name, pool, [e], [e], block)


# --- map entries ----------------------------------------------------------------

def test_map_entry_parse_and_print():
    e = MapEntry.parse("0:100000:65536")
    assert (e.ns_id, e.host_id, e.count, e.host_end) == (0, 100000, 65536, 165536)
    assert str(e) == "0:100000:65536"
    assert MapEntry.parse("0,5,70000") == MapEntry(0, 5, 70000)


@pytest.mark.parametrize("text", ["", "0:1", "0:1:2:3", "a:b:c", "0:-1:65536", "0:1:0",
                                  f"0:{ID_LIMIT - 10}:65536", f"{ID_LIMIT}:0:1"])
def test_map_entry_refuses(text):
    with pytest.raises(OsctlError) as e:
        MapEntry.parse(text)
    assert e.value.code == INVALID


def test_map_entry_may_end_exactly_at_32_bits():
    assert MapEntry.parse(f"0:{ID_LIMIT - 65536}:65536").host_end == ID_LIMIT


@pytest.mark.parametrize("entries,words", [
    ([], "empty"),
    ([MapEntry(1, 100000, 70000)], "ID 0"),
    ([MapEntry(0, 100000, 65535)], "at least 65536"),
    ([MapEntry(0, 100000, 40000), MapEntry(30000, 200000, 40000)], "overlap inside"),
    ([MapEntry(0, 100000, 40000), MapEntry(40000, 120000, 40000)], "overlap on the host"),
])
def test_check_map_refuses(entries, words):
    with pytest.raises(OsctlError, match=words):
        check_map("UID", entries)


def test_check_map_takes_split_maps():
    entries = [MapEntry(0, 100000, 40000), MapEntry(40000, 300000, 40000)]
    assert check_map("UID", entries) == entries


# --- the allocator ------------------------------------------------------------------

def test_blocks_are_handed_out_lowest_first_and_reused():
    r = IdRange(base=1_000_000, block_size=BLOCK)
    assert [r.allocate(f"user:u{i}") for i in range(3)] == [0, 1, 2]
    assert r.block(1) == (1_000_000 + BLOCK, 1_000_000 + 2 * BLOCK)
    r.release(1)
    assert r.allocate("user:v") == 1
    assert r.allocated == {0: "user:u0", 1: "user:v", 2: "user:u2"}


def test_allocation_skips_blocks_overlapping_explicit_maps():
    r = IdRange(base=1_000_000, block_size=BLOCK)
    # An explicit map that touches block 0's last ID and block 1's first.
    taken = [(1_000_000 + BLOCK - 1, 1_000_000 + BLOCK + 1)]
    assert r.allocate("user:a", taken) == 2
    assert r.allocate("user:b", taken) == 3
    # A range that ends exactly where a block starts does not overlap it.
    assert r.allocate("user:c", [(0, 1_000_000)]) == 0


def test_exhaustion_is_a_clear_conflict():
    r = IdRange(base=1_000_000, block_size=BLOCK, block_count=2)
    r.allocate("user:a")
    r.allocate("user:b")
    with pytest.raises(OsctlError) as e:
        r.allocate("user:c")
    assert e.value.code == CONFLICT
    assert "exhausted" in e.value.message and "2 blocks" in e.value.message
    assert r.allocated == {0: "user:a", 1: "user:b"}


def test_exhaustion_by_explicit_maps():
    r = IdRange(base=1_000_000, block_size=BLOCK, block_count=3)
    with pytest.raises(OsctlError, match="exhausted"):
        r.allocate("user:a", [(0, ID_LIMIT)])
    assert r.allocated == {}


def test_block_count_defaults_to_what_fits_in_32_bits():
    r = IdRange(base=1_000_000, block_size=BLOCK)
    assert r.end <= ID_LIMIT < r.end + BLOCK
    big = IdRange(base=1_000_000, block_size=BLOCK, block_count=10**9)
    assert big.block_count == r.block_count


@pytest.mark.parametrize("kw", [{"base": 0}, {"block_size": 1000}, {"base": ID_LIMIT - 10}])
def test_bad_ranges_are_refused(kw):
    with pytest.raises(OsctlError):
        IdRange(**kw)


def test_idrange_dict_round_trip():
    r = IdRange(base=2_000_000, block_size=65536, block_count=10)
    r.allocate("user:a")
    r.allocate("user:b")
    r.release(0)
    back = IdRange.from_dict(r.to_dict())
    assert back == r
    assert back.allocate("user:c") == 0


# --- registry-wide overlap checks ------------------------------------------------------

def make_pool(tmp_path, name: str, base: int) -> PoolState:
    return PoolState(Pool(name, "dir", tmp_path / name), IdRange(base=base, block_size=BLOCK))


def test_overlap_with_a_user_of_another_pool_is_refused(tmp_path):
    reg = Registry()
    a, b = make_pool(tmp_path, "a", 1_000_000), make_pool(tmp_path, "b", 50_000_000)
    reg.pools.update(a=a, b=b)
    a.users["alice"] = user("alice", "a", 1_000_000, block=a.idrange.allocate("user:alice"))
    with pytest.raises(OsctlError) as e:
        reg.check_map_free(user("bob", "b", 1_000_000 + BLOCK - 1, 65536))
    assert e.value.code == CONFLICT and "a:alice" in e.value.message
    reg.check_map_free(user("bob", "b", 1_000_000 + BLOCK, 65536))  # adjacent is fine
    # A user never conflicts with itself (re-validation on change).
    reg.check_map_free(a.users["alice"])


def test_uid_and_gid_ranges_are_checked_apart(tmp_path):
    reg = Registry()
    a = make_pool(tmp_path, "a", 1_000_000)
    reg.pools["a"] = a
    a.users["alice"] = User("alice", "a", [MapEntry(0, 1_000_000, 65536)],
                            [MapEntry(0, 2_000_000, 65536)])
    # bob's GIDs sit where alice's UIDs are: different kinds, no conflict.
    reg.check_map_free(User("bob", "a", [MapEntry(0, 3_000_000, 65536)],
                            [MapEntry(0, 1_000_000, 65536)]))
    with pytest.raises(OsctlError):
        reg.check_map_free(User("bob", "a", [MapEntry(0, 3_000_000, 65536)],
                                [MapEntry(0, 2_000_000, 65536)]))


def test_import_of_an_overlapping_pool_is_refused(tmp_path):
    reg = Registry()
    a = make_pool(tmp_path, "a", 1_000_000)
    a.users["alice"] = user("alice", "a", 1_000_000)
    reg.pools["a"] = a
    other = make_pool(tmp_path, "b", 1_000_000)
    other.users["eve"] = user("eve", "b", 1_000_000)
    with pytest.raises(OsctlError, match="overlaps"):
        reg.check_pool_free(other)
    same_name = make_pool(tmp_path, "a", 90_000_000)
    with pytest.raises(OsctlError, match="already imported"):
        reg.check_pool_free(same_name)


# --- persistence through the pool's own configs --------------------------------------------

def test_pool_state_saves_and_reloads(tmp_path):
    ps = make_pool(tmp_path, "tank", 3_000_000)
    ps.pool.idmap = "chown"
    ps.save_pool()
    start, _ = ps.idrange.block(ps.idrange.allocate("user:alice"))
    alice = user("alice", "tank", start, block=0)
    bob = User("bob", "tank", [MapEntry(0, 90_000_000, 65536), MapEntry(65536, 91_000_000, 65536)],
               [MapEntry(0, 92_000_000, 131072)])
    for u in (alice, bob):
        ps.users[u.name] = u
        ps.save_user(u)
    ps.save_idrange()
    ct = Container("c1", "tank", "alice", "debian", "bookworm", hostname="c1.example.org",
                   dns_resolvers=["192.0.2.53"], autostart=True, autostart_priority=3)
    ps.cts["c1"] = ct
    ps.save_ct(ct)

    back = PoolState.load(tmp_path / "tank")
    assert back.pool == ps.pool
    assert back.idrange == ps.idrange
    assert back.users == ps.users
    assert back.cts == ps.cts
    assert back.users["bob"].root_uid == 90_000_000
    assert back.users["bob"].root_gid == 92_000_000
    # The reloaded allocator goes on where the saved one stopped.
    assert back.idrange.allocate("user:carol") == 1
    # Each object is a file of its own, with a schema version.
    conf = tmp_path / "tank" / "conf"
    assert sorted(p.name for p in (conf / "user").iterdir()) == ["alice.yml", "bob.yml"]
    assert (conf / "ct" / "c1.yml").read_text().startswith("schema: 1\n")


def test_runtime_state_is_not_persisted(tmp_path):
    ps = make_pool(tmp_path, "tank", 3_000_000)
    ps.save_pool()
    ct = Container("c1", "tank", "alice", "busybox", "1")
    ct.state, ct.init_pid = "running", 1234
    ps.save_ct(ct)
    back = PoolState.load(tmp_path / "tank").cts["c1"]
    assert (back.state, back.init_pid) == ("stopped", None)
    assert "init_pid" not in (tmp_path / "tank" / "conf" / "ct" / "c1.yml").read_text()
