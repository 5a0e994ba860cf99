"""The memory limits under cgroup v2: the appliance booted in a QEMU VM.

The nspawn suite (test_appliance.py) runs on this host's cgroup v1 memory
controller, where a memory kill is only a ``signal`` and ``MemoryHigh=`` does
nothing. ``scripts/appliance-qemu`` boots the same root as a virtual machine
(software emulation, cgroup v2) and, in that one boot, runs the shell checks
below inside it as root, one after the other. Each check prints ``key=value``
lines, which come back on the machine's second serial port; the tests here
only read those answers. What each proves is in docs/appliance-qemu.md.

Runs only when asked by name: ``pytest -m appliance_qemu`` (``make
test-appliance-qemu``) or ``WABSCAN_APPLIANCE_QEMU=1``. Skips, with the
reason, when not root or when the script says it cannot build here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.appliance import conftest
from tests.appliance.conftest import CANNOT_BUILD, REPO, UNITS
from tests.test_units import parse_unit, size, value

SCRIPT = REPO / "scripts" / "appliance-qemu"
MARK = "appliance_qemu"
ASKED = os.environ.get("WABSCAN_APPLIANCE_QEMU") == "1"
NOT_REQUESTED = (
    "the QEMU memory checks run only when asked: pytest -m appliance_qemu "
    "(or WABSCAN_APPLIANCE_QEMU=1); see docs/appliance-qemu.md"
)

# One line in the summary instead of one per test. conftest.REQUESTED holds
# for any -m naming an appliance marker; the fixture below narrows it to this
# one, so that the nspawn suite's `-m appliance` never boots a VM.
if not (conftest.REQUESTED or ASKED):
    pytest.skip(NOT_REQUESTED, allow_module_level=True)
if os.geteuid() != 0:
    pytest.skip("the QEMU memory checks need root", allow_module_level=True)

pytestmark = pytest.mark.appliance_qemu

SLICE = "wabscan.slice"
SCANNER = "wabscan-scanner.service"
REDIS = "wabscan-redis.service"
OTHERS = tuple(unit for unit in UNITS if unit != SCANNER)

# -- the checks, run inside the machine ---------------------------------------

PRELUDE = """\
#!/bin/sh
set -u
cgroup() { echo "/sys/fs/cgroup$(systemctl show -P ControlGroup "$1")"; }
healthz() {
    curl -s -o /dev/null -m 5 -w '%{http_code}' "http://127.0.0.1:$1/healthz"
}
# The status of /healthz once it is 200, or after two minutes of trying:
# under emulation a service that said READY=1 can still answer "starting".
settled_healthz() {
    tries=0
    until [ "$(healthz $1)" = 200 ] || [ $tries -ge 120 ]; do
        tries=$((tries + 1))
        sleep 1
    done
    healthz $1
}
"""

CHECKS = {
    # Every service answers /healthz, and no unit failed during boot.
    "10-ready": """
for port in 9471 9472 9473; do
    echo "healthz.$port=$(settled_healthz $port)"
done
systemctl list-units --failed --plain --no-legend | sed 's/^/failed=/'
""",
    # The memory limits as systemd set them and as the kernel holds them.
    "20-cgroup": """
echo "fstype=$(stat -fc %T /sys/fs/cgroup)"
for unit in wabscan.slice wabscan-bridge.service wabscan-scanner.service \\
        wabscan-reporter.service wabscan-redis.service; do
    dir=$(cgroup $unit)
    echo "$unit.MemoryMax=$(systemctl show -P MemoryMax $unit)"
    echo "$unit.MemoryHigh=$(systemctl show -P MemoryHigh $unit)"
    echo "$unit.memory.max=$(cat $dir/memory.max)"
    echo "$unit.memory.high=$(cat $dir/memory.high)"
done
""",
    # The scanner past its MemoryMax: a runtime drop-in with less than it
    # needs to start (about 35 MB resident), and no MemoryHigh, so that it is
    # killed rather than held throttled below the limit (FIELD-NOTES). The
    # result shows only between the kill and the restart (RestartSec=5s), so
    # it is watched; the journal keeps it.
    "30-oom-kill": """
unit=wabscan-scanner.service
for other in wabscan-bridge.service wabscan-reporter.service wabscan-redis.service
do
    echo "pid_before.$other=$(systemctl show -P MainPID $other)"
done
restarts=$(systemctl show -P NRestarts $unit)
since=$(date '+%Y-%m-%d %H:%M:%S')
mkdir -p /run/systemd/system/$unit.d
printf '[Service]\\nMemoryMax=20M\\nMemoryHigh=infinity\\n' \\
    >/run/systemd/system/$unit.d/50-test-memory.conf
systemctl daemon-reload
systemctl restart --no-block $unit
deadline=$(($(date +%s) + 300))
last=""
oom=no
while [ "$(date +%s)" -lt $deadline ]; do
    result=$(systemctl show -P Result $unit)
    [ "$result" = "$last" ] || echo "result=$result"
    last=$result
    [ "$result" != oom-kill ] || oom=yes
    now=$(systemctl show -P NRestarts $unit)
    [ $oom = no ] || [ $((now - restarts)) -lt 2 ] || break
    sleep 0.5
