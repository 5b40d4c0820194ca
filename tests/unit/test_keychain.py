"""The receive keychain: key lines checked, authorized_keys as sshd reads it,
and who may call what (from, ctid, single-use), without sshd or root."""

from __future__ import annotations

import pytest

from osctl.protocol import DENIED, EXISTS, INVALID, OsctlError
from osctld.transfer.forced import Refused, parse
from osctld.transfer.keychain import AuthorizedKey, Keychain, address_matches, parse_pubkey

PUB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
PUB2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEBWAmLnD3+Fl6ytvNyN43ITE5wW5J6Ezl8Yz3Xcj1Bg"


def test_a_key_line_is_checked_and_its_comment_dropped():
    assert parse_pubkey(f"\n{PUB} root@node1\n") == PUB
    for bad in ("", f"{PUB}\n{PUB2}", "ssh-dss AAAA", f'command="sh" {PUB}', "ssh-ed25519 !!!",
                "ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQAB"):
        with pytest.raises(OsctlError) as e:
            parse_pubkey(bad)
        assert e.value.code == INVALID, bad


def test_authorized_keys_lines_run_the_forced_command_only(tmp_path):
    chain = Keychain(tmp_path / "keys.yml", tmp_path / "run" / "authorized_keys",
                     ["/usr/bin/osctld-receive", "--socket", "/run/osctld/receive/receive.sock"])
    chain.load()
    chain.add(AuthorizedKey("node1", PUB + " c"))
    chain.add(AuthorizedKey("node2", PUB2, from_patterns=["198.51.100.0/24"]))
    with pytest.raises(OsctlError) as e:
        chain.add(AuthorizedKey("again", PUB))  # sshd would never reach a second line
    assert e.value.code == EXISTS
    lines = (tmp_path / "run" / "authorized_keys").read_text().splitlines()
    assert lines[0] == ('restrict,command="/usr/bin/osctld-receive --socket '
                        f'/run/osctld/receive/receive.sock node1" {PUB} osctld:node1')
    assert (tmp_path / "run" / "authorized_keys").stat().st_mode & 0o777 == 0o644
    again = Keychain(tmp_path / "keys.yml", tmp_path / "run" / "authorized_keys", ["x"])
    again.load()
    assert [k.name for k in again.all()] == ["node1", "node2"]
    assert again.get("node2").from_patterns == ["198.51.100.0/24"]
    chain.remove("node1")
    assert "node1" not in (tmp_path / "run" / "authorized_keys").read_text()


def test_from_ctid_and_single_use_are_checked():
    key = AuthorizedKey("k", PUB, from_patterns=["198.51.100.0/24", "203.0.113.*"], ctid="web*")
    key.check("198.51.100.7", {"id": "web1"})
    key.check("203.0.113.9", {})
    for ip, args in (("192.0.2.1", {}), ("198.51.100.7", {"id": "db1"})):
        with pytest.raises(OsctlError) as e:
            key.check(ip, args)
        assert e.value.code == DENIED
    once = AuthorizedKey("o", PUB, single_use=True, used=True, token="t1")
    once.check("192.0.2.1", {"token": "t1"})  # the transfer it opened goes on
    for args in ({}, {"token": "t2"}):
        with pytest.raises(OsctlError, match="single-use key o was used already"):
            once.check("192.0.2.1", args)
    assert address_matches("2001:db8::5", "2001:db8::/64")
    assert not address_matches("2001:db9::5", "2001:db8::/64")


def test_bad_patterns_and_names_are_refused():
    for kw in ({"from_patterns": ['1.2.3.4" ,command="sh']}, {"ctid": "a,b"}, {"name": "../x"}):
        with pytest.raises(OsctlError) as e:
            AuthorizedKey(**{"name": "k", "pubkey": PUB, **kw})
        assert e.value.code == INVALID


def test_the_forced_command_parses_the_original_command():
    assert parse('ct.receive.config {"id": "c1"}') == ("ct.receive.config", {"id": "c1"})
    assert parse("node.receive.hello") == ("node.receive.hello", {})
    for bad in ("", "v [1]", "v {nojson"):
        with pytest.raises(Refused):
            parse(bad)
