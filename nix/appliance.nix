# The appliance: a small NixOS that runs wabscan and nothing else an operator
# has to look after. The board (boot loader, root file system) is added by
# flake.nix per platform; the disk images come from nixpkgs' own builders
# (image.modules / system.build.images).
{
  config,
  lib,
  modulesPath,
  ...
}:

{
  imports = [
    # No documentation, man pages, info, default packages or XDG bits.
    (modulesPath + "/profiles/minimal.nix")
    ./module.nix
  ];

  options.wabscan.appliance.authorizedKeys = lib.mkOption {
    type = lib.types.listOf lib.types.str;
    default = [ ];
    example = [ "ssh-ed25519 AAAA... operator@laptop" ];
    description = ''
      SSH public keys allowed to log in as root. SSH accepts keys only; with
      none, only the serial console is left.
    '';
  };

  config = {
    services.wabscan.enable = true;
    # Retention purge, feed refresh and the nightly SQLite backup.
    services.wabscan.maintenance.enable = true;

    networking.hostName = lib.mkDefault "wabscan";
    time.timeZone = lib.mkDefault "UTC";

    # No X: nothing graphical is enabled, and none of it may be pulled in.
    services.xserver.enable = false;

    # The journal is the appliance's log: kept across reboots, bounded.
    services.journald.storage = "persistent";
    services.journald.extraConfig = ''
      SystemMaxUse=256M
      SystemKeepFree=512M
      SystemMaxFileSize=32M
      MaxRetentionSec=3month
    '';

    # SSH with keys only.
    services.openssh = {
      enable = true;
      settings = {
        PasswordAuthentication = false;
        KbdInteractiveAuthentication = false;
        PermitRootLogin = "prohibit-password";
      };
    };
    users.users.root.openssh.authorizedKeys.keys = config.wabscan.appliance.authorizedKeys;

    # A serial console as well as the screen (the last console= gets the
    # kernel's messages and the emergency shell).
    boot.kernelParams = [
      "console=tty0"
      "console=ttyS0,115200n8"
    ];

    # Compressed swap in RAM: MemoryHigh= throttling can reclaim into it
    # instead of stalling, and a small box gets headroom without a disk swap.
    zramSwap = {
      enable = true;
      memoryPercent = 50;
    };

    # `nixos-rebuild switch --flake` on the box itself.
    nix.settings.experimental-features = [
      "nix-command"
      "flakes"
    ];

    warnings = lib.optional (config.wabscan.appliance.authorizedKeys == [ ]) ''
      wabscan.appliance.authorizedKeys is empty: nobody can log in over SSH
      (passwords are off). Add your public key before building the image.
    '';

    system.stateVersion = "26.05";
  };
}
