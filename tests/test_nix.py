"""Checks of the Nix files that run without the Nix binary cache.

Nothing here can build: nixpkgs and the binary cache are out of reach on the
development machines. What can be checked is checked:

- every .nix file parses (``nix-instantiate --parse``, Debian's nix-bin);
- the hashes in nix/ are those of the files PyPI serves (pip downloads them;
  skipped when PyPI cannot be reached, never faked from a stored list);
- the install lines of nix/package.nix, run as they are, install exactly the
  unit files in units/ with ExecStart pointing into the store;
- the NixOS module evaluates with the real nixpkgs library (options, types,
  assertions and the drop-ins it produces) when a checkout of
  nix-community/nixpkgs.lib is at hand: $NIXPKGS_LIB (a directory holding
  lib/), or the search tool's mirror of it on this workplace; skipped when
  neither is there (it is third-party code and is never committed);
- every option of the module is named in docs/nixos.md.

Run ``python tests/test_nix.py --print-hashes`` to print the SRI hashes of
the pinned PyPI files when updating nix/.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NIX_FILES = sorted([ROOT / "flake.nix", *(ROOT / "nix").glob("*.nix")])
UNIT_SUFFIXES = (".service", ".socket", ".timer", ".slice")
DOCS = ROOT / "docs" / "nixos.md"
LIB_MIRROR = Path("/work/.mirror/nix-community+nixpkgs.lib/repo")


# --- PyPI files pinned in nix/ -------------------------------------------------


def pinned_pypi_files() -> list[tuple[str, str, str]]:
    """(file name PyPI serves, pip arguments, SRI hash in nix/) for each pin."""
    neonize = (ROOT / "nix" / "neonize.nix").read_text()
    version = re.search(r'^\s*version = "([^"]+)";', neonize, re.M)
    assert version, "nix/neonize.nix: no version"
    files = []
    for platform, sri in re.findall(
        r'platform = "([^"]+)";\s*hash = "(sha256-[^"]+)";', neonize
    ):
        name = f"neonize-{version[1]}-py310-none-{platform}.whl"
        args = f"--only-binary=:all: --platform {platform} neonize=={version[1]}"
        files.append((name, args, sri))
    assert len(files) == 2, "nix/neonize.nix: expected a wheel per platform"

    python = (ROOT / "nix" / "python.nix").read_text()
    for pname, version_, sri in re.findall(
        r'fetchPypi \{\s*pname = "([^"]+)";\s*version = "([^"]+)";\s*'
        r'hash = "(sha256-[^"]+)";',
        python,
    ):
        files.append(
            (
                f"{pname}-{version_}.tar.gz",
                f"--no-binary=:all: {pname}=={version_}",
                sri,
            )
        )
    linkpreview = re.search(
        r'pname = "linkpreview";\s*version = "([^"]+)";.*?hash = "(sha256-[^"]+)";',
        python,
        re.S,
    )
    assert linkpreview, "nix/python.nix: no linkpreview pin"
    version_, sri = linkpreview.groups()
    files.append(
        (
            f"linkpreview-{version_}.tar.gz",
            f"--no-binary=:all: linkpreview=={version_}",
            sri,
        )
    )
    return files


def sri_sha256(path: Path) -> str:
    return (
        "sha256-"
        + base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode()
    )


def pip_download(args: str, destination: Path) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        # A wheel tagged py310 fits any Python from 3.10 on.
        "--python-version",
        "3.13",
        "--dest",
        str(destination),
        *args.split(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def pypi_reachable() -> bool:
    command = [sys.executable, "-m", "pip", "index", "versions", "neonize"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


# --- Tests -------------------------------------------------------------------------


@pytest.mark.parametrize("path", NIX_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_nix_file_parses(path: Path) -> None:
    nix_instantiate = shutil.which("nix-instantiate")
    if nix_instantiate is None:
        pytest.skip("nix-instantiate is not installed (Debian package nix-bin)")
    result = subprocess.run(
        [nix_instantiate, "--parse", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_hashes_match_the_files_pypi_serves(tmp_path: Path) -> None:
    if not pypi_reachable():
        pytest.skip("PyPI cannot be reached")
    for name, args, sri in pinned_pypi_files():
        destination = tmp_path / name
        result = pip_download(args, destination)
        assert result.returncode == 0, f"{name}: {result.stderr}"
        downloaded = sorted(destination.iterdir())
        # The name fetchPypi builds its URL from is the file PyPI serves.
        assert [p.name for p in downloaded] == [name], downloaded
        assert sri_sha256(downloaded[0]) == sri, f"{name}: hash in nix/ is stale"


def test_package_installs_exactly_the_units(tmp_path: Path) -> None:
    package = (ROOT / "nix" / "package.nix").read_text()
    snippet = re.search(r"# units:begin\n(.*?)# units:end", package, re.S)
    assert snippet, "nix/package.nix: no '# units:begin' ... '# units:end' lines"
    assert "${" not in snippet[1], "the install lines must not need Nix to expand"

    out = tmp_path / "out"
    redis_server = "/nix/store/00000000000000000000000000000000-redis/bin/redis-server"
    # substituteInPlace as nixpkgs' stdenv defines it, for --replace-quiet.
    substitute = f"""
