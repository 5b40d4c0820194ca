# This file is written by osctld and regenerated whenever the container's
# configuration changes: edits made here are lost.
# Your own settings go in /etc/nixos/configuration.nix, which imports this.
# To stop osctld from writing it: chmod u-w /etc/nixos/osctld/default.nix
{
  imports = [
    ./hostname.nix
    ./dns.nix
    ./network.nix
  ];
}
