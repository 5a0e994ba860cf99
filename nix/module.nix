# services.wabscan: the three trio services, their sockets, Redis, the slice
# and the maintenance timer.
#
# The units themselves come from the package (units/ in the repository,
# installed under lib/systemd/system) through systemd.packages; everything
# set here reaches them as drop-ins (NixOS writes <unit>.d/overrides.conf for
# a unit that a package already provides). systemd.packages ignores [Install]
# sections, so the wantedBy lines below are what starts the appliance.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.wabscan;

  inherit (lib)
    mkEnableOption
    mkIf
    mkOption
    types
    ;

  tomlFormat = pkgs.formats.toml { };
  configFile = tomlFormat.generate "wabscan.toml" cfg.settings;

  credentialsDir = "/var/lib/wabscan-credentials";
  authorKeyFile = if cfg.authorKeyFile != null then cfg.authorKeyFile else "${credentialsDir}/author-key";
  controlTokenFile =
    if cfg.controlApi.tokenFile != null then cfg.controlApi.tokenFile else "${credentialsDir}/control-token";

  # Redis loads the packaged file, then these lines; the last value wins.
  redisConfig = pkgs.writeText "wabscan-redis.conf" ''
    include ${cfg.package}/share/wabscan/redis.conf
    maxmemory ${toString cfg.redis.maxmemory}mb
  '';

  mib = n: "${toString n}M";

  memoryOption =
    unit: high: max: measured:
    mkOption {
      type = types.submodule {
        options = {
          high = mkOption {
            type = types.ints.positive;
            default = high;
            description = "MemoryHigh= of ${unit}, in MiB: above it the kernel reclaims from the unit.";
          };
          max = mkOption {
            type = types.ints.positive;
            default = max;
            description = "MemoryMax= of ${unit}, in MiB: the hard limit.";
          };
        };
      };
      default = { };
      description = "Memory limits of ${unit} (cgroups). ${measured}";
    };

  # What every long-running unit of the appliance must fit: the units'
  # MemoryHigh together within the slice's MemoryMax (tests/test_units.py
  # checks the same rule on units/).
  longRunning = [
    "bridge"
    "scanner"
    "reporter"
    "redis"
  ];
  sumOfHigh = lib.foldl' (sum: name: sum + cfg.memory.${name}.high) 0 longRunning;

  memoryConfig = name: {
    MemoryHigh = mib cfg.memory.${name}.high;
    MemoryMax = mib cfg.memory.${name}.max;
  };

  isLoopback = address: lib.elem address [
    "127.0.0.1"
    "::1"
    "[::1]"
    "localhost"
  ];

  listenStream =
    let
      address = cfg.controlApi.listenAddress;
      host = if lib.hasInfix ":" address && !lib.hasPrefix "[" address then "[${address}]" else address;
    in
    "${host}:${toString cfg.controlApi.port}";

  trio = [
    "bridge"
    "scanner"
    "reporter"
  ];

  # Operators pair the WhatsApp account as the service user, with the same
  # state directory, configuration and credentials as the bridge, while the
  # bridge is stopped (it holds the session).
  loginCommand = pkgs.writeShellApplication {
    name = "wabscan-login";
    runtimeInputs = [ config.systemd.package ];
    text = ''
      if [ "$(id -u)" -ne 0 ]; then
        echo "wabscan-login: run as root (sudo wabscan-login --phone NUMBER)" >&2
        exit 1
      fi
      systemctl stop wabscan-bridge.service
      trap 'systemctl start wabscan-bridge.service' EXIT
      systemd-run --quiet --pty --wait --collect \
        --unit=wabscan-login \
        --uid=wabscan --gid=wabscan \
        --property=StateDirectory=wabscan \
        --property=LoadCredential=author-key:${authorKeyFile} \
        --setenv=WABSCAN_CONFIG=/etc/wabscan/wabscan.toml \
        ${lib.getExe cfg.package} login "$@"
    '';
  };
