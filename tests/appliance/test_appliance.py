"""The units under a real systemd (issue 4, item 1).

One booted appliance serves every test, in the order of this file; each test
leaves it healthy for the next, and the reboot comes last. Every group a test
plays in is its own, so each test's accounting sees only its own messages.
What each check proves is in docs/appliance-tests.md.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.appliance import conftest
from tests.appliance.conftest import PORTS, REPO, SERVICES, UNITS, Appliance
from tests.appliance.inside import BODY_WORD, EVIL, SENDER_PREFIX

# One line in the summary instead of one per test.
if not conftest.REQUESTED:
    pytest.skip(conftest.NOT_REQUESTED, allow_module_level=True)
if reason := conftest.skip_reason():
    pytest.skip(reason, allow_module_level=True)

pytestmark = pytest.mark.appliance

_groups = itertools.count(1)


# -- helpers -----------------------------------------------------------------


@pytest.fixture(scope="module")
def overrides(appliance: Appliance) -> None:
    """The verdicts the tests rely on, set the way an operator would: the
    test domain is denied, the benign links' domain allowed."""
    for value, action in ((EVIL, "deny"), ("wikipedia.org", "allow")):
        body = {"scope": "global", "kind": "domain", "value": value, "action": action}
        code, text = appliance.http(
            PORTS["reporter"], "/api/v1/overrides", "POST", body, token=True
        )
        assert code in (200, 201), text


def enabled_group(box: Appliance) -> str:
    """A new group in which an admin has said ``!wabscan enable``."""
    group = f"1203630000{next(_groups):08d}@g.us"
    box.inside("command", "--group", group, "!wabscan enable")
    box.wait_for(
        f"the enable reply in {group}",
        lambda: _sent_in(box, group),
        timeout=60,
    )
    return group


def _sent_in(box: Appliance, group: str) -> list[dict[str, Any]]:
    out = box.run("wabscan", "local-transport", "sent", "--json", user="wabscan").stdout
    sent = [json.loads(line) for line in out.splitlines() if line.strip()]
    return [m for m in sent if m["group"] == group]


def settle(box: Appliance, timeout: float = 120.0) -> dict[str, Any]:
    state = box.inside("settle", "--timeout", str(timeout), timeout=timeout + 30)
    assert state["settled"], f"the appliance did not settle: {state}"
    return state


def assert_nothing_lost(report: dict[str, Any], posted: int) -> None:
    assert report["messages"] == posted, report
    assert report["links_lost"] == [], f"links lost: {report}"
    assert report["links_recorded"] == report["links"], report
    assert report["warnings_lost"] == [], f"warnings lost: {report}"
    assert report["warnings_doubled"] == [], f"warnings doubled: {report}"
    assert report["unexpected_replies"] == [], f"replies to benign links: {report}"
    assert report["warnings_sent"] == report["warnings_expected"], report


def restarts(box: Appliance, unit: str) -> int:
    return int(box.show(unit, "NRestarts")["NRestarts"])


def wait_restarted(
    box: Appliance, unit: str, old_pid: int, timeout: float
) -> dict[str, str]:
    def back() -> dict[str, str] | None:
        props = box.show(unit, "ActiveState", "SubState", "MainPID", "NRestarts")
        pid = int(props["MainPID"])
        if props["ActiveState"] == "active" and pid not in (0, old_pid):
            return props
        return None

    return box.wait_for(f"{unit} to be restarted", back, timeout)


def service_lines(box: Appliance, unit: str, *args: str) -> list[dict[str, Any]]:
    """The unit's own lines in this boot's journal (not systemd's about it)."""
    return [
        e
        for e in box.journal("-u", unit, "-b", *args)
        if e.get("_PID") != "1" and e.get("SYSLOG_IDENTIFIER") != "systemd"
    ]


def systemd_lines(box: Appliance, unit: str, since: str) -> list[str]:
    entries = box.journal("-u", unit, "--since", since)
    return [e["MESSAGE"] for e in entries if e.get("_PID") == "1"]


def now_inside(box: Appliance) -> str:
    return box.run("date", "+%Y-%m-%d %H:%M:%S").stdout.strip()


def timed(box: Appliance, key: str, started: float) -> None:
    box.timings[key] = time.monotonic() - started


# -- the checks --------------------------------------------------------------


