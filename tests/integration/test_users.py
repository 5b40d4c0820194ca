"""Users: ID blocks, explicit maps and their checks, /etc/subuid and /etc/subgid."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.node import BLOCK


def lines(kind: str) -> list[str]:
    return Path(f"/etc/{kind}").read_text().splitlines()


def test_users_and_subid_files(node):
    foreign = f"osctld-test-foreign-{node.name}:{node.id_base + 60 * BLOCK}:65536"
    for kind in ("subuid", "subgid"):
        with open(f"/etc/{kind}", "a") as f:
            f.write(foreign + "\n")
    try:
        a = node.osctl_json("user", "new", "alice")
        b = node.osctl_json("user", "new", "bob")
        assert (a["root_uid"], b["root_uid"]) == (node.id_base, node.id_base + BLOCK)
        assert a["uid_map"] == a["gid_map"] == [f"0:{node.id_base}:{BLOCK}"]
        explicit = node.osctl_json("user", "new", "carol", "--map-uid", f"0:{node.id_base + 10 * BLOCK}:65536",
                                   "--map-gid", f"0:{node.id_base + 11 * BLOCK}:70000")
        assert (explicit["root_uid"], explicit["root_gid"]) == (node.id_base + 10 * BLOCK, node.id_base + 11 * BLOCK)
        for kind, carol in (("subuid", f"root:{node.id_base + 10 * BLOCK}:65536"),
                            ("subgid", f"root:{node.id_base + 11 * BLOCK}:70000")):
            have = lines(kind)
            for want in (f"root:{node.id_base}:{BLOCK}", f"root:{node.id_base + BLOCK}:{BLOCK}", carol, foreign):
                assert have.count(want) == 1, (kind, want)

        # A user that owns containers cannot go.
        node.osctl("ct", "new", "c1", "--user", "alice")
        p = node.osctl("user", "del", "alice", check=False)
        assert p.returncode == 6 and "still owns containers: c1" in p.stderr
        assert f"root:{node.id_base}:{BLOCK}" in lines("subuid")
        node.osctl("ct", "del", "c1")
        node.osctl("user", "del", "alice")
        node.osctl("user", "del", "carol")
        for kind in ("subuid", "subgid"):
            have = lines(kind)
            assert f"root:{node.id_base}:{BLOCK}" not in have
            assert not any(ln.startswith(f"root:{node.id_base + 10 * BLOCK}:") for ln in have)
            assert not any(ln.startswith(f"root:{node.id_base + 11 * BLOCK}:") for ln in have)
            assert have.count(foreign) == 1 and have.count(f"root:{node.id_base + BLOCK}:{BLOCK}") == 1
        # alice's block is free again and is the next one handed out.
        assert node.osctl_json("user", "new", "dave")["root_uid"] == node.id_base
        assert sorted(u["name"] for u in node.osctl_json("user", "ls")) == ["bob", "dave"]
        p = node.osctl("user", "show", "alice", check=False)
        assert p.returncode == 3 and "not found" in p.stderr
    finally:
        for kind in ("subuid", "subgid"):
            text = Path(f"/etc/{kind}").read_text()
            Path(f"/etc/{kind}").write_text(text.replace(foreign + "\n", ""))


def test_explicit_maps_are_validated(node):
    node.osctl("user", "new", "alice")  # block 0
    taken = f"0:{node.id_base + 20 * BLOCK}:65536"
    node.osctl("user", "new", "bob", "--map", taken)
    before = (lines("subuid"), node.osctl_json("user", "ls"))
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
        assert (lines("subuid"), node.osctl_json("user", "ls")) == before, m
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
