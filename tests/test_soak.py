"""The soak test's generator, its model of the replies, and a short real run.

The short run drives the whole appliance (a private Redis and the three
units, local transport) for 40 s of seeded traffic with every unit killed
once, and checks the accounting balances: no link, verdict or reply lost,
none doubled. docs/soak.md explains the report it checks.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from wabscan.errors import InputError
from wabscan.links import extract_links
from wabscan.soak import (
    ANSWER,
    CHECK,
    COMMAND,
    EDIT,
    JOIN,
    MESSAGE,
    NOTICE,
    UNITS,
    WARNING,
    Event,
    Link,
    SoakOptions,
    TrafficOutsideModel,
    TrafficShape,
    compare,
    draw_chart,
    expected_replies,
    generate,
    make_world,
    mute_periods,
    options_from,
    parse_duration,
    run_soak,
    summary_lines,
)

WINDOW = 6 * 3600.0
# Dense enough in 40 s to have every kind of event: three kills (one of each
# unit), a mute and its unmute, status and check commands, reposts, edits.
SHORT = TrafficShape(
    rate=15, chaos_every=4, status_every=12, check_every=8, mute_every=10
)
SHORT_SEED = 20


def lines(seed: int, shape: TrafficShape, duration: float = 120.0) -> bytes:
    world, events = generate(seed, duration, shape)
    feeds = "\n".join((*world.phishing, *world.allowed))
    return "\n".join([feeds, *(e.to_json() for e in events)]).encode()


def test_same_seed_same_traffic_byte_for_byte() -> None:
    shape = TrafficShape(chaos_every=20)
    first = lines(7, shape)
    assert first == lines(7, shape)
    assert first != lines(8, shape)


def test_chaos_leaves_the_traffic_as_it_is() -> None:
    _, calm = generate(7, 120.0, TrafficShape())
    _, wild = generate(7, 120.0, TrafficShape(chaos_every=5))

    def people(events: list[Event]) -> list[tuple[float, str, str]]:
        return [(e.at, e.group, e.text) for e in events if e.kind != "kill"]

    assert people(calm) == people(wild)
    kills = [e.unit for e in wild if e.kind == "kill"]
    assert len(kills) >= 3
    assert set(kills[:3]) == set(UNITS)  # each unit in turn


def test_the_links_are_what_the_bridge_will_find() -> None:
    _, events = generate(3, 300.0, TrafficShape())
    checked = 0
    for event in events:
        if event.kind not in (MESSAGE, EDIT) and event.command != "check":
            continue
        text = event.text.split(" ", 2)[2] if event.command == "check" else event.text
        found = [link.url for link in extract_links(text).links]
        written = [x.url if "://" in x.url else f"http://{x.url}" for x in event.links]
        assert found == written, event
        checked += 1
    assert checked > 1000


def test_the_traffic_has_what_a_soak_needs() -> None:
    world, events = generate(1, 600.0, TrafficShape())
    links = [x for e in events if e.kind in (MESSAGE, EDIT) for x in e.links]
    messages = sum(e.kind == MESSAGE for e in events)
    assert 0.1 < len(links) / messages < 0.4
    assert 0.05 < sum(x.malicious for x in links) / len(links) < 0.3
    assert any(e.burst for e in events)
    assert {"enable", "status", "check", "mute", "unmute"} <= {
        e.command for e in events
    }
    assert sum(g.enabled for g in world.groups) == len(world.groups) - 1
    # Every mute is lifted before the end, and the model accepts the traffic.
    assert all(end < 600 for p in mute_periods(events).values() for _, end in p)
    slots = expected_replies(events, WINDOW)
    assert any(len(s.candidates) > 1 for s in slots)  # reposts
    assert all(d.endswith((".example", ".test")) for d in world.phishing)


def event(seq: int, kind: str, group: str = "g", **values: object) -> Event:
    return Event(seq=seq, at=float(seq), kind=kind, group=group, **values)  # type: ignore[arg-type]


def test_expected_replies_follow_the_reply_policy() -> None:
    bad, worse, good = (
        Link("https://a.example/1", True),
        Link("https://b.example/2", True),
        Link("https://ok.test/3", False),
    )
    events = [
        event(0, JOIN),
        event(1, JOIN, "off"),
        event(2, COMMAND, command="enable"),
        event(3, MESSAGE, links=(bad, good)),  # a warning
        event(4, MESSAGE, links=(good,)),  # benign: nothing
        event(5, MESSAGE, links=(bad,)),  # a repeat: 3 or 5 is answered
        event(6, COMMAND, command="mute"),
        event(7, MESSAGE, links=(worse, Link("https://c.example/4", True))),
        event(8, COMMAND, command="unmute"),
        event(9, EDIT, links=(Link("https://d.example/5", True),), edit_of=4),
        event(10, MESSAGE, "off", links=(bad,)),  # checking is off there
        event(11, COMMAND, "off", command="check", links=(bad,)),
    ]
    slots = [(s.kind, s.group, s.candidates) for s in expected_replies(events, WINDOW)]
    assert slots == [
        (NOTICE, "g", [0]),
        (NOTICE, "off", [1]),
        (ANSWER, "g", [2]),
        (WARNING, "g", [3, 5]),
        (ANSWER, "g", [6]),
        (WARNING, "g", [7]),
        (ANSWER, "g", [8]),
        (WARNING, "g", [9]),
        (CHECK, "off", [11]),
    ]
    assert mute_periods(events) == {"g": [(6.0, 8.0)]}


def test_a_repost_whose_outcome_depends_on_timing_is_refused() -> None:
    bad = Link("https://a.example/1", True)
    two = (bad, Link("https://b.example/2", True))
    events = [
        event(0, COMMAND, command="enable"),
        event(1, MESSAGE, links=two),
        event(2, MESSAGE, links=(bad,)),
    ]
    with pytest.raises(TrafficOutsideModel):
        expected_replies(events, WINDOW)


def test_durations() -> None:
    assert parse_duration("90") == 90
    assert parse_duration("10m") == 600
    assert parse_duration("1.5h") == 5400
    assert parse_duration("3d") == 3 * 86400
    for wrong in ("", "10x", "0s", "-1m"):
        with pytest.raises(InputError):
            parse_duration(wrong)


def test_rates_must_be_finite_and_in_range() -> None:
    assert options_from(rate=150).shape.rate == 150
    for wrong in (0.0, -1.0, float("nan"), float("inf"), 1e9):
        with pytest.raises(InputError, match="--rate"):
            options_from(rate=wrong)


def test_worlds_differ_by_seed_only() -> None:
    assert make_world(1, 12) == make_world(1, 12)
    assert make_world(1, 12) != make_world(2, 12)


@pytest.mark.slow
@pytest.mark.soak
def test_short_soak_with_kills_balances(tmp_path: Path) -> None:
    options = SoakOptions(
        seed=SHORT_SEED,
        duration=40.0,
        out=tmp_path,
        shape=SHORT,
        drain_timeout=90.0,
        progress_every=1e9,
    )
    report = run_soak(options)

    a = report["accounting"]
    assert a["balanced"], "\n".join(summary_lines(report))
    assert a["replies_lost"] == a["replies_doubled"] == a["replies_unexpected"] == 0
    assert a["links_lost"] == a["verdicts_lost"] == a["jobs_unexpected"] == 0
    assert a["links_expected"] > 100
    assert a["by_kind"][WARNING]["expected"] > 20
    assert {NOTICE, ANSWER, CHECK, WARNING} <= set(a["by_kind"])
    assert report["run"]["drained"]
    # Every unit was killed once and came back.
    assert sorted(k["unit"] for k in report["kills"]) == sorted(UNITS)
    assert all(report["restarts"][u] >= 1 for u in UNITS)
    assert report["restarts"]["unplanned"] == 0

    assert set(report) >= {
        "format", "run", "traffic", "accounting", "latency_ms", "memory",
        "restarts", "kills", "series", "chart", "chart_note",
    }  # fmt: skip
    assert report["latency_ms"][WARNING]["count"] > 10
    assert report["latency_ms"][WARNING]["p50"] > 0
    assert report["latency_ms"]["setup"]["count"] == 23  # 12 notices, 11 enables
    memory = report["memory"]
    assert set(memory["units"]) == {*UNITS, "redis"}
    assert all(m["first_mb"] > 0 and m["last_mb"] > 0 for m in memory["units"].values())
    series = report["series"]
    assert len(series["t"]) >= 40  # once a second
    assert all(len(v) == len(series["t"]) for v in series["rss_mb"].values())
    assert len(series["redis_used_mb"]) == len(series["t"])
    data = memory["redis_data"]
    assert 0 < data["first_mb"] < data["maxmemory_mb"]
    assert series["latency"]["t"]

    written = json.loads((tmp_path / "soak.json").read_text())
    assert written["accounting"] == report["accounting"]
    assert (tmp_path / "appliance.log").stat().st_size > 0
    if importlib.util.find_spec("PIL") is not None:
        chart = tmp_path / "soak.png"
        assert report["chart"] == "soak.png"
        assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert report["chart"] is None and "skipped" in report["chart_note"]
    assert "same traffic: yes" in compare(report, report)


def test_no_chart_without_pillow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "PIL", None)
    name, note = draw_chart({}, tmp_path / "soak.png")
    assert name is None
    assert "skipped" in note
    assert not (tmp_path / "soak.png").exists()