substituteInPlace() {{
    local file="$1"; shift
    while [ $# -gt 0 ]; do
        [ "$1" = --replace-quiet ] || {{ echo "unsupported: $1" >&2; return 1; }}
        {sys.executable} -c 'import pathlib, sys
p = pathlib.Path(sys.argv[1])
p.write_text(p.read_text().replace(sys.argv[2], sys.argv[3]))' "$file" "$2" "$3"
        shift 3
    done
}}
set -euo pipefail
"""
    result = subprocess.run(
        ["bash", "-c", substitute + snippet[1]],
        cwd=ROOT,
        env={**os.environ, "out": str(out), "redisServer": redis_server},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr

    installed = sorted(p.name for p in (out / "lib/systemd/system").iterdir())
    expected = sorted(
        p.name for p in (ROOT / "units").iterdir() if p.suffix in UNIT_SUFFIXES
    )
    assert installed == expected
    # units/ holds nothing else that the package would silently leave out.
    others = {
        p.name
        for p in (ROOT / "units").iterdir()
        if p.is_file() and p.suffix not in UNIT_SUFFIXES
    }
    assert others == set(), others

    for name in installed:
        text = (out / "lib/systemd/system" / name).read_text()
        assert "/usr/bin/" not in text, name
        for line in text.splitlines():
            if line.startswith("ExecStart=/usr") or line.startswith("ExecStart=/nix"):
                executable = line.removeprefix("ExecStart=").split()[0]
                assert executable in (f"{out}/bin/wabscan", redis_server), line
    assert (out / "lib/sysusers.d/wabscan.conf").is_file()
    assert (out / "share/wabscan/redis.conf").read_text() == (
        ROOT / "units/redis/wabscan-redis.conf"
    ).read_text()


def test_flake_pins_a_stable_release_branch() -> None:
    flake = (ROOT / "flake.nix").read_text()
    inputs = re.findall(r'inputs\.(\w+)\.url = "([^"]+)";', flake)
    assert inputs and all(name == "nixpkgs" for name, _ in inputs), inputs
    assert re.fullmatch(r"github:NixOS/nixpkgs/nixos-\d\d\.(05|11)", inputs[0][1])


# --- The module, evaluated with the nixpkgs library --------------------------------

EVAL_NIX = r"""
{ libRoot, module, extra }:
let
  lib = import (libRoot + "/lib");
  fakeDrv =
    name: attrs:
    {
      type = "derivation";
      inherit name;
      outPath = "/nix/store/00000000000000000000000000000000-${name}";
    }
    // attrs;
  # Only what nix/module.nix takes from pkgs.
  pkgs = {
    formats.toml = { }: {
      type = lib.types.attrsOf lib.types.anything;
      generate = name: value: fakeDrv name { inherit value; };
    };
    writeText = name: text: fakeDrv name { inherit text; };
    writeShellApplication = args: fakeDrv args.name { inherit (args) text; };
    coreutils = fakeDrv "coreutils" { };
  };
  # Stub declarations of the NixOS options the module sets; their real
  # definitions are in nixpkgs' nixos/modules, which is not at hand.
  stubs =
    { lib, ... }:
    {
      options =
        lib.genAttrs [ "users" "environment" "boot" "networking" "systemd" ] (
          _:
          lib.mkOption {
            type = lib.types.attrsOf lib.types.anything;
            default = { };
          }
        )
        // {
          assertions = lib.mkOption {
            type = lib.types.listOf lib.types.unspecified;
            default = [ ];
          };
          warnings = lib.mkOption {
            type = lib.types.listOf lib.types.str;
            default = [ ];
          };
        };
      config = {
        _module.args.pkgs = pkgs;
        systemd.package = fakeDrv "systemd" { };
        services.wabscan.enable = true;
        services.wabscan.package = fakeDrv "wabscan" { meta.mainProgram = "wabscan"; };
      };
    };
  eval = lib.evalModules {
    modules = [
      stubs
      module
      (builtins.fromJSON extra)
    ];
  };
  inherit (eval) config options;
