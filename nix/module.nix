# services.osctld: osctld on a NixOS node.
#
#   imports = [ ./nix/module.nix ];
#   services.osctld.enable = true;
#   services.osctld.settings.autostart_parallelism = 8;
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.osctld;
  settingsFormat = pkgs.formats.yaml { };
  configFile = settingsFormat.generate "osctld.yml" cfg.settings;
in
{
  options.services.osctld = {
    enable = lib.mkEnableOption "osctld, the container hypervisor daemon";

    package = lib.mkOption {
      type = lib.types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = lib.literalExpression "pkgs.callPackage ./package.nix { }";
      description = "The osctld package (it holds osctl too).";
    };

    settings = lib.mkOption {
      description = ''
        osctld's configuration, written as YAML and given to `osctld --config`.
        Keys not named here (socket, cache_dir, default_pool, lock_timeout,
        max_frame) are passed through as given; see the README's table.
      '';
      default = { };
      type = lib.types.submodule {
        freeformType = settingsFormat.type;
        options = {
          state_dir = lib.mkOption {
            type = lib.types.str;
            default = "/var/lib/osctld";
            description = "Node state: the pool list, owned subuid lines, the default pool.";
          };
          run_dir = lib.mkOption {
            type = lib.types.str;
            default = "/run/osctld";
            description = "The socket, generated LXC configs and the hook socket.";
          };
          autostart_parallelism = lib.mkOption {
            type = lib.types.ints.positive;
            default = 4;
            description = "Containers started at once when the daemon starts.";
          };
          log_level = lib.mkOption {
            type = lib.types.enum [
              "debug"
              "info"
              "warning"
              "error"
            ];
            default = "info";
            description = "Least important messages logged (to the journal).";
          };
          templates_dir = lib.mkOption {
            type = lib.types.str;
            default = "${cfg.package}/share/osctld/templates";
            defaultText = lib.literalExpression ''"''${cfg.package}/share/osctld/templates"'';
            description = "Distribution templates containers are built from.";
          };
        };
      };
    };
  };

  config = lib.mkIf cfg.enable {
    environment.systemPackages = [ cfg.package ];

    # Other nodes send servers here as osctld-recv, with the keys osctld
    # writes (osctl receive authorized-keys); each runs its forced command.
    users.groups.osctld-recv = { };
    users.users.osctld-recv = {
      isSystemUser = true;
      group = "osctld-recv";
      home = "/var/lib/osctld-recv";
      createHome = true;
      shell = "/bin/sh";
    };
    services.openssh.extraConfig = ''
      Match User osctld-recv
          AuthorizedKeysFile ${cfg.settings.run_dir}/receive/authorized_keys
          PasswordAuthentication no
          KbdInteractiveAuthentication no
          AllowTcpForwarding no
          X11Forwarding no
          PermitTTY no
      Match all
    '';

    systemd.services.osctld = {
      description = "osctld container hypervisor daemon";
      wantedBy = [ "multi-user.target" ];
      after = [ "network.target" ];
      # newuidmap and newgidmap: setuid wrappers first, where NixOS keeps them.
      path = [ "/run/wrappers" ];
      restartTriggers = [ configFile ];
      serviceConfig = {
        ExecStart = "${cfg.package}/bin/osctld --config ${configFile}";
        # Containers run under LXC's own monitors inside this unit's cgroup:
        # stopping or restarting osctld signals only the daemon and leaves
        # them running; the daemon re-adopts them when it starts again.
        KillMode = "process";
        # LXC creates the containers' cgroups below this unit's.
        Delegate = true;
        Restart = "on-failure";
        LimitNOFILE = 1048576;
      };
    };
  };
}