done
echo "restarts=$(($(systemctl show -P NRestarts $unit) - restarts))"
journalctl -q -u $unit --since "$since" -o cat | sed 's/^/journal=/'
journalctl -q -k --since "$since" -o cat | grep -i -e oom -e 'out of memory' \\
    | sed 's/^/kernel=/'
for other in wabscan-bridge.service wabscan-reporter.service wabscan-redis.service
do
    echo "pid_after.$other=$(systemctl show -P MainPID $other)"
done
rm -f /run/systemd/system/$unit.d/50-test-memory.conf
systemctl daemon-reload
timeout 180 systemctl restart $unit
echo "recovered=$(systemctl show -P ActiveState $unit)"
echo "healthz=$(settled_healthz 9472)"
""",
    # Redis with MemoryHigh just above what its cgroup holds, then 2 MB of
    # writes: past the boundary every charge counts in memory.events' `high`
    # and the kernel makes the writer reclaim and wait; MemoryMax stays 48M,
    # so nothing is killed. With no swap Redis' own memory cannot be
    # reclaimed, so it would stay throttled (each reply slowed for good):
    # the boundary goes back to the unit's MemoryHigh before anything else.
    # Every redis-cli call is bounded. Last check: the machine powers off.
    "40-memory-high": """
unit=wabscan-redis.service
cli() { timeout 60 redis-cli -s /run/wabscan-redis/redis.sock "$@"; }
dir=$(cgroup $unit)
event() { sed -n "s/^$1 //p" $dir/memory.events; }
own_high=$(systemctl show -P MemoryHigh $unit)
echo "pid_before=$(systemctl show -P MainPID $unit)"
echo "restarts_before=$(systemctl show -P NRestarts $unit)"
current=$(cat $dir/memory.current)
echo "current_before=$current"
echo "high_before=$(event high)"
echo "oom_kill_before=$(event oom_kill)"
limit=$(((current + 262144) / 4096 * 4096))
echo "limit=$limit"
systemctl set-property --runtime $unit MemoryHigh=$limit
echo "memory.high=$(cat $dir/memory.high)"
echo "memory.max=$(cat $dir/memory.max)"
started=$(date +%s)
cli EVAL "
    for i = 1, tonumber(ARGV[1]) do
        redis.call('SET', 'wabscan-test:high:' .. i, string.rep('x', 4096))
    end
    return redis.call('DBSIZE')" 0 512 | sed 's/^/keys=/'
echo "write_seconds=$(($(date +%s) - started))"
echo "current_after=$(cat $dir/memory.current)"
echo "high_after=$(event high)"
echo "oom_kill_after=$(event oom_kill)"
systemctl set-property --runtime $unit MemoryHigh=$own_high
echo "memory.high_restored=$(cat $dir/memory.high)"
echo "pid_after=$(systemctl show -P MainPID $unit)"
echo "restarts_after=$(systemctl show -P NRestarts $unit)"
echo "state=$(systemctl show -P ActiveState $unit)"
echo "ping=$(cli PING)"
cli EVAL "for _, key in ipairs(redis.call('KEYS', 'wabscan-test:high:*')) do
    redis.call('DEL', key) end" 0 >/dev/null
""",
}


# -- the run --------------------------------------------------------------------


@dataclass
class Answer:
    """One check's exit status and its ``key=value`` lines."""

    rc: int
    output: str
    seconds: float

    def values(self, key: str) -> list[str]:
        prefix = f"{key}="
        return [
            line[len(prefix) :]
            for line in self.output.splitlines()
            if line.startswith(prefix)
        ]

    def __getitem__(self, key: str) -> str:
        found = self.values(key)
        assert len(found) == 1, f"{key}: {found!r} in\n{self.output}"
        return found[0]


def _named(config: pytest.Config) -> bool:
    markexpr = " ".join((config.getoption("markexpr", "") or "").split())
    return re.search(rf"(?<!not )\b{MARK}\b", markexpr) is not None


@pytest.fixture(scope="module")
def vm(request: pytest.FixtureRequest) -> Iterator[dict[str, Answer]]:
    """One boot of the machine running every check; their answers by name."""
    if not (ASKED or _named(request.config)):
        pytest.skip(NOT_REQUESTED)
    workdir = Path(tempfile.mkdtemp(prefix="wabscan-qemu-", dir="/var/tmp"))
    try:
        checks = workdir / "checks"
        checks.mkdir()
        for name, body in CHECKS.items():
            path = checks / name
            path.write_text(PRELUDE + body)
            path.chmod(0o755)
        started = time.monotonic()
        result = subprocess.run(
            [str(SCRIPT), "--checks", str(checks), str(workdir / "vm")],
            capture_output=True,
            text=True,
            timeout=3600,
        )
        conftest.TIMINGS["qemu_script_seconds"] = time.monotonic() - started
        if result.returncode == CANNOT_BUILD:
            pytest.skip(f"cannot boot the VM here: {result.stderr.strip()[-500:]}")
        if result.returncode != 0:
            pytest.fail(f"scripts/appliance-qemu failed:\n{result.stderr[-4000:]}")
        answers = _answers(workdir / "vm" / "results.jsonl")
        _record_timings(workdir / "vm" / "timings", answers)
        yield answers
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _answers(path: Path) -> dict[str, Answer]:
    answers = {}
    for line in path.read_text(errors="replace").splitlines():
        # The serial port may carry a stray byte at power-on; records are
        # whole lines of JSON.
        start = line.find("{")
        if start < 0:
            continue
        record = json.loads(line[start:])
        answers[record["check"]] = Answer(
            record["rc"], record["output"], record["seconds"]
        )
    return answers