in
{
  failed = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
  toml = config.environment.etc."wabscan/wabscan.toml".source.value;
  redisConf = config.environment.etc."wabscan/redis.conf".source.text;
  login = (lib.last config.environment.systemPackages).text;
  inherit (config.systemd) services sockets slices timers;
  firewall = config.networking.firewall or { };
  sysctl = config.boot.kernel.sysctl;
  users = config.users;
  options = map (o: o.name) (lib.optionAttrSetToDocList options.services.wabscan);
}
"""


@pytest.fixture(scope="module")
def nixpkgs_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("nix-instantiate") is None:
        pytest.skip("nix-instantiate is not installed (Debian package nix-bin)")
    given = os.environ.get("NIXPKGS_LIB")
    if given:
        assert (Path(given) / "lib" / "default.nix").is_file(), given
        return Path(given)
    if not (LIB_MIRROR / "HEAD").is_file() or shutil.which("git") is None:
        pytest.skip("no nixpkgs.lib checkout: set NIXPKGS_LIB to one")
    root = tmp_path_factory.mktemp("nixpkgs-lib")
    archive = subprocess.run(
        ["git", f"--git-dir={LIB_MIRROR}", "archive", "HEAD", "lib"],
        capture_output=True,
        check=True,
        timeout=120,
    )
    (root / "lib.tar").write_bytes(archive.stdout)
    with tarfile.open(root / "lib.tar") as tar:
        tar.extractall(root, filter="data")
    return root


def evaluate(lib_root: Path, tmp_path: Path, extra: dict[str, object]) -> dict:
    expression = tmp_path / "eval.nix"
    expression.write_text(EVAL_NIX)
    result = subprocess.run(
        [
            "nix-instantiate",
            "--eval",
            "--strict",
            "--json",
            str(expression),
            "--arg",
            "libRoot",
            str(lib_root),
            "--arg",
            "module",
            str(ROOT / "nix" / "module.nix"),
            "--argstr",
            "extra",
            json.dumps(extra),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def module_options(lib_root: Path, tmp_path: Path) -> list[str]:
    names = evaluate(lib_root, tmp_path, {})["options"]
    return [name for name in names if "._module." not in name]


def test_module_defaults_pass_their_assertions(
    nixpkgs_lib: Path, tmp_path: Path
) -> None:
    result = evaluate(nixpkgs_lib, tmp_path, {})
    assert result["failed"] == []

    services = result["services"]
    for name in ("bridge", "scanner", "reporter", "redis"):
        unit = services[f"wabscan-{name}"]
        assert unit["wantedBy"] == ["multi-user.target"], name
        assert unit["serviceConfig"]["MemoryMax"].endswith("M"), name
    for name in ("bridge", "scanner", "reporter"):
        assert result["sockets"][f"wabscan-{name}"]["wantedBy"] == ["sockets.target"]
    assert result["timers"]["wabscan-maintenance"]["wantedBy"] == ["timers.target"]
    assert result["slices"]["wabscan"]["sliceConfig"] == {
        "MemoryHigh": "200M",
        "MemoryMax": "256M",
    }

    # Drop-ins replace, not add to, the packaged credentials and listener.
    reporter = services["wabscan-reporter"]["serviceConfig"]["LoadCredential"]
    assert reporter[0] == "" and any(c.startswith("control-token:") for c in reporter)
    listen = result["sockets"]["wabscan-reporter"]["socketConfig"]["ListenStream"]
    assert listen == ["", "127.0.0.1:9473"]

    # maxmemory derives from the Redis unit's MemoryMax (48 MiB).
    assert result["redisConf"].splitlines()[-1] == "maxmemory 24mb"
    assert result["toml"]["redis_url"] == "unix:///run/wabscan-redis/redis.sock"
    assert result["toml"]["bridge"]["transport"] == "whatsapp"
    assert result["users"]["users"]["wabscan"]["isSystemUser"] is True
    assert "login" in result["login"]


def test_module_settings_and_exposure(nixpkgs_lib: Path, tmp_path: Path) -> None:
    result = evaluate(
        nixpkgs_lib,
        tmp_path,
        {
            "services": {
                "wabscan": {
                    "settings": {
                        "bridge": {
                            "transport": "local",
                            "local_transport_dir": "/var/lib/wabscan/lt",
                            "scan_on_join": True,
                        },
                        "cache": {"ttl_benign": 60},
                    },
                    "memory": {"redis": {"max": 64}},
                    "controlApi": {
                        "listenAddress": "::",
                        "tokenFile": "/run/secrets/token",
                    },
                    "openFirewall": True,
                    "providerKeyFiles": {"virustotal": "/run/secrets/vt"},
                }
            }
        },
    )
    assert result["failed"] == []
    assert result["toml"]["bridge"]["scan_on_join"] is True
    assert result["toml"]["cache"] == {"ttl_benign": 60}
    assert result["redisConf"].splitlines()[-1] == "maxmemory 32mb"
    assert result["firewall"]["allowedTCPPorts"] == [9473]
    listen = result["sockets"]["wabscan-reporter"]["socketConfig"]["ListenStream"]
    assert listen == ["", "[::]:9473"]
    services = result["services"]
    assert (
        "control-token:/run/secrets/token"
        in (services["wabscan-reporter"]["serviceConfig"]["LoadCredential"])
    )
    assert (
        "provider-virustotal:/run/secrets/vt"
        in (services["wabscan-scanner"]["serviceConfig"]["LoadCredential"])
    )
    assert services["wabscan-bridge"]["serviceConfig"]["ReadWritePaths"] == [
        "-/var/lib/wabscan/lt"
    ]


@pytest.mark.parametrize(
    ("settings", "option"),
    [
        ({"settings": {"bridge": {"transport": "local"}}}, "local_transport_dir"),
        ({"redis": {"maxmemory": 40}}, "services.wabscan.redis.maxmemory"),
        ({"memory": {"bridge": {"high": 200, "max": 250}}}, "slice.max"),
        ({"memory": {"scanner": {"high": 90, "max": 90}}}, "memory.scanner.high"),
        ({"memory": {"bridge": {"high": 60, "max": 80}}}, "memory.bridge.max"),
        ({"openFirewall": True}, "services.wabscan.controlApi.listenAddress"),
    ],
)
def test_module_assertions_name_the_option(
    nixpkgs_lib: Path, tmp_path: Path, settings: dict[str, object], option: str
) -> None:
    result = evaluate(nixpkgs_lib, tmp_path, {"services": {"wabscan": settings}})
    assert result["failed"], "expected a failed assertion"
    assert any(option in message for message in result["failed"]), result["failed"]


def test_every_module_option_is_documented(nixpkgs_lib: Path, tmp_path: Path) -> None:
    docs = DOCS.read_text()
    missing = [
        name
        for name in module_options(nixpkgs_lib, tmp_path)
        if f"`{name}`" not in docs
    ]
    assert missing == [], f"not in docs/nixos.md: {missing}"


def test_every_option_leaf_is_documented_without_nixpkgs_lib() -> None:
    # The weaker check that runs everywhere: each declared option's last
    # name appears in docs/nixos.md at the end of a services.wabscan path.
    module = (ROOT / "nix" / "module.nix").read_text()
    declared = re.findall(
        r"^\s*(?:options\.)?([A-Za-z_.]+) =\s*(?:mkOption|mkEnableOption|memoryOption)",
        module,
        re.M,
    )
    leaves = {name.split(".")[-1] for name in declared}
    paths = re.findall(r"`(services\.wabscan\.[\w.<>]+)`", DOCS.read_text())
    documented = {path.split(".")[-1] for path in paths}
    assert leaves, "no options found in nix/module.nix"
    assert leaves <= documented, f"not in docs/nixos.md: {sorted(leaves - documented)}"


def main() -> None:
    """Print the SRI hashes of the PyPI files pinned in nix/."""
    import tempfile

    if sys.argv[1:] != ["--print-hashes"]:
        sys.exit("usage: python tests/test_nix.py --print-hashes")
    with tempfile.TemporaryDirectory() as scratch:
        for name, args, pinned in pinned_pypi_files():
            destination = Path(scratch) / name
            result = pip_download(args, destination)
            if result.returncode != 0:
                sys.exit(f"{name}: {result.stderr.strip()}")
            for path in sorted(destination.iterdir()):
                state = "ok" if sri_sha256(path) == pinned else "CHANGED"
                print(f"{path.name}  {sri_sha256(path)}  ({state} in nix/)")


if __name__ == "__main__":
    main()
