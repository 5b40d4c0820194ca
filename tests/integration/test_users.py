"""Users: ID blocks, explicit maps and their checks, /etc/subuid and /etc/subgid."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from osctld import shadowlock
from tests.helpers.node import BLOCK


def lines(kind: str) -> list[str]:
    return Path(f"/etc/{kind}").read_text().splitlines()


def edit_by_hand(change) -> None:
    """Change both files as an admin would, under shadow-utils' locks."""
    with shadowlock.locked([Path("/etc/subuid"), Path("/etc/subgid")]):
        for kind in ("subuid", "subgid"):
            f = Path(f"/etc/{kind}")
            f.write_text(change(f.read_text()))


def test_users_and_subid_files(node):
    foreign = f"osctld-test-foreign-{node.name}:{node.id_base + 60 * BLOCK}:65536"
    edit_by_hand(lambda text: text + foreign + "\n")
    # Another test node, of this run or another, may hold the same range:
    # count this node's lines against what was there before.
    start = {k: Counter(node.subid_lines(k)) for k in ("subuid", "subgid")}

    def added(kind: str) -> Counter:
        return Counter(node.subid_lines(kind)) - start[kind]

    try:
        a = node.osctl_json("user", "new", "alice")
        b = node.osctl_json("user", "new", "bob")
        assert (a["root_uid"], b["root_uid"]) == (node.id_base, node.id_base + BLOCK)
        assert a["uid_map"] == a["gid_map"] == [f"0:{node.id_base}:{BLOCK}"]
        explicit = node.osctl_json("user", "new", "carol", "--map-uid", f"0:{node.id_base + 10 * BLOCK}:65536",
                                   "--map-gid", f"0:{node.id_base + 11 * BLOCK}:70000")
        assert (explicit["root_uid"], explicit["root_gid"]) == (node.id_base + 10 * BLOCK, node.id_base + 11 * BLOCK)
        alice, bob = f"root:{node.id_base}:{BLOCK}", f"root:{node.id_base + BLOCK}:{BLOCK}"
        assert added("subuid") == Counter([alice, bob, f"root:{node.id_base + 10 * BLOCK}:65536"])
        assert added("subgid") == Counter([alice, bob, f"root:{node.id_base + 11 * BLOCK}:70000"])
        for kind in ("subuid", "subgid"):
            assert lines(kind).count(foreign) == 1

        # A user that owns containers cannot go.
        node.osctl("ct", "new", "c1", "--user", "alice")
        p = node.osctl("user", "del", "alice", check=False)
        assert p.returncode == 6 and "still owns containers or VMs: c1" in p.stderr
        assert alice in added("subuid")
        node.osctl("ct", "del", "c1")
        node.osctl("user", "del", "alice")
        node.osctl("user", "del", "carol")
        for kind in ("subuid", "subgid"):
            assert added(kind) == Counter([bob])
            assert lines(kind).count(foreign) == 1
        # alice's block is free again and is the next one handed out.
        assert node.osctl_json("user", "new", "dave")["root_uid"] == node.id_base
        assert sorted(u["name"] for u in node.osctl_json("user", "ls")) == ["bob", "dave"]
        p = node.osctl("user", "show", "alice", check=False)
        assert p.returncode == 3 and "not found" in p.stderr
    finally:
        edit_by_hand(lambda text: text.replace(foreign + "\n", ""))


def test_explicit_maps_are_validated(node):
    node.osctl("user", "new", "alice")  # block 0
    taken = f"0:{node.id_base + 20 * BLOCK}:65536"
    node.osctl("user", "new", "bob", "--map", taken)
    def state():
        return node.subid_lines(), node.osctl_json("user", "ls")

    before = state()
    bad = [
        # overlaps bob's explicit map (one ID in common)
        (f"0:{node.id_base + 20 * BLOCK + 65535}:65536", 6, "overlaps"),
        # overlaps alice's id-range block
        (f"0:{node.id_base + 1000}:65536", 6, "overlaps"),
        # fewer than 65536 IDs
        (f"0:{node.id_base + 30 * BLOCK}:65535", 2, "at least 65536"),
        # past 32 bits
        (f"0:{2**32 - 1000}:65536", 2, "32 bits"),
        (f"0:{2**32}:65536", 2, "32 bits"),
        # does not map the container's root
        (f"1:{node.id_base + 30 * BLOCK}:65536", 2, "ID 0"),
        ("0:1:two", 2, "NS_ID:HOST_ID:COUNT"),
    ]
    for m, code, words in bad:
        p = node.osctl("user", "new", "eve", "--map", m, check=False)
        assert p.returncode == code and words in p.stderr, (m, p.stderr)
        assert state() == before, m
    p = node.osctl("user", "new", "eve", "--map-gid", f"0:{node.id_base + 30 * BLOCK}:65536", check=False)
    assert p.returncode == 2 and "--map-uid" in p.stderr
    p = node.osctl("user", "new", "Bad/Name", check=False)
    assert p.returncode == 2 and "invalid user name" in p.stderr
    p = node.osctl("user", "new", "bob", check=False)
    assert p.returncode == 4
    # The block allocator steps around explicit maps: block 20 holds bob.
    for i in range(1, 20):
        node.call("user.new", name=f"u{i}")
    assert node.osctl_json("user", "new", "next")["root_uid"] == node.id_base + 21 * BLOCK
