"""The SSH trust between nodes: who may call the receiving node's osctld.

A's osctld reaches B's through B's sshd, as B's receive user, whose
authorized_keys B's osctld writes; each refusal says why."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.root


def test_an_authorized_key_reaches_the_other_daemon(pair):
    a, b = pair.nodes
    hello = a.osctl_json("send", "check", b.dest)
    assert hello["key"] == "a" and hello["peer"] == a.ip
    assert {p["name"] for p in hello["pools"]} == {"default"}
    # Each line B's sshd reads runs the forced command, and nothing else.
    lines = (b.run_dir / "receive" / "authorized_keys").read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith('restrict,command="')
    assert b.osctl_json("receive", "authorized-keys", "ls")[0]["name"] == "a"


def test_refusals_say_why(make_cluster):
    cluster = make_cluster()
    a, b = cluster.nodes
    # A key B does not know: sshd refuses it.
    p = a.osctl("send", "check", b.dest, check=False)
    assert p.returncode == 7 and "Permission denied" in p.stderr, p.stderr
    # Known, but from elsewhere.
    cluster.trust(a, b, "a", "--from", "203.0.113.0/24,192.0.2.*")
    p = a.osctl("send", "check", b.dest, check=False)
    assert p.returncode == 7 and f"key a may be used from 203.0.113.0/24, 192.0.2.* only, " \
                                  f"not from {a.ip}" in p.stderr, p.stderr
    b.osctl("receive", "authorized-keys", "del", "a")
    # Single-use: good once.
    cluster.trust(a, b, "a", "--single-use", "--from", "198.51.100.0/24")
    a.osctl("send", "check", b.dest)
    assert b.osctl_json("receive", "authorized-keys", "ls")[0]["used"] is True
    p = a.osctl("send", "check", b.dest, check=False)
    assert p.returncode == 7 and "single-use key a was used already" in p.stderr, p.stderr
    # Taken back: sshd refuses it at once.
    b.osctl("receive", "authorized-keys", "del", "a")
    p = a.osctl("send", "check", b.dest, check=False)
    assert p.returncode == 7 and "Permission denied" in p.stderr, p.stderr


def test_bad_keys_are_refused(make_cluster):
    (b,) = make_cluster(1).nodes
    for bad in ("", "not a key", "ssh-ed25519 AAAA####", "ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQAB x",
                'command="sh" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl'):
        p = b.osctl("receive", "authorized-keys", "add", "k", input=bad, check=False)
        assert p.returncode == 2, (bad, p.stderr)
    assert b.osctl_json("receive", "authorized-keys", "ls") == []
    assert (b.run_dir / "receive" / "authorized_keys").read_text() == ""
