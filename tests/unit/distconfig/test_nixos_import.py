"""configuration.nix imports ./osctld once, whatever shape the user gave it."""

from __future__ import annotations

import pytest

from osctld.distconfig import for_distribution

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
