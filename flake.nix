{
  description = "wabscan: a self-hosted link scanner for WhatsApp groups, as a NixOS appliance";

  # The only input: a stable NixOS release branch. nixos-26.05 is the newest
  # branch the nixpkgs sources we read confirm (branched 2026-05-24); move to
  # nixos-26.11 once it is cut, then run `nix flake update`.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;

      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # wabscan's private Python set (protobuf >= 7.34.1, neonize, linkpreview).
      pythonFor = pkgs: pkgs.callPackage ./nix/python.nix { };
      wabscanFor = pkgs: pkgs.callPackage ./nix/package.nix { python = pythonFor pkgs; };

      # The appliance on one board: nix/appliance.nix plus how that board
      # boots. The disk images come from nixpkgs' image.modules.
      appliance =
        system: board:
        lib.nixosSystem {
          modules = [
            self.nixosModules.appliance
            board
            { nixpkgs.hostPlatform = system; }
          ];
        };

      # A PC or VM with UEFI: the same layout as nixpkgs' disk-image.nix
      # (labels "nixos" and "ESP"), so `nixos-rebuild switch` on the box keeps
      # booting the image's partitions.
      pcBoard = {
        boot.loader.systemd-boot.enable = true;
        boot.loader.efi.canTouchEfiVariables = false;
        boot.growPartition = true;
        fileSystems."/" = {
          device = "/dev/disk/by-label/nixos";
          fsType = "ext4";
          autoResize = true;
        };
        fileSystems."/boot" = {
          device = "/dev/disk/by-label/ESP";
          fsType = "vfat";
        };
      };

      # A 64-bit ARM board booting from an SD card through U-Boot's extlinux
      # support (e.g. a Raspberry Pi 3 or 4), as nixpkgs' sd-image-aarch64.nix
      # builds it.
      sdBoard = {
        boot.loader.grub.enable = false;
        boot.loader.generic-extlinux-compatible.enable = true;
        fileSystems."/" = {
          device = "/dev/disk/by-label/NIXOS_SD";
          fsType = "ext4";
        };
      };
    in
    {
      packages = forAllSystems (
        pkgs:
        let
          wabscan = wabscanFor pkgs;
          images =
            if pkgs.stdenv.hostPlatform.system == "x86_64-linux" then
              let
                inherit (self.nixosConfigurations.appliance.config.system.build) images;
              in
              {
                # Raw disk image with an EFI system partition: `dd` it to a disk.
                image = images.raw-efi;
                # The same as qcow2, to boot in QEMU.
                image-qcow2 = images.qemu-efi;
              }
            else
              {
                # SD card image (zstd-compressed): `zstdcat ... | dd` to the card.
                image = self.nixosConfigurations.appliance-aarch64.config.system.build.images.sd-card;
              };
        in
        {
          default = wabscan;
          inherit wabscan;
          neonize = (pythonFor pkgs).pkgs.neonize;
        }
        // images
      );

      nixosModules = {
        # services.wabscan, with this flake's package as the default.
        default =
          { lib, pkgs, ... }:
          {
            imports = [ ./nix/module.nix ];
            services.wabscan.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.default;
          };
        # The whole appliance (without a board): see nix/appliance.nix.
        appliance = {
          imports = [
            self.nixosModules.default
            ./nix/appliance.nix
          ];
        };
      };

      nixosConfigurations = {
        appliance = appliance "x86_64-linux" pcBoard;
        appliance-aarch64 = appliance "aarch64-linux" sdBoard;
      };

      checks = forAllSystems (
        pkgs:
        {
          # The package's build runs the project's tests.
          package = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
          neonize = self.packages.${pkgs.stdenv.hostPlatform.system}.neonize;
        }
        // lib.optionalAttrs (pkgs.stdenv.hostPlatform.system == "x86_64-linux") {
          vm-test = import ./nix/vm-test.nix {
            inherit pkgs;
            package = self.packages.x86_64-linux.default;
          };
        }
      );

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.stdenv.hostPlatform.system}.default ];
          packages = [
            pkgs.redis
            pkgs.ruff
            pkgs.mypy
            pkgs.nixfmt
          ];
        };
      });

      # RFC 166 style. In nixos-26.05 pkgs.nixfmt is that formatter and the
      # old name nixfmt-rfc-style only warns that it is an alias of it.
      formatter = forAllSystems (pkgs: pkgs.nixfmt);
    };
}