def _record_timings(path: Path, answers: dict[str, Answer]) -> None:
    for line in path.read_text().splitlines():
        name, seconds = line.split()
        conftest.TIMINGS[f"qemu_{name}_seconds"] = float(seconds)
    for name in ("boot", *CHECKS):
        if name in answers:
            # For "boot", the machine's uptime when the system was running.
            conftest.TIMINGS[f"qemu_check_{name}_seconds"] = answers[name].seconds


def unit_setting(unit: str, key: str) -> int:
    """A memory setting of units/ in bytes, as systemd parses it."""
    section = "Slice" if unit.endswith(".slice") else "Service"
    return size(value(parse_unit(REPO / "units" / unit), section, key))


def check(answers: dict[str, Answer], name: str) -> Answer:
    assert name in answers, f"no answer from {name}: {sorted(answers)}"
    answer = answers[name]
    assert answer.rc == 0, f"{name} exited {answer.rc}:\n{answer.output}"
    return answer


# -- the tests ------------------------------------------------------------------


def test_the_appliance_boots_under_qemu_and_every_service_answers(
    vm: dict[str, Answer],
) -> None:
    boot = check(vm, "boot")
    assert boot.output == "running", f"system state {boot.output!r}"
    ready = check(vm, "10-ready")
    for port in (9471, 9472, 9473):
        assert ready[f"healthz.{port}"] == "200", ready.output
    assert ready.values("failed") == [], ready.output


def test_cgroup_v2_holds_each_units_memory_limits(vm: dict[str, Answer]) -> None:
    """The unified hierarchy, and each unit's MemoryMax= and MemoryHigh= of
    units/ are its cgroup's memory.max and memory.high."""
    answer = check(vm, "20-cgroup")
    assert answer["fstype"] == "cgroup2fs"
    for unit in (*UNITS, SLICE):
        limit = unit_setting(unit, "MemoryMax")
        assert answer[f"{unit}.MemoryMax"] == str(limit), unit
        assert answer[f"{unit}.memory.max"] == str(limit), unit
        high = unit_setting(unit, "MemoryHigh")
        assert answer[f"{unit}.memory.high"] == str(high), unit


def test_a_service_past_its_memory_max_is_oom_killed_and_restarted(
    vm: dict[str, Answer],
) -> None:
    """With MemoryMax=20M the scanner is killed by the kernel at its limit;
    cgroup v2's memory.events lets systemd name it: result 'oom-kill'. It is
    restarted, again and again, while the other units keep their processes;
    once the drop-in goes it comes back healthy."""
    answer = check(vm, "30-oom-kill")
    assert "oom-kill" in answer.values("result"), answer.output
    assert int(answer["restarts"]) >= 2, answer.output
    journal = answer.values("journal")
    assert any("Failed with result 'oom-kill'" in line for line in journal), journal
    # The kernel's own report names the cgroup whose limit was hit.
    kernel = "\n".join(answer.values("kernel"))
    memcg = r"oom_memcg=/wabscan\.slice/wabscan-scanner\.service"
    assert re.search(memcg, kernel), kernel
    for unit in OTHERS:
        before = answer[f"pid_before.{unit}"]
        assert before != "0", unit
        assert answer[f"pid_after.{unit}"] == before, f"{unit} changed its process"
    assert answer["recovered"] == "active", answer.output
    assert answer["healthz"] == "200", answer.output


def test_memory_high_throttles_without_killing(vm: dict[str, Answer]) -> None:
    """Redis given a MemoryHigh just above what it holds, then made to
    allocate past it: memory.events counts it over its boundary (`high`),
    and it stays the same process, never OOM-killed, and answers once its
    own MemoryHigh is back."""
    answer = check(vm, "40-memory-high")
    limit = int(answer["limit"])
    assert answer["memory.high"] == str(limit)
    assert answer["memory.max"] == str(unit_setting(REDIS, "MemoryMax"))
    assert answer["memory.high_restored"] == str(unit_setting(REDIS, "MemoryHigh"))
    assert int(answer["keys"]) >= 512, answer.output
    assert int(answer["high_after"]) > int(answer["high_before"]), answer.output
    assert answer["oom_kill_after"] == answer["oom_kill_before"], answer.output
    assert answer["pid_after"] == answer["pid_before"], answer.output
    assert answer["restarts_after"] == answer["restarts_before"], answer.output
    assert answer["state"] == "active", answer.output
    assert answer["ping"] == "PONG", answer.output