in
{
  options.services.wabscan = {
    enable = mkEnableOption "wabscan, the link scanner for WhatsApp groups";

    package = mkOption {
      type = types.package;
      description = ''
        The wabscan package. Its lib/systemd/system holds the units this
        module extends. The flake's `nixosModules.default` sets it to the
        flake's own package.
      '';
    };

    settings = mkOption {
      description = ''
        The configuration file /etc/wabscan/wabscan.toml, as Nix values. Any
        key wabscan knows may be set (see docs/configuration.md); wabscan
        refuses unknown keys, so a typo fails at start with a message naming
        the key. The keys below are typed.
      '';
      default = { };
      type = types.submodule {
        freeformType = tomlFormat.type;
        options = {
          redis_url = mkOption {
            type = types.str;
            default = "unix:///run/wabscan-redis/redis.sock";
            description = "Redis of the appliance: the socket of wabscan-redis.service.";
          };

          bridge = mkOption {
            default = { };
            description = "The [bridge] table.";
            type = types.submodule {
              freeformType = tomlFormat.type;
              options = {
                transport = mkOption {
                  type = types.enum [
                    "whatsapp"
                    "local"
                  ];
                  default = "whatsapp";
                  description = ''
                    `whatsapp` talks to WhatsApp through neonize; `local` is the
                    stand-in transport of the tests and the demo, which reads
                    and writes files in `local_transport_dir`.
                  '';
                };
                local_transport_dir = mkOption {
                  type = types.str;
                  default = "";
                  example = "/var/lib/wabscan/local-transport";
                  description = "Directory of the local transport (used when transport is `local`).";
                };
              };
            };
          };

          retention = mkOption {
            default = { };
            description = "The [retention] table, enforced by wabscan-maintenance.";
            type = types.submodule {
              freeformType = tomlFormat.type;
              options = {
                scans_days = mkOption {
                  type = types.ints.positive;
                  default = 90;
                  description = "Days scans and verdicts are kept; wabscan-maintenance purges older ones.";
                };
                audit_days = mkOption {
                  type = types.ints.positive;
                  default = 365;
                  description = "Days the audit log of admin actions is kept.";
                };
              };
            };
          };
        };
      };
    };

    memory = {
      slice = mkOption {
        type = types.submodule {
          options = {
            high = mkOption {
              type = types.ints.positive;
              default = 200;
              description = "MemoryHigh= of wabscan.slice, in MiB: the appliance's goal.";
            };
            max = mkOption {
              type = types.ints.positive;
              default = 256;
              description = "MemoryMax= of wabscan.slice, in MiB: the appliance's hard budget.";
            };
          };
        };
        default = { };
        description = "Memory budget of the whole appliance: every wabscan unit runs in wabscan.slice.";
      };
      bridge =
        memoryOption "wabscan-bridge.service" 100 150
          "Goal 100 MB; neonize alone takes 64-74 MB after import.";
      scanner = memoryOption "wabscan-scanner.service" 60 90 "Goal 60 MB.";
      reporter = memoryOption "wabscan-reporter.service" 45 70 "Goal 45 MB.";
      redis = memoryOption "wabscan-redis.service" 40 48 "Goal 32 MB; see services.wabscan.redis.maxmemory.";
      maintenance = memoryOption "wabscan-maintenance.service" 60 90 "A daily one-shot.";
    };

    redis.maxmemory = mkOption {
      type = types.ints.positive;
      default = cfg.memory.redis.max / 2;
      defaultText = lib.literalExpression "config.services.wabscan.memory.redis.max / 2";
      description = ''
        Redis `maxmemory`, in MiB. Derived from the Redis unit's MemoryMax:
        half of it, because an AOF rewrite forks and the child's
        copy-on-write pages are charged to the same cgroup. The policy is
        always `volatile-lru`: cached verdicts give way, streams never.
      '';
    };

    authorKeyFile = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/run/secrets/wabscan-author-key";
      description = ''
        File with the key that hashes sender ids, passed to every service as
        the credential `author-key`. Null: the key wabscan-credentials.service
        generates once in ${credentialsDir}. Back it up with the database,
        or old hashes stop matching new ones. A path as a string, so that
        the secret never enters the Nix store.
      '';
    };

    controlApi = {
      listenAddress = mkOption {
        type = types.str;
        default = "127.0.0.1";
        example = "0.0.0.0";
        description = ''
          Address of the reporter's socket, which serves /healthz, /metrics
          and the control API. Loopback by default; every control API request
          needs the bearer token.
        '';
      };
      port = mkOption {
        type = types.port;
        default = 9473;
        description = "Port of the reporter's socket (control API).";
      };
      tokenFile = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "/run/secrets/wabscan-control-token";
        description = ''
          File with the control API's bearer token, passed to the reporter as
          the credential `control-token`. Null: the token
          wabscan-credentials.service generates once in
          ${credentialsDir}/control-token.
        '';
      };
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open services.wabscan.controlApi.port in the firewall.";
    };

    providerKeyFiles = mkOption {
      type = types.attrsOf types.str;
      default = { };
      example = {
        virustotal = "/run/secrets/virustotal-key";
      };
      description = ''
        Keys of the reputation providers, by provider name. Each file is
        passed to the scanner as the credential `provider-NAME`.
      '';
    };

    maintenance = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = ''
          Run wabscan-maintenance.service from its timer: retention purge,
          feed refresh, SQLite optimise and an online backup to
          /var/lib/wabscan/backups.
        '';
      };
      schedule = mkOption {
        type = types.str;
        default = "*-*-* 03:30:00";
        description = "When the maintenance runs (OnCalendar=, see systemd.time(7)).";
      };
    };
  };

  config = mkIf cfg.enable {
    assertions =
      [
        {
          assertion = cfg.settings.bridge.transport != "local" || cfg.settings.bridge.local_transport_dir != "";
          message = "services.wabscan.settings.bridge.local_transport_dir must be set when services.wabscan.settings.bridge.transport is \"local\".";
        }
        {
          assertion = cfg.redis.maxmemory * 4 <= cfg.memory.redis.max * 3;
          message = "services.wabscan.redis.maxmemory (${toString cfg.redis.maxmemory} MiB) must stay at most 3/4 of services.wabscan.memory.redis.max (${toString cfg.memory.redis.max} MiB): an AOF rewrite forks inside the same cgroup.";
        }
        {
          assertion = cfg.memory.slice.high <= cfg.memory.slice.max;
          message = "services.wabscan.memory.slice.high must not exceed services.wabscan.memory.slice.max.";
        }
        {
          assertion = sumOfHigh <= cfg.memory.slice.max;
          message = "The MemoryHigh of bridge, scanner, reporter and redis (services.wabscan.memory.<unit>.high, ${toString sumOfHigh} MiB together) must fit in services.wabscan.memory.slice.max (${toString cfg.memory.slice.max} MiB).";
        }
        {
          assertion = cfg.memory.bridge.max >= 96;
          message = "services.wabscan.memory.bridge.max must be at least 96 MiB: neonize alone takes 64-74 MB after import.";
        }
        {
          assertion = !cfg.openFirewall || !isLoopback cfg.controlApi.listenAddress;
          message = "services.wabscan.openFirewall opens port ${toString cfg.controlApi.port}, but services.wabscan.controlApi.listenAddress is a loopback address; set it to the address to serve (e.g. \"0.0.0.0\").";
        }
      ]
      ++ map (name: {
        assertion = cfg.memory.${name}.high < cfg.memory.${name}.max;
        message = "services.wabscan.memory.${name}.high must be below services.wabscan.memory.${name}.max.";
      }) (longRunning ++ [ "maintenance" ])
      ++ map (name: {
        assertion = cfg.memory.${name}.max <= cfg.memory.slice.max;
        message = "services.wabscan.memory.${name}.max must not exceed services.wabscan.memory.slice.max.";
      }) (longRunning ++ [ "maintenance" ]);

    users.users.wabscan = {
      isSystemUser = true;
      group = "wabscan";
      home = "/var/lib/wabscan";
      description = "wabscan link scanner";
    };
    users.groups.wabscan = { };

    environment.etc."wabscan/wabscan.toml".source = configFile;
    environment.etc."wabscan/redis.conf".source = redisConfig;
    environment.systemPackages = [
      cfg.package
      loginCommand
    ];

    # Redis forks to rewrite its append-only file; without overcommit the
    # fork can fail under memory pressure (Redis warns at start).
    boot.kernel.sysctl."vm.overcommit_memory" = lib.mkDefault 1;

    networking.firewall.allowedTCPPorts = mkIf cfg.openFirewall [ cfg.controlApi.port ];

    systemd.packages = [ cfg.package ];

    systemd.slices.wabscan.sliceConfig = {
      MemoryHigh = mib cfg.memory.slice.high;
      MemoryMax = mib cfg.memory.slice.max;
    };

    systemd.sockets =
      lib.genAttrs (map (name: "wabscan-${name}") trio) (_: {
        wantedBy = [ "sockets.target" ];
      })
      // {
        wabscan-reporter = {
          wantedBy = [ "sockets.target" ];
          # A drop-in adds to ListenStream=; the empty value drops the
          # packaged 127.0.0.1:9473 first.
          socketConfig.ListenStream = [
            ""
            listenStream
          ];
        };
      };

    systemd.services = {
      wabscan-bridge = {
        wantedBy = [ "multi-user.target" ];
        restartTriggers = [ configFile ];
        serviceConfig =
          memoryConfig "bridge"
          // {
            LoadCredential = [
              ""
              "author-key:${authorKeyFile}"
            ];
          }
          // lib.optionalAttrs (cfg.settings.bridge.transport == "local") {
            # "-": no error while the bridge has not created it yet.
            ReadWritePaths = [ "-${cfg.settings.bridge.local_transport_dir}" ];
          };
      };

      wabscan-scanner = {
        wantedBy = [ "multi-user.target" ];
        restartTriggers = [ configFile ];
        serviceConfig = memoryConfig "scanner" // {
          LoadCredential = [
            ""
            "author-key:${authorKeyFile}"
          ] ++ lib.mapAttrsToList (name: file: "provider-${name}:${file}") cfg.providerKeyFiles;
        };
      };

      wabscan-reporter = {
        wantedBy = [ "multi-user.target" ];
        restartTriggers = [ configFile ];
        serviceConfig = memoryConfig "reporter" // {
          LoadCredential = [
            ""
            "author-key:${authorKeyFile}"
            "control-token:${controlTokenFile}"
          ];
        };
      };

      wabscan-redis = {
        wantedBy = [ "multi-user.target" ];
        restartTriggers = [ redisConfig ];
        serviceConfig = memoryConfig "redis";
      };

      # Its ExecStart is a /bin/sh line using od and tr: declaring the unit
      # here gives it NixOS' default PATH (coreutils), which /bin lacks.
      wabscan-credentials.path = [ pkgs.coreutils ];

      wabscan-maintenance = {
        restartIfChanged = false;
        serviceConfig = memoryConfig "maintenance" // {
          LoadCredential = [
            ""
            "author-key:${authorKeyFile}"
          ];
        };
      };
    };

    systemd.timers.wabscan-maintenance = mkIf cfg.maintenance.enable {
      wantedBy = [ "timers.target" ];
      timerConfig.OnCalendar = [
        ""
        cfg.maintenance.schedule
      ];
    };
  };
}
