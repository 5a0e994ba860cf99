"""The systemd units in units/: systemd's own verifier, then wabscan's rules.

``systemd-analyze verify`` runs offline but exits 0 on unknown keys and bad
values (FIELD-NOTES), so the test fails on any line it prints. The units name
``/usr/bin/wabscan`` and ``/usr/bin/redis-server``, which a development
machine may lack; the copies given to the verifier point those at an
executable that exists, and nothing else changes.

The memory rule, checked on the unit files as the NixOS module asserts it on
its options:

- every unit's MemoryHigh is below its MemoryMax;
- no unit's MemoryMax exceeds the slice's MemoryMax;
- the MemoryHigh of the long-running units (bridge, scanner, reporter,
  Redis) together fit within the slice's MemoryMax, so all of them can sit at
  their own goal at once (their MemoryMax may add up to more: the slice is
  the hard cap of the whole appliance);
- Redis's ``maxmemory`` is at most 3/4 of its unit's MemoryMax (an AOF
  rewrite forks inside the same cgroup).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis

UNITS = Path(__file__).resolve().parents[1] / "units"
UNIT_SUFFIXES = (".service", ".socket", ".timer", ".slice")
TRIO = ("bridge", "scanner", "reporter")
LONG_RUNNING = (*TRIO, "redis")
PORTS = {"bridge": 9471, "scanner": 9472, "reporter": 9473}
SECTION_ORDER = ("Unit", "Service", "Socket", "Timer", "Slice", "Install")

Unit = dict[str, dict[str, list[str]]]


def unit_files() -> list[Path]:
    return sorted(p for p in UNITS.iterdir() if p.suffix in UNIT_SUFFIXES)


def parse_unit(path: Path) -> Unit:
    """Sections of a unit file, each key with every value it was given."""
    sections: Unit = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            name = line[1:-1]
            assert name not in sections, f"{path.name}:{number}: [{name}] twice"
            current = sections.setdefault(name, {})
            continue
        assert current is not None, f"{path.name}:{number}: key before a section"
        assert not raw.endswith("\\"), f"{path.name}:{number}: one directive a line"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def value(unit: Unit, section: str, key: str) -> str:
    values = unit.get(section, {}).get(key)
    assert values, f"[{section}] {key}= is missing"
    return values[-1]


def size(text: str) -> int:
    """Bytes in a systemd size (100M) or a Redis size (24mb, 24m)."""
    match = re.fullmatch(r"(\d+)\s*([kmgKMG]?)([bB]?)", text.strip())
    assert match, f"not a size: {text!r}"
    number, unit, b = match.groups()
    power = {"": 0, "k": 1, "m": 2, "g": 3}[unit.lower()]
    # systemd's K/M/G and Redis's kb/mb/gb are powers of 1024; Redis's bare
    # k/m/g are powers of 1000.
    base = 1000 if (unit and not b and unit.islower()) else 1024
    return int(number) * base**power


def seconds(text: str) -> float:
    """Seconds in a systemd time span such as 20s, 1min 30s or 2h."""
    factors = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "ms": 0.001}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text):
        total += float(number) * factors[unit]
    return total


@pytest.fixture(scope="module")
def units() -> dict[str, Unit]:
    return {path.name: parse_unit(path) for path in unit_files()}


@pytest.fixture(scope="module")
def redis_conf() -> dict[str, str]:
    settings: dict[str, str] = {}
    for line in (UNITS / "redis" / "wabscan-redis.conf").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, rest = line.partition(" ")
            settings[key.lower()] = rest.strip()
    return settings


def test_systemd_analyze_verify_prints_nothing(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    stand_in = shutil.which("true") or "/bin/true"

    copies = []
    for path in unit_files():
        text = path.read_text()
        for executable in sorted(
            set(re.findall(r"^Exec\w+=[-+!@:]*(/\S+)", text, re.M))
        ):
            if not os.access(executable, os.X_OK):
                text = text.replace(executable, stand_in)
        copy = tmp_path / path.name
        copy.write_text(text)
        copies.append(str(copy))

    # The trailing colon keeps the default search path after the copies, for
    # sockets.target, network-online.target and the like.
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:"}
    result = subprocess.run(
        [analyze, "verify", "--man=no", *copies],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and output == "", output


def test_sections_in_the_usual_order(units: dict[str, Unit]) -> None:
    for name, unit in units.items():
        order = [SECTION_ORDER.index(section) for section in unit]
        assert order == sorted(order), f"{name}: sections {list(unit)}"
        assert "Unit" in unit and "Description" in unit["Unit"], name


@pytest.mark.parametrize("service", TRIO)
def test_trio_services_are_supervised(units: dict[str, Unit], service: str) -> None:
    unit = units[f"wabscan-{service}.service"]
    assert value(unit, "Service", "Type") == "notify"
    assert value(unit, "Service", "NotifyAccess") == "main"
    assert seconds(value(unit, "Service", "WatchdogSec")) > 0
    assert value(unit, "Service", "Restart") == "on-failure"
    assert seconds(value(unit, "Service", "TimeoutStopSec")) > 0
    assert value(unit, "Service", "ExecStart") == f"/usr/bin/wabscan {service}"
    assert value(unit, "Service", "Slice") == "wabscan.slice"
    assert value(unit, "Service", "StateDirectory") == "wabscan"
    assert value(unit, "Service", "User") == "wabscan"
    assert value(unit, "Install", "WantedBy") == "multi-user.target"

    requires = " ".join(unit["Unit"].get("Requires", [])).split()
    wants = " ".join(unit["Unit"].get("Wants", [])).split()
    after = " ".join(unit["Unit"].get("After", [])).split()
    for dependency in (f"wabscan-{service}.socket", "wabscan-redis.service"):
        assert dependency in after, dependency
    assert f"wabscan-{service}.socket" in requires
    # Redis is wanted, not required: its restart must not restart the unit.
    assert "wabscan-redis.service" in wants
    assert "wabscan-redis.service" not in requires

    credentials = unit["Service"].get("LoadCredential", [])
    assert any(c.startswith("author-key:") for c in credentials)


@pytest.mark.parametrize("service", TRIO)
def test_each_service_has_its_socket(units: dict[str, Unit], service: str) -> None:
    socket = units[f"wabscan-{service}.socket"]
    assert value(socket, "Socket", "ListenStream") == f"127.0.0.1:{PORTS[service]}"
    assert value(socket, "Socket", "FileDescriptorName") == "http"
    assert value(socket, "Install", "WantedBy") == "sockets.target"


def test_only_the_reporter_reads_the_control_token(units: dict[str, Unit]) -> None:
    for name, unit in units.items():
        credentials = unit.get("Service", {}).get("LoadCredential", [])
        has_token = any(c.startswith("control-token:") for c in credentials)
        assert has_token == (name == "wabscan-reporter.service"), name


def test_hardening(units: dict[str, Unit]) -> None:
    for service in (*TRIO, "redis", "maintenance"):
        unit = units[f"wabscan-{service}.service"]["Service"]
        for key, expected in {
            "NoNewPrivileges": "yes",
            "ProtectSystem": "strict",
            "ProtectHome": "yes",
            "PrivateTmp": "yes",
            "PrivateDevices": "yes",
            "LockPersonality": "yes",
            "SystemCallFilter": "@system-service",
        }.items():
            assert unit.get(key, [None])[-1] == expected, (service, key)
        families = set(unit["RestrictAddressFamilies"][-1].split())
        assert families <= {"AF_UNIX", "AF_INET", "AF_INET6"}, service
        assert "AF_UNIX" in families, service
        # Never an address-space limit: neonize's Go runtime reserves ~1.8 GB.
        assert "LimitAS" not in unit, service

    # Only what opens connections gets IP families.
    assert units["wabscan-reporter.service"]["Service"]["RestrictAddressFamilies"] == [
        "AF_UNIX"
    ]
    assert units["wabscan-redis.service"]["Service"]["RestrictAddressFamilies"] == [
        "AF_UNIX"
    ]
    # The Go runtime and ctypes callbacks may need W+X pages in the bridge.
    bridge = units["wabscan-bridge.service"]["Service"]
    assert bridge.get("MemoryDenyWriteExecute", ["no"])[-1] != "yes"
    for service in ("scanner", "reporter", "redis"):
        unit = units[f"wabscan-{service}.service"]["Service"]
        assert unit["MemoryDenyWriteExecute"] == ["yes"], service


def test_bridge_may_take_its_time_to_stop(units: dict[str, Unit]) -> None:
    # neonize's stop() can block about 8 s while a dial hangs.
    bridge = units["wabscan-bridge.service"]
    assert seconds(value(bridge, "Service", "TimeoutStopSec")) >= 15


def test_memory_fits_the_slice(units: dict[str, Unit]) -> None:
    slice_ = units["wabscan.slice"]
    slice_high = size(value(slice_, "Slice", "MemoryHigh"))
    slice_max = size(value(slice_, "Slice", "MemoryMax"))
    assert slice_high <= slice_max

    services = [
        n
        for n in units
        if n.endswith(".service") and "Slice" in units[n].get("Service", {})
    ]
    for name in services:
        unit = units[name]
        assert value(unit, "Service", "Slice") == "wabscan.slice", name
        high = size(value(unit, "Service", "MemoryHigh"))
        maximum = size(value(unit, "Service", "MemoryMax"))
        assert high < maximum, name
        assert maximum <= slice_max, name

    goals = sum(
        size(value(units[f"wabscan-{name}.service"], "Service", "MemoryHigh"))
        for name in LONG_RUNNING
    )
    assert goals <= slice_max, f"MemoryHigh sum {goals} > slice MemoryMax {slice_max}"


def test_redis_is_tuned_for_streams(
    units: dict[str, Unit], redis_conf: dict[str, str]
) -> None:
    unit = units["wabscan-redis.service"]
    # Only keys with a TTL (the verdict cache) may be evicted, never a stream.
    assert redis_conf["maxmemory-policy"] == "volatile-lru"
    assert redis_conf["appendonly"] == "yes"
    assert redis_conf["appendfsync"] == "everysec"
    assert redis_conf["port"] == "0"
    assert redis_conf["supervised"] == "systemd"
    assert value(unit, "Service", "Type") == "notify"

    # The socket the services are told about (the default redis_url) lives in
    # the unit's runtime directory.
    socket = Path(redis_conf["unixsocket"])
    assert socket == Path("/run/wabscan-redis/redis.sock")
    assert value(unit, "Service", "RuntimeDirectory") == socket.parent.name
    assert redis_conf["dir"] == f"/var/lib/{value(unit, 'Service', 'StateDirectory')}"

    maxmemory = size(redis_conf["maxmemory"])
    memory_max = size(value(unit, "Service", "MemoryMax"))
    assert maxmemory * 4 <= memory_max * 3, (maxmemory, memory_max)
    assert '--logfile ""' in value(unit, "Service", "ExecStart")
    # Logged through syslog with levels; the unlevelled stdout copy dropped,
    # stderr (fatal configuration errors) kept.
    assert redis_conf["syslog-enabled"] == "yes"
    assert value(unit, "Service", "StandardOutput") == "null"
    assert value(unit, "Service", "StandardError") == "journal"


def test_redis_accepts_its_configuration_file() -> None:
    """The real redis-server reads units/redis/wabscan-redis.conf: a setting
    it does not know, or a value it refuses, stops the appliance's Redis
    from starting at all."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed: run ./scripts/bootstrap")
    conf = UNITS / "redis" / "wabscan-redis.conf"
    # Started with the file, a throwaway dir and socket: it serves, or exits
    # naming the line it refused.
    with tempfile.TemporaryDirectory(prefix="wabscan-conf-", dir="/tmp") as tmp:
        sock = Path(tmp) / "redis.sock"
        # Redis changes into `dir` as it reads the file, before any override
        # on the command line: the copy names the throwaway one.
        text = conf.read_text(encoding="utf-8")
        copy = Path(tmp) / conf.name
        copy.write_text(
            text.replace("\ndir /var/lib/wabscan-redis\n", f"\ndir {tmp}\n")
        )
        assert copy.read_text() != text
        argv = [server, str(copy), "--unixsocket", str(sock)]
        argv += ["--supervised", "no", "--syslog-enabled", "no", "--logfile", ""]
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            deadline = time.monotonic() + 10
            while not sock.exists():
                if process.poll() is not None:
                    pytest.fail(
                        f"redis-server refused {conf.name}:\n{process.stdout.read()}"
                    )  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
            client = redis.Redis(unix_socket_path=str(sock), decode_responses=True)
            assert client.config_get("maxmemory-policy") == {
                "maxmemory-policy": "volatile-lru"
            }
            client.close()
        finally:
            process.terminate()
            process.wait(10)


def test_maintenance_runs_from_its_timer(units: dict[str, Unit]) -> None:
    service = units["wabscan-maintenance.service"]
    timer = units["wabscan-maintenance.timer"]
    assert value(service, "Service", "Type") == "oneshot"
    assert value(service, "Service", "ExecStart") == "/usr/bin/wabscan maintenance"
    assert "Install" not in service  # started by the timer only
    assert value(timer, "Timer", "OnCalendar")
    assert value(timer, "Timer", "Persistent") == "true"
    assert value(timer, "Install", "WantedBy") == "timers.target"


def test_sysusers_declares_the_service_user(units: dict[str, Unit]) -> None:
    users = {
        line.split()[1]
        for line in (UNITS / "sysusers.d" / "wabscan.conf").read_text().splitlines()
        if line.startswith("u ")
    }
    named = {
        unit["Service"]["User"][-1]
        for unit in units.values()
        if "User" in unit.get("Service", {})
    }
    assert named == users == {"wabscan"}


def test_size_and_time_parsers() -> None:
    assert size("100M") == 100 * 2**20
    assert size("24mb") == 24 * 2**20
    assert size("24m") == 24 * 10**6
    assert seconds("1min 30s") == 90
    assert seconds("20s") == 20