def test_installed_as_a_package(appliance: Appliance) -> None:
    """The unit files are the repository's, unchanged; everything is enabled
    and nothing failed; the memory limits reach the kernel."""
    for path in sorted((REPO / "units").iterdir()):
        if path.suffix not in (".service", ".socket", ".timer", ".slice"):
            continue
        installed = appliance.run("cat", f"/usr/lib/systemd/system/{path.name}").stdout
        assert installed == path.read_text(), f"{path.name} differs from units/"
    link = appliance.run("readlink", "/usr/bin/wabscan").stdout.strip()
    assert link == "/opt/wabscan/bin/wabscan"
    assert "wabscan" in appliance.run("getent", "passwd", "wabscan").stdout

    for unit in (*UNITS, *(f"wabscan-{s}.socket" for s in SERVICES)):
        state = appliance.systemctl("is-enabled", unit, check=False).strip()
        assert state == "enabled", f"{unit} is {state}"
    failed = appliance.systemctl("list-units", "--failed", "--plain", "--no-legend")
    assert failed.strip() == "", f"failed units after boot:\n{failed}"

    # The cgroup v1 shim works: systemd wrote each unit's MemoryMax into its
    # memory cgroup (without it, nspawn's read-only mount makes systemd
    # ignore every memory setting).
    for unit in (*UNITS, "wabscan.slice"):
        props = appliance.show(unit, "MemoryMax", "ControlGroup")
        limit = appliance.run(
            "cat", f"/sys/fs/cgroup/memory{props['ControlGroup']}/memory.limit_in_bytes"
        ).stdout.strip()
        assert limit == props["MemoryMax"], f"{unit}: cgroup limit {limit}"


def test_sockets_listen_and_start_services_on_first_connection(
    appliance: Appliance,
) -> None:
    services = [f"wabscan-{name}.service" for name in SERVICES]
    appliance.systemctl("stop", *services)
    try:
        for name in SERVICES:
            socket = appliance.show(f"wabscan-{name}.socket", "ActiveState", "SubState")
            assert socket == {"ActiveState": "active", "SubState": "listening"}
        listening = appliance.run("ss", "-Hltnp").stdout
        for name, port in PORTS.items():
            line = next(
                (x for x in listening.splitlines() if f"127.0.0.1:{port} " in x), ""
            )
            assert 'users:(("systemd",pid=1,' in line, (name, line)
        # Nothing starts them while nobody connects.
        time.sleep(3)
        for unit in services:
            assert appliance.show(unit, "ActiveState")["ActiveState"] == "inactive"

        for name, port in PORTS.items():
            started = time.monotonic()
            code, body = appliance.http(port, "/healthz", timeout=60)
            timed(appliance, f"first_request_{name}_seconds", started)
            # The request waited in the socket's backlog while systemd started
            # the service; the service answered it (503 while still starting).
            assert code in (200, 503), (name, code, body)
            assert json.loads(body)["unit"] == name
            # The connection started it; it may answer (503, "starting") a
            # moment before its READY=1 makes it active.
            service = f"wabscan-{name}.service"
            appliance.wait_for(
                f"{service} active", lambda s=service: appliance.active(s), 60
            )
    finally:
        appliance.systemctl("start", *services)
    appliance.wait_healthy()


def test_services_become_active_through_ready_and_show_status(
    appliance: Appliance,
) -> None:
    for name in SERVICES:
        unit = f"wabscan-{name}.service"
        props = appliance.show(unit, "Type", "NotifyAccess", "WatchdogUSec")
        assert props["Type"] == "notify" and props["NotifyAccess"] == "main", props

        since = now_inside(appliance)
        appliance.systemctl("restart", "--no-block", unit)
        seen: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = appliance.show(unit, "ActiveState", "SubState")
            pair = f"{state['ActiveState']}/{state['SubState']}"
            if not seen or seen[-1] != pair:
                seen.append(pair)
            if pair == "active/running":
                break
            time.sleep(0.02)
        # Type=notify: "activating" until the service said READY=1.
        assert "activating/start" in seen and seen[-1] == "active/running", seen
        ready = [
            e["MESSAGE"]
            for e in service_lines(appliance, unit, "--since", since)
            if e["MESSAGE"].startswith("ready ")
        ]
        assert ready, f"{unit}: no 'ready' line since the restart"

        status_text = appliance.show(unit, "StatusText")["StatusText"]
        assert status_text, f"{unit} sent no STATUS="
        status = appliance.systemctl("status", "--no-pager", "--lines=0", unit)
        assert f'Status: "{status_text}"' in status, status

    redis = appliance.show("wabscan-redis.service", "Type", "StatusText")
    assert redis["Type"] == "notify" and redis["StatusText"], redis
    appliance.wait_healthy()


