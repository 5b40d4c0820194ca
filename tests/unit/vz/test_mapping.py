"""Golden tests: vzctl configs (in vzctl's own format) and the settings and
report osctld makes of them. UPDATE_GOLDEN=1 rewrites the .expected files;
review their diff before committing it."""

import json
import os
from pathlib import Path

import pytest

from osctl_convert import mapping, vzconf

GOLDEN = Path(__file__).parent / "golden"
HOST_RESOLVERS = ["192.0.2.1", "2001:db8::1"]
NODES = {"loop0": ("b", 7, 0)}


def converted(conf_text: str) -> mapping.Conversion:
    return mapping.convert(vzconf.parse(conf_text), "101", host_resolvers=HOST_RESOLVERS,
                           devnode=NODES.get)


@pytest.mark.parametrize("name", sorted(p.stem for p in GOLDEN.glob("*.conf")))
def test_golden_report(name):
    conv = converted((GOLDEN / f"{name}.conf").read_text())
    got = mapping.render(conv.report) + "\n" + json.dumps(conv.to_dict()["settings"], indent=1) + "\n"
    expected = GOLDEN / f"{name}.expected"
    if os.environ.get("UPDATE_GOLDEN"):
        expected.write_text(got)
    assert got == expected.read_text()


def test_every_key_is_reported_once():
    for path in GOLDEN.glob("*.conf"):
        conf = vzconf.parse(path.read_text())
        assert [e.key for e in converted(path.read_text()).report] == list(conf)


def test_vswap_values():
    s = converted((GOLDEN / "vswap-debian.conf").read_text()).settings
    assert s.limits == {"memory": 1 << 30, "swap": 5 << 29, "cpu_limit": 1.5}
    assert s.disk == int(2.2 * (1 << 20)) * 1024  # 2.2G in whole KiB, not truncated to 2G
    assert s.netifs[0]["addresses"] == ["192.0.2.10", "192.0.2.11", "2001:db8::10", "2001:db8:1::"]
    assert (s.distribution, s.version, s.autostart, s.autostart_priority) == ("debian", "7.0", True, 5)
    assert s.private == "/vz/private/101"


def test_unlimited_is_never_zero():
    s = converted((GOLDEN / "ubc-centos.conf").read_text()).settings
    assert s.limits["memory"] == 33792 * 4096  # VMGUARPAGES barrier, as Proxmox takes it
    assert "swap" not in s.limits
    assert s.dns_resolvers == HOST_RESOLVERS
    s = converted((GOLDEN / "odd-template.conf").read_text()).settings
    assert s.limits == {"memory": 512 << 20, "cpu_limit": 1.0}


def test_tun_and_ppp_become_features():
    s = converted((GOLDEN / "devices-features.conf").read_text()).settings
    assert s.features == ["ppp", "tun"]
    assert s.devices == [{"type": "c", "major": 1, "minor": 3, "mode": "rw", "path": None}]
    assert [n["name"] for n in s.netifs] == ["eth0", "eth1"]


@pytest.mark.parametrize("value,unit,want", [
    ("262144", 4096, 1 << 30), ("1G", 4096, 1 << 30), ("2.2G", 1024, int(2.2 * (1 << 20)) * 1024),
    ("1048576K", 4096, 1 << 30), ("256P", 4096, 1 << 20), ("8192B", 4096, 8192),
    ("unlimited", 4096, None), ("9223372036854775807", 4096, None), ("240", 1, 240),
])
def test_numbers(value, unit, want):
    assert vzconf.number(value, unit) == want


@pytest.mark.parametrize("value", ["1.5", "abc", "1X", "-1"])
def test_bad_numbers(value):
    with pytest.raises(vzconf.ValueError_):
        vzconf.number(value, 4096)


def test_parse_syntax():
    conf = vzconf.parse('# c\nA="x y"\nB=plain\nexport C=\'q\'\nbroken line\nA="z"  # later wins\n')
    assert conf == {"B": "plain", "C": "q", "A": "z"}


def test_routed_netif_moves_off_a_veths_name():
    conv = converted('IP_ADDRESS="192.0.2.9"\nNETIF="ifname=eth0,mac=00:18:51:aa:bb:01,bridge=br0"\n')
    assert [(n["name"], n["type"]) for n in conv.settings.netifs] == [("eth1", "routed"), ("eth0", "bridge")]
    assert conv.report[0].detail.endswith("named eth1: NETIF has eth0")
