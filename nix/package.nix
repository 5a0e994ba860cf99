# wabscan itself, built from pyproject.toml, with the systemd units from
# units/ installed under lib/systemd/system (their ExecStart pointing into the
# store) so that NixOS takes them through systemd.packages unchanged.
{
  lib,
  python,
  redis,
  systemd,
}:

let
  pyproject = lib.importTOML ../pyproject.toml;
in
python.pkgs.buildPythonApplication {
  pname = "wabscan";
  inherit (pyproject.project) version;
  pyproject = true;

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../pyproject.toml
      ../src
      ../tests
      ../units
      # Not in a fresh checkout until someone adds them.
      (lib.fileset.maybeMissing ../README.md)
      (lib.fileset.maybeMissing ../samples)
    ];
  };

  build-system = [ python.pkgs.setuptools ];

  # python.pkgs.redis is the client library; the `redis` argument is the
  # server, used by the tests and the Redis unit.
  dependencies = with python.pkgs; [
    neonize
    protobuf
    trio
    sqlite-utils
    python.pkgs.redis
    prometheus-client
    sdnotify
    publicsuffixlist
    idna
    click
    rich
    h11
    segno
    confusable-homoglyphs
  ];

  # The project's tests run in the build: a real redis-server for the queue
  # and integration tests, systemd-socket-activate for socket activation.
  # Tests that need nix-instantiate, systemd-analyze, a booted systemd or
  # PyPI skip themselves here.
  nativeCheckInputs = [
    python.pkgs.pytestCheckHook
    python.pkgs.hypothesis
    redis
    systemd
  ];
  disabledTestMarks = [
    "appliance"
    "slow"
  ];
  # These check the repository (units/ against this machine's systemd,
  # nix/ against PyPI) and run in CI; in the build the VM test in checks
  # runs the installed units under a real systemd instead.
  disabledTestPaths = [
    "tests/test_units.py"
    "tests/test_nix.py"
  ];
  preCheck = ''
    export HOME="$TMPDIR"
  '';

  # units/ is the single source of the systemd units: install every unit in
  # it, with ExecStart pointing into the store. tests/test_nix.py runs the
  # lines between the markers against units/ and compares the result.
  redisServer = lib.getExe' redis "redis-server";
  postInstall = ''
    # units:begin
    install -Dm644 -t "$out/lib/systemd/system" \
      units/*.service units/*.socket units/*.timer units/*.slice
    install -Dm644 -t "$out/lib/sysusers.d" units/sysusers.d/*.conf
    install -Dm644 units/redis/wabscan-redis.conf "$out/share/wabscan/redis.conf"
    for unit in "$out"/lib/systemd/system/*; do
      substituteInPlace "$unit" \
        --replace-quiet /usr/bin/wabscan "$out/bin/wabscan" \
        --replace-quiet /usr/bin/redis-server "$redisServer"
    done
    # units:end
  '';

  pythonImportsCheck = [ "wabscan" ];

  passthru = {
    inherit python redis;
  };

  meta = {
    description = "Self-hosted link scanner for WhatsApp groups";
    license = lib.licenses.mit;
    mainProgram = "wabscan";
    platforms = [
      "x86_64-linux"
      "aarch64-linux"
    ];
  };
}