def test_a_malicious_link_gets_a_warning_through_every_unit(
    appliance: Appliance, overrides: None
) -> None:
    group = enabled_group(appliance)
    since = now_inside(appliance)
    redis_before = appliance.inside("redis-info")["streams"]
    text = f"{BODY_WORD} look http://login.{EVIL}/verify"
    message = appliance.run(
        "wabscan", "local-transport", "send", "--group", group,
        "--sender", f"{SENDER_PREFIX}0001", text, user="wabscan",
    ).stdout.strip()  # fmt: skip

    def warning() -> list[dict[str, Any]]:
        return [m for m in _sent_in(appliance, group) if m["quote"] == message]

    found = appliance.wait_for("the warning", warning, timeout=60)
    assert len(found) == 1, found
    assert "hxxp://login[.]" in found[0]["text"], found  # defanged
    assert f"http://login.{EVIL}" not in found[0]["text"]

    # The way it went: a job through Redis's scan stream to the scanner, a
    # verdict through the verdict stream to the reporter, a reply through the
    # outbox stream back to the bridge; each entry deleted once done with.
    info = appliance.inside("redis-info")
    redis_after = info["streams"]
    for stream, count in redis_before.items():
        assert redis_after[stream] >= count + 1, (stream, redis_before, redis_after)
    assert appliance.wait_for(
        "the streams to empty",
        lambda: not any(appliance.inside("redis-info")["lengths"].values()),
        timeout=30,
    )
    job = f"{group}/{message}/0"
    scanner = [
        e["MESSAGE"]
        for e in service_lines(appliance, "wabscan-scanner.service", "--since", since)
    ]
    assert any(f"verdict scan={job} " in m and "level=malicious" in m for m in scanner)
    reply = f"reply/{group}/{message}"
    reporter = [
        e["MESSAGE"]
        for e in service_lines(appliance, "wabscan-reporter.service", "--since", since)
    ]
    assert any(f"reply id={reply} kind=warning" in m for m in reporter), reporter
    bridge = [
        e["MESSAGE"]
        for e in service_lines(appliance, "wabscan-bridge.service", "--since", since)
    ]
    assert any(f"reply-sent reply={reply} " in m for m in bridge), bridge


def test_the_watchdog_restarts_a_frozen_service(
    appliance: Appliance, overrides: None
) -> None:
    """SIGSTOP freezes every loop of a service; its WATCHDOG=1 stops and
    systemd kills and restarts it. All three at once, to share the wait."""
    since = now_inside(appliance)
    started = time.monotonic()
    before = {}
    for name in SERVICES:
        unit = f"wabscan-{name}.service"
        pid = appliance.main_pid(unit)
        before[unit] = (pid, restarts(appliance, unit))
        appliance.run("kill", "-STOP", str(pid))
    for unit, (pid, count) in before.items():
        props = wait_restarted(appliance, unit, pid, timeout=120)
        assert int(props["NRestarts"]) == count + 1, props
        lines = systemd_lines(appliance, unit, since)
        assert any("Watchdog timeout" in m for m in lines), lines
        assert any("Failed with result 'watchdog'" in m for m in lines), lines
    timed(appliance, "watchdog_seconds", started)

    appliance.wait_healthy()
    group = enabled_group(appliance)
    appliance.inside("post", "--group", group, "--tag", "wd", "--count", "2")
    settle(appliance)
    assert_nothing_lost(appliance.inside("account", "--group", group), 2)


