{ config, pkgs, ... }:

{
  imports = [ ./osctld ];
  boot.isContainer = true;
  services.openssh.enable = true;
}
