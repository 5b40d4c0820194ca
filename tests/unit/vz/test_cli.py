"""osctl-convert on an OpenVZ node. No OpenVZ kernel runs here: the node is
a test double, a directory laid out as one (``--root``): /etc/vz/vz.conf,
/etc/vz/conf/<CTID>.conf in vzctl's format, a simfs private area, /dev nodes."""

import json
import os
import subprocess

import pytest

from osctl_convert import cli
from tests.unit.vz.test_mapping import GOLDEN


@pytest.fixture
def openvz_node(tmp_path):
    (tmp_path / "etc/vz/conf").mkdir(parents=True)
    (tmp_path / "etc/vz/vz.conf").write_text('VE_ROOT=/vz/root/$VEID\nVE_PRIVATE=/vz/private/$VEID\n'
                                             'IPTABLES="ipt_REJECT"\n')
    (tmp_path / "etc/resolv.conf").write_text("nameserver 192.0.2.1\n")
    conf = (GOLDEN / "ubc-centos.conf").read_text().replace('VE_PRIVATE="/vz/private/$VEID"\n', "")
    (tmp_path / "etc/vz/conf/101.conf").write_text(conf)
    private = tmp_path / "vz/private/101"
    (private / "etc").mkdir(parents=True)
    (private / "etc/hostname").write_text("legacy\n")
    return tmp_path


def test_show_maps_with_the_nodes_defaults_and_resolvers(openvz_node, capsys):
    cli.main(["--root", str(openvz_node), "vz6", "show", "101", "-j"])
    out = json.loads(capsys.readouterr().out)
    assert out["settings"]["private"] == "/vz/private/101"  # from vz.conf
    assert out["settings"]["dns_resolvers"] == ["192.0.2.1"]  # NAMESERVER inherit: the node's
    assert "ipt_REJECT" not in [e["value"] for e in out["report"]]  # vz.conf's own keys are not the CT's
    cli.main(["--root", str(openvz_node), "vz6", "show", "101"])
    assert "mapped   VE_PRIVATE" in capsys.readouterr().out


def test_export_is_a_vzdump_archive(openvz_node, tmp_path):
    out = tmp_path / "vzdump-openvz-101.tar.gz"
    cli.main(["--root", str(openvz_node), "vz6", "export", "101", str(out)])
    names = subprocess.run(["tar", "-tzf", str(out)], capture_output=True, text=True, check=True).stdout
    assert {"./etc/hostname", "./etc/vzdump/vps.conf"} <= set(names.split())
    conf = subprocess.run(["tar", "-xzOf", str(out), "./etc/vzdump/vps.conf"],
                          capture_output=True, text=True, check=True).stdout
    assert conf == (openvz_node / "etc/vz/conf/101.conf").read_text()


def test_ploop_needs_a_mount_and_a_missing_ct_is_named(openvz_node, tmp_path):
    (openvz_node / "vz/private/101/root.hdd").mkdir()
    (openvz_node / "vz/private/101/root.hdd/DiskDescriptor.xml").write_text("<x/>")
    with pytest.raises(SystemExit, match="vzctl mount 101"):
        cli.main(["--root", str(openvz_node), "vz6", "export", "101", str(tmp_path / "a.tar")])
    assert not os.path.exists(tmp_path / "a.tar")
    with pytest.raises(SystemExit, match="container 102"):
        cli.main(["--root", str(openvz_node), "vz6", "show", "102"])


def test_migrate_refuses_what_cannot_come_now(openvz_node, capsys):
    root = ["--root", str(openvz_node)]
    for step in ("sync", "transfer", "cleanup", "cancel"):
        with pytest.raises(SystemExit, match="not being migrated: begin with osctl-convert vz6 migrate stage"):
            cli.main([*root, "vz6", "migrate", step, "101"])
    with pytest.raises(SystemExit, match="no key .*osctl-convert key gen"):
        cli.main([*root, "vz6", "migrate", "stage", "101", "192.0.2.1"])
    cli.main([*root, "key", "gen"])
    pub = capsys.readouterr().out
    assert pub.startswith("ssh-ed25519 ") and (openvz_node / "etc/osctl-convert/key").exists()
    cli.main([*root, "key", "gen"])  # kept: the destination trusts it already
    assert capsys.readouterr().out == pub
    with pytest.raises(SystemExit, match="invalid destination"):
        cli.main([*root, "vz6", "migrate", "stage", "101", "host:99999"])
    with pytest.raises(SystemExit, match="container 102"):
        cli.main([*root, "vz6", "migrate", "now", "102", "192.0.2.1"])
    assert not (openvz_node / "var/lib/osctl-convert/101.json").exists()  # nothing staged


def test_rsync_progress_only_where_rsync_has_it(tmp_path, monkeypatch):
    from osctl_convert import migrate

    fake = tmp_path / "rsync"
    for version, opts in (("3.0.6", []), ("3.2.7", ["--info=progress2"])):
        fake.write_text(f"#!/bin/sh\necho 'rsync  version {version}  protocol version 30'\n")
        fake.chmod(0o755)
        monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
        assert migrate.progress_opts() == opts