@pytest.mark.parametrize("unit", ["scanner", "reporter", "bridge", "redis"])
def test_kill_9_loses_and_doubles_nothing(
    appliance: Appliance, overrides: None, unit: str
) -> None:
    """Messages arrive at 20 a second; the unit is killed with SIGKILL in the
    middle; afterwards every link was judged once and every malicious
    message got exactly one warning."""
    service = f"wabscan-{unit}.service"
    group = enabled_group(appliance)
    pid = appliance.main_pid(service)
    count = restarts(appliance, service)
    others = {
        f"wabscan-{name}.service": appliance.main_pid(f"wabscan-{name}.service")
        for name in SERVICES
        if name != unit
    }
    started = time.monotonic()
    poster = appliance.inside_background(
        "post", "--group", group, "--tag", f"k{unit}", "--count", "60", "--rate", "20"
    )
    time.sleep(1.0)
    appliance.run("kill", "-9", str(pid))
    out, err = poster.communicate(timeout=120)
    assert poster.returncode == 0, err
    posted = json.loads(out)

    props = wait_restarted(appliance, service, pid, timeout=90)
    assert int(props["NRestarts"]) == count + 1, props
    settle(appliance)
    timed(appliance, f"kill_{unit}_seconds", started)
    report = appliance.inside("account", "--group", group)
    assert_nothing_lost(report, len(posted))
    appliance.timings[f"kill_{unit}_resent_same_id"] = report["resent_same_id"]
    appliance.wait_healthy()
    # The others rode it out: none was restarted (Wants=, not Requires=,
    # wabscan-redis.service).
    assert {u: appliance.main_pid(u) for u in others} == others
    unquoted = len(report["warnings_unquoted"])
    if unquoted and unit == "bridge":
        # Known shortcoming, not a loss: the bridge keeps what it needs to
        # quote a message in memory only (bridge/transport.py).
        pytest.xfail(
            f"{unquoted} of {report['warnings_expected']} warnings were sent "
            "without quoting their message: the restarted bridge had "
            "forgotten them"
        )
    assert unquoted == 0, report


def test_a_service_past_its_memory_max_is_killed_and_the_others_keep_working(
    appliance: Appliance, overrides: None
) -> None:
    """A test-only drop-in gives the scanner MemoryMax=20M, less than it
    needs to start (about 35 MB resident): the kernel kills it at the limit,
    systemd restarts it, again and again, while the bridge and the reporter
    keep running and the bridge keeps taking messages. When the drop-in goes,
    the scanner catches up and nothing was lost."""
    unit = "wabscan-scanner.service"
    group = enabled_group(appliance)
    others = {u: appliance.main_pid(u) for u in UNITS if u != unit}
    count = restarts(appliance, unit)
    since = now_inside(appliance)
    dmesg_before = _dmesg()
    appliance.drop_in(unit, "50-test-memory", "[Service]\nMemoryMax=20M\n")
    try:
        appliance.systemctl("restart", "--no-block", unit)
        appliance.wait_for(
            "two kills at MemoryMax",
            lambda: restarts(appliance, unit) >= count + 2,
            timeout=60,
        )
        lines = systemd_lines(appliance, unit, since)
        assert any("code=killed, status=9/KILL" in m for m in lines), lines
        # cgroup v1 has no memory.events, so systemd says 'signal', not
        # 'oom-kill'; the kernel's log names the unit's memory cgroup.
        assert any("Failed with result 'signal'" in m for m in lines), lines
        if dmesg_before is not None:
            # Lines not there before: the ring buffer may have wrapped, so
            # its length before says nothing.
            before = set(dmesg_before.splitlines())
            new = "\n".join(
                line for line in (_dmesg() or "").splitlines() if line not in before
            )
            assert re.search(
                r"oom_memcg=\S*/wabscan\.slice/wabscan-scanner\.service", new
            ), new[-2000:]

        # The others: same processes, healthy; the bridge still takes messages.
        for other, pid in others.items():
            assert appliance.main_pid(other) == pid, other
        for name in ("bridge", "reporter"):
            assert appliance.http(PORTS[name], "/healthz")[0] == 200, name
        appliance.inside("post", "--group", group, "--tag", "mem", "--count", "6")
        # 6 messages, 9 links: the bridge queued every job for the scanner.
        appliance.wait_for(
            "the bridge to queue the jobs",
            lambda: _waiting(appliance, "wabscan:scan") >= 9,
            timeout=30,
        )
    finally:
        appliance.remove_drop_in(unit, "50-test-memory")
        appliance.systemctl("restart", unit)
    appliance.wait_healthy()
    settle(appliance)
    assert_nothing_lost(appliance.inside("account", "--group", group), 6)


def _waiting(box: Appliance, stream: str) -> int:
    return sum(box.inside("depths")["streams"][stream].values())


