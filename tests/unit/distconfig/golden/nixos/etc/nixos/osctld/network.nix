# This file is written by osctld and regenerated whenever the container's
# configuration changes: edits made here are lost.
# Your own settings go in /etc/nixos/configuration.nix, which imports this.
# To stop osctld from writing it: chmod u-w /etc/nixos/osctld/network.nix
{ lib, ... }:
{
  networking.interfaces."eth0" = {
    useDHCP = false;
    ipv4.addresses = [
      { address = "10.100.0.2"; prefixLength = 30; }
      { address = "192.0.2.10"; prefixLength = 32; }
      { address = "192.0.2.11"; prefixLength = 32; }
    ];
    ipv4.routes = [
      { address = "0.0.0.0"; prefixLength = 0; via = "10.100.0.1"; options.src = "192.0.2.10"; }
      { address = "198.51.100.0"; prefixLength = 28; via = "10.100.0.1"; }
    ];
    ipv6.addresses = [
      { address = "2001:db8::10"; prefixLength = 128; }
    ];
    ipv6.routes = [
      { address = "::"; prefixLength = 0; via = "fe80::1"; }
    ];
  };
  networking.interfaces."eth1" = {
    useDHCP = false;
    ipv4.addresses = [
      { address = "203.0.113.50"; prefixLength = 24; }
    ];
    ipv4.routes = [
      { address = "0.0.0.0"; prefixLength = 0; via = "203.0.113.1"; options.src = "203.0.113.50"; }
    ];
    ipv6.addresses = [
      { address = "2001:db8:1::50"; prefixLength = 64; }
    ];
    ipv6.routes = [
      { address = "::"; prefixLength = 0; via = "2001:db8:1::1"; }
    ];
  };
  networking.interfaces."eth2" = {
    useDHCP = true;
    ipv4.addresses = [ ];
    ipv4.routes = [ ];
    ipv6.addresses = [ ];
    ipv6.routes = [ ];
  };
}
