"""Names reach paths, cgroups and LXC names: one strict pattern, checked first."""

from __future__ import annotations

import pytest

from osctl.protocol import INVALID, OsctlError
from osctld.model.container import Container, check_resolvers
from osctld.model.naming import check_hostname, check_name
from osctld.model.pool import Pool
from osctld.model.units import parse_size


@pytest.mark.parametrize("name", ["a", "c1", "web-1", "db_2", "a.b", "0", "x" * 63])
def test_good_names(name):
    assert check_name("container", name) == name


@pytest.mark.parametrize("name", [
    "", "A", "-a", ".a", "_a", "a/b", "../etc", "a..b", "..", "a b", "a\n", "a\x00",
    "x" * 64, "ä", "a:b", "a*", 1, None, ["a"],
])
def test_bad_names(name):
    with pytest.raises(OsctlError) as e:
        check_name("container", name)
    assert e.value.code == INVALID
    assert "container name" in e.value.message


@pytest.mark.parametrize("host", ["a", "web1", "Web1.Example.org", "a-b.c-d", "1.2.3.4x",
                                  ".".join(["a" * 63] * 3)])
def test_good_hostnames(host):
    assert check_hostname(host) == host


@pytest.mark.parametrize("host", ["", "-a", "a-", "a..b", ".a", "a.", "a_b", "a b",
                                  "a" * 64, ".".join(["a" * 63] * 5), "a;reboot", "a\n", "a.b\n", 5])
def test_bad_hostnames(host):
    with pytest.raises(OsctlError, match="invalid hostname"):
        check_hostname(host)


def test_models_check_their_names():
    with pytest.raises(OsctlError):
        Container("../x", "p", "u", "busybox", "1")
    with pytest.raises(OsctlError):
        Container("c", "p", "U", "busybox", "1")
    with pytest.raises(OsctlError):
        Container("c", "p", "u", "busybox", "1", hostname="bad_host")
    with pytest.raises(OsctlError):
        Pool("../p", "dir", "/tmp/p")
    with pytest.raises(OsctlError, match="unknown backend"):
        Pool("p", "lvm", "/tmp/p")
    with pytest.raises(OsctlError, match="absolute"):
        Pool("p", "dir", "relative/p")


def test_dns_resolvers_are_ip_addresses():
    assert check_resolvers(["192.0.2.1", "2001:db8::0:1"]) == ["192.0.2.1", "2001:db8::1"]
    for bad in (["dns.example"], ["192.0.2.1; rm"], [""]):
        with pytest.raises(OsctlError, match="resolver"):
            check_resolvers(bad)


@pytest.mark.parametrize("text,value", [
    ("0", 0), (4096, 4096), ("512", 512), ("1k", 1024), ("512M", 512 << 20), ("1G", 1 << 30),
    ("1g", 1 << 30), ("10GiB", 10 << 30), ("1.5T", 3 << 39), ("2 MB", 2 << 20), ("1P", 1 << 50),
])
def test_sizes(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "G", "-1G", -1, "1X", "1.2.3G", "ten", "1G2"])
def test_bad_sizes(text):
    with pytest.raises(OsctlError) as e:
        parse_size(text)
    assert e.value.code == INVALID
