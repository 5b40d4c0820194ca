"""configuration.nix imports ./osctld once, whatever shape the user gave it;
the modules say to Nix what they are meant to."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from osctld.distconfig import for_distribution
from tests.conftest import require

from .cases import all_kinds

CASES = [
    ("{ config, pkgs, ... }:\n{\n  imports = [ ./hardware.nix ];\n}\n",
     "{ config, pkgs, ... }:\n{\n  imports = [ ./osctld ./hardware.nix ];\n}\n"),
    ("# mine\n{ config, ... }@args:\n\n{\n  boot.isContainer = true;\n}\n",
     "# mine\n{ config, ... }@args:\n\n{\n  imports = [ ./osctld ];\n  boot.isContainer = true;\n}\n"),
    ("{\n  boot.isContainer = true;\n}\n",
     "{\n  imports = [ ./osctld ];\n  boot.isContainer = true;\n}\n"),
    ("{ ... }:\n{\n  imports = [\n    ./osctld\n  ];\n}\n",
     "{ ... }:\n{\n  imports = [\n    ./osctld\n  ];\n}\n"),
    ("{ pkgs, ... }:\nlet x = 1; in\n{\n  boot.isContainer = true;\n}\n",
     "{ pkgs, ... }:\nlet x = 1; in\n{\n  boot.isContainer = true;\n}\n"),
]


@pytest.mark.parametrize("before,after", CASES)
def test_import_added_once(before, after, tmp_path):
    (tmp_path / "etc/nixos").mkdir(parents=True)
    conf = tmp_path / "etc/nixos/configuration.nix"
    conf.write_text(before)
    dc = for_distribution("nixos")(tmp_path)
    dc.set_hostname("ct1")
    dc.set_dns(["192.0.2.53"])
    assert conf.read_text() == after


def test_missing_configuration_gets_a_minimal_one(tmp_path):
    for_distribution("nixos")(tmp_path).set_hostname("ct1")
    text = (tmp_path / "etc/nixos/configuration.nix").read_text()
    assert "imports = [ ./osctld ];" in text
    assert "./hostname.nix" in (tmp_path / "etc/nixos/osctld/default.nix").read_text()
    assert "./network.nix" not in (tmp_path / "etc/nixos/osctld/default.nix").read_text()


def test_generated_modules_evaluate_to_the_options_meant(tmp_path):
    """Nix itself reads the modules (with a stand-in for lib.mkDefault)."""
    require(None if shutil.which("nix-instantiate") else "nix-instantiate missing (nix-bin)")
    dc = for_distribution("nixos")(tmp_path)
    dc.set_network(all_kinds())
    dc.set_hostname("ct1.example.org")
    dc.set_dns(["192.0.2.53"])
    expr = ("let lib = { mkDefault = x: x; }; in {"
            " parts = map (f: import f { inherit lib; }) [ ./network.nix ./hostname.nix ./dns.nix ];"
            " imports = map toString (import ./default.nix).imports; }")
    out = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "-E", expr],
                         cwd=tmp_path / "etc/nixos/osctld", check=True, capture_output=True, text=True)
    got = json.loads(out.stdout)
    eth0 = got["parts"][0]["networking"]["interfaces"]["eth0"]
    assert eth0["useDHCP"] is False
    assert eth0["ipv4"]["addresses"][1] == {"address": "192.0.2.10", "prefixLength": 32}
    assert eth0["ipv4"]["routes"][0] == {"address": "0.0.0.0", "prefixLength": 0, "via": "10.100.0.1",
                                         "options": {"src": "192.0.2.10"}}
    assert eth0["ipv6"]["routes"][0] == {"address": "::", "prefixLength": 0, "via": "fe80::1"}
    assert got["parts"][0]["networking"]["interfaces"]["eth2"]["useDHCP"] is True
    assert got["parts"][1]["networking"] == {"hostName": "ct1", "domain": "example.org"}
    assert got["parts"][2]["networking"]["nameservers"] == ["192.0.2.53"]
    assert [p.rsplit("/", 1)[1] for p in got["imports"]] == ["hostname.nix", "dns.nix", "network.nix"]