def _dmesg() -> str | None:
    try:
        out = subprocess.run(
            ["dmesg"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


def _redis_cli(box: Appliance, *args: str) -> str:
    return box.run(
        "redis-cli", "-s", "/run/wabscan-redis/redis.sock", *args, user="wabscan"
    ).stdout.strip()


def test_redis_at_maxmemory_refuses_writes_and_producers_keep_their_messages(
    appliance: Appliance, overrides: None
) -> None:
    """4 MB of filler, then maxmemory lowered 1 MB below what Redis holds
    (CONFIG SET: the setting a drop-in would pass, without a restart): every
    XADD is refused, the bridge spools the jobs in SQLite and stays up, no
    warning goes out; once the filler is deleted (under the same lowered
    maxmemory) the jobs go through and every warning is sent, once."""
    group = enabled_group(appliance)
    original = _redis_cli(appliance, "CONFIG", "GET", "maxmemory").splitlines()[-1]
    bridge = appliance.main_pid("wabscan-bridge.service")
    since = now_inside(appliance)
    try:
        try:
            used = appliance.inside("redis-fill", "--megabytes", "4")["used_memory"]
            _redis_cli(appliance, "CONFIG", "SET", "maxmemory", str(used - 2**20))
            appliance.inside("post", "--group", group, "--tag", "oom", "--count", "10")
            appliance.wait_for(
                "the bridge to spool what Redis refused",
                lambda: appliance.inside("depths")["spool"] > 0,
                timeout=30,
            )
            assert _logged(appliance, "wabscan-bridge.service", since, "redis-refused")
            time.sleep(3)
            assert appliance.main_pid("wabscan-bridge.service") == bridge
            report = appliance.inside("account", "--group", group)
            assert report["warnings_sent"] == 0, report
        finally:
            appliance.inside("redis-free")
        # Drained (still under the lowered maxmemory): everything goes through.
        settle(appliance)
    finally:
        _redis_cli(appliance, "CONFIG", "SET", "maxmemory", original)
    assert appliance.main_pid("wabscan-bridge.service") == bridge
    report = appliance.inside("account", "--group", group)
    assert_nothing_lost(report, 10)
    assert report["warnings_unquoted"] == [], report


def _logged(box: Appliance, unit: str, since: str, word: str) -> list[str]:
    return [
        e["MESSAGE"]
        for e in service_lines(box, unit, "--since", since)
        if e["MESSAGE"].startswith(word)
    ]


def test_redis_filled_by_the_streams_recovers_once_consumers_drain(
    appliance: Appliance, overrides: None
) -> None:
    """The realistic way to reach maxmemory: the streams themselves grow
    (about 700 bytes per link judged). With maxmemory at what Redis holds
    plus 128 KB, 630 links fill it; once the consumers have caught up,
    producers must succeed again."""
    group = enabled_group(appliance)
    original = _redis_cli(appliance, "CONFIG", "GET", "maxmemory").splitlines()[-1]
    used = appliance.inside("redis-info")["used_memory"]
    since = now_inside(appliance)
    try:
        _redis_cli(appliance, "CONFIG", "SET", "maxmemory", str(used + 128 * 1024))
        appliance.inside(
            "post", "--group", group, "--tag", "full", "--count", "600",
            "--malicious-every", "20",
        )  # fmt: skip
        state = appliance.inside("settle", "--timeout", "60", timeout=120)
        info = appliance.inside("redis-info")
        refused = {
            unit: len(_logged(appliance, unit, since, word))
            for unit, word in (
                ("wabscan-bridge.service", "redis-refused"),
                ("wabscan-scanner.service", "batch-retry"),
                ("wabscan-reporter.service", "batch-retry"),
            )
        }
        print(json.dumps({"state": state, "redis": info, "refusals": refused}))
        # The check is meaningless unless Redis did reach maxmemory.
        assert any(refused.values()), f"Redis never refused a write: {info}"
        assert state["settled"], f"stalled at maxmemory: {state} {info} {refused}"
        assert_nothing_lost(appliance.inside("account", "--group", group), 600)
    finally:
        _redis_cli(appliance, "CONFIG", "SET", "maxmemory", original)
        settle(appliance, timeout=180)


def test_journal_has_each_units_lines_with_priorities_and_no_secrets(
    appliance: Appliance, overrides: None
) -> None:
    # A warning of the bridge's own to filter for: Redis refuses its XADD
    # (maxmemory 1 byte), the bridge logs `redis-refused` at priority 4.
    group = enabled_group(appliance)
    original = _redis_cli(appliance, "CONFIG", "GET", "maxmemory").splitlines()[-1]
    since = now_inside(appliance)
    _redis_cli(appliance, "CONFIG", "SET", "maxmemory", "1")
    try:
        appliance.inside("post", "--group", group, "--tag", "log", "--count", "2")
        appliance.wait_for(
            "the bridge to spool", lambda: appliance.inside("depths")["spool"] > 0
        )
    finally:
        _redis_cli(appliance, "CONFIG", "SET", "maxmemory", original)
    settle(appliance)

    for unit in UNITS:
        lines = service_lines(appliance, unit)
        assert lines, f"no lines of {unit}'s own in the journal"
        assert all("PRIORITY" in e for e in lines), unit
        if unit != "wabscan-redis.service":
            # The sd-daemon prefix was read as the priority, not left in.
            assert not any(re.match(r"<\d>", e["MESSAGE"]) for e in lines), unit
            assert any(e["PRIORITY"] == "6" for e in lines), unit

    # -p warning keeps that warning and drops the info lines around it.
    bridge = "wabscan-bridge.service"
    everything_since = service_lines(appliance, bridge, "--since", since)
    assert any(e["MESSAGE"].startswith("reply-sent") for e in everything_since)
    warnings = service_lines(appliance, bridge, "--since", since, "-p", "warning")
    assert any(e["MESSAGE"].startswith("redis-refused") for e in warnings), warnings
    assert all(int(e["PRIORITY"]) <= 4 for e in warnings), warnings
    assert not any(e["MESSAGE"].startswith("reply-sent") for e in warnings)

    # Nothing private in any line of any boot: no message body, no member's
    # number, no credential.
    everything = appliance.run("journalctl", "--no-pager", "-o", "cat").stdout
    secrets = {
        "a message body": BODY_WORD,
        "a member's number": SENDER_PREFIX,
        "the control token": appliance.token,
        "the author key": appliance.run(
            "cat", "/var/lib/wabscan-credentials/author-key"
        ).stdout.strip(),
    }
    for what, value in secrets.items():
        assert value and value not in everything, f"the journal holds {what}"


def test_redis_warnings_have_warning_priority(appliance: Appliance) -> None:
    """Redis logs through syslog (units/redis/wabscan-redis.conf), so its
    warnings keep their level. Its warning to check: memory overcommit is
    off on the host (a container cannot change that sysctl)."""
    if Path("/proc/sys/vm/overcommit_memory").read_text().strip() == "1":
        pytest.skip("overcommit is on here, so Redis has no warning to log")
    lines = service_lines(appliance, "wabscan-redis.service")
    flagged = [e for e in lines if "WARNING" in e["MESSAGE"]]
    assert flagged, f"Redis logged no warning to check: {lines[:5]}"
    assert all(int(e["PRIORITY"]) == 4 for e in flagged), flagged[0]
    notices = {e["MESSAGE"] for e in lines if int(e["PRIORITY"]) == 5}
    assert notices, "Redis logged no notice-level line"
    # -p warning keeps the warnings (Redis also logs its start banner at
    # that level) and drops the notices.
    shown = service_lines(appliance, "wabscan-redis.service", "-p", "warning")
    assert {e["MESSAGE"] for e in flagged} <= {e["MESSAGE"] for e in shown}
    assert not notices & {e["MESSAGE"] for e in shown}


def test_a_reboot_keeps_the_data_and_the_configuration(
    appliance: Appliance, overrides: None
) -> None:
    group = enabled_group(appliance)
    appliance.inside("post", "--group", group, "--tag", "rb", "--count", "4")
    settle(appliance)
    before = _durable_state(appliance)

    took = appliance.reboot()
    appliance.timings["reboot_seconds"] = took
    appliance.wait_healthy()
    after = _durable_state(appliance)
    assert after == before
    boots = appliance.run("journalctl", "--list-boots", "--no-pager").stdout
    assert len(boots.strip().splitlines()) >= 2, boots  # a persistent journal

    # The group is still enabled and the overrides still hold: a new
    # malicious link in the same group is warned about.
    appliance.inside("post", "--group", group, "--tag", "rb2", "--count", "2")
    settle(appliance)
    assert_nothing_lost(appliance.inside("account", "--group", group), 6)


def _durable_state(box: Appliance) -> dict[str, Any]:
    digests = box.run(
        "sha256sum",
        "/etc/wabscan/wabscan.toml",
        "/etc/wabscan/redis.conf",
        "/var/lib/wabscan-credentials/author-key",
        "/var/lib/wabscan-credentials/control-token",
    ).stdout
    counts = box.run(
        "/opt/wabscan/bin/python",
        "-c",
        "import sqlite3, json;"
        "db = sqlite3.connect('/var/lib/wabscan/wabscan.sqlite3');"
        "print(json.dumps({t: db.execute(f'SELECT count(*) FROM {t}').fetchone()[0]"
        " for t in ('verdicts', 'sightings', 'overrides', 'groups', 'replies',"
        " 'outbox_sent', 'audit_log')}))",
        user="wabscan",
    ).stdout
    return {"digests": digests, "rows": json.loads(counts)}
