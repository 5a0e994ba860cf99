"""The reply policy and the reply wording, as pure functions."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from wabscan.jobs import KIND_CHECK, KIND_EDIT, KIND_MESSAGE
from wabscan.links import refang
from wabscan.reporter import policy
from wabscan.reporter.policy import (
    Delivery,
    GroupState,
    MessageDecision,
    Part,
    QuietHours,
    Told,
    decide_message,
    delivery,
    is_complete,
    is_repeat,
    needs_correction,
    told_after,
)
from wabscan.reporter.wording import check_text, correction_text, warning_text
from wabscan.verdict import Level

NOW = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
WINDOW = timedelta(hours=6)
LEVELS = st.sampled_from(list(Level))
ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), ZoneInfo("Europe/Berlin")]
)
MOMENTS = st.datetimes(
    min_value=datetime(2024, 1, 1),
    max_value=datetime(2027, 1, 1),
    timezones=st.just(UTC),
)
CLOCKS = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))


def part(index: int, level: Level | None, host: str = "") -> Part:
    host = host or f"site{index}.example"
    return Part(index, f"https://{host}/p", level, (f"Reason {index}.",))


@st.composite
def parts_lists(draw: st.DrawFn, min_size: int = 1) -> list[Part]:
    levels = draw(st.lists(st.none() | LEVELS, min_size=min_size, max_size=6))
    return [part(i, level) for i, level in enumerate(levels)]


quiet_hours = st.builds(QuietHours, CLOCKS, CLOCKS, ZONES)


# -- collection ----------------------------------------------------------------


@settings(deadline=None)  # a loaded CI machine is not a slow policy
@given(st.integers(1, 8), st.data())
def test_a_message_is_complete_only_with_every_index(
    count: int, data: st.DataObject
) -> None:
    arrivals = data.draw(
        st.lists(st.integers(-1, count + 1), max_size=3 * count), label="arrivals"
    )
    expected = set(range(count)) <= set(arrivals)
    assert is_complete(arrivals, count) == expected


@settings(deadline=None)  # a loaded CI machine is not a slow policy
@given(parts_lists(), st.randoms())
def test_the_decision_ignores_arrival_order_and_duplicates(
    parts: list[Part], rng: object
) -> None:
    shuffled = parts + parts[: len(parts) // 2]
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    group = GroupState()
    first = decide_message(KIND_MESSAGE, parts, group, {}, NOW, WINDOW)
    again = decide_message(KIND_MESSAGE, shuffled, group, {}, NOW, WINDOW)
    assert first == again


# -- what is announced -----------------------------------------------------------


@settings(deadline=None)  # a loaded CI machine is not a slow policy
@given(st.lists(st.sampled_from([Level.BENIGN, None]), min_size=1, max_size=5))
def test_benign_links_are_silent_by_default(levels: list[Level | None]) -> None:
    parts = [part(i, level) for i, level in enumerate(levels)]
    decision = decide_message(KIND_MESSAGE, parts, GroupState(), {}, NOW, WINDOW)
    assert not decision.reply
    assert decision.reason in (policy.BENIGN, policy.UNJUDGED)


def test_benign_links_are_named_when_the_group_asked() -> None:
    parts = [part(0, Level.BENIGN)]
    group = GroupState(announce_benign=True)
    decision = decide_message(KIND_MESSAGE, parts, group, {}, NOW, WINDOW)
    assert decision.reply and decision.announce == tuple(parts)


@settings(deadline=None)  # a loaded CI machine is not a slow policy
@given(parts_lists())
def test_one_reply_names_every_suspicious_or_malicious_link(parts: list[Part]) -> None:
    decision = decide_message(KIND_EDIT, parts, GroupState(), {}, NOW, WINDOW)
    bad = [p for p in parts if p.level in (Level.SUSPICIOUS, Level.MALICIOUS)]
    assert decision.announce == tuple(bad)
    assert decision.reply == bool(bad)


@settings(deadline=None)  # a loaded CI machine is not a slow policy
@given(parts_lists(min_size=0), st.builds(GroupState, st.booleans(), st.booleans()))
def test_checks_are_always_answered_at_once(
    parts: list[Part], group: GroupState
) -> None:
    muted = GroupState(
        enabled=group.enabled,
        announce_benign=group.announce_benign,
        muted_until=NOW + timedelta(hours=1),
        quiet=QuietHours(time(0), time(23, 59), UTC),
    )
    decision = decide_message(KIND_CHECK, parts, muted, {}, NOW, WINDOW)
    assert decision.reply and decision.check
    assert decision.delivery == Delivery()
    assert decision.announce == tuple(p for p in parts if p.level is not None)


def test_a_disabled_group_gets_nothing_but_checks() -> None:
    parts = [part(0, Level.MALICIOUS)]
    group = GroupState(enabled=False)
    assert decide_message(KIND_MESSAGE, parts, group, {}, NOW, WINDOW).reason == (
        policy.DISABLED
    )
    assert decide_message(KIND_CHECK, parts, group, {}, NOW, WINDOW).reply


# -- repeat window ------------------------------------------------------------------


@settings(deadline=None)  # a loaded CI machine is not a slow policy
@given(LEVELS, LEVELS, st.integers(0, 2 * 6 * 3600))
def test_repeat_window(told_level: Level, level: Level, ago: int) -> None:
    told = Told(told_level, NOW - timedelta(seconds=ago))
    expected = ago < WINDOW.total_seconds() and told_level.rank >= level.rank
    assert is_repeat(told, level, NOW, WINDOW) == expected
    assume(level is not Level.BENIGN)
    parts = [part(0, level)]
    decision = decide_message(
        KIND_MESSAGE, parts, GroupState(), {parts[0].canonical: told}, NOW, WINDOW
    )
    assert decision.reply == (not expected)
    if expected:
        assert decision.reason == policy.REPEAT


def test_silence_about_a_link_is_not_a_repeat() -> None:
    parts = [part(0, Level.SUSPICIOUS)]
    told = {parts[0].canonical: Told(Level.SUSPICIOUS, None)}
    assert decide_message(KIND_MESSAGE, parts, GroupState(), told, NOW, WINDOW).reply


# -- quiet hours and mutes ------------------------------------------------------------


@settings(deadline=None)  # a loaded CI machine is not a slow policy
@given(quiet_hours, MOMENTS)
def test_quiet_hours_end_after_the_moment_and_within_a_day(
    quiet: QuietHours, moment: datetime
) -> None:
    assume(quiet.start != quiet.end)
    end = quiet.ends_after(moment)
    assert moment < end <= moment + timedelta(hours=25)  # 25: a DST day
    if quiet.contains(moment):
        assert not quiet.contains(end)


def test_quiet_hours_across_midnight() -> None:
    quiet = QuietHours(time(23), time(7), UTC)
    assert quiet.contains(datetime(2025, 1, 1, 23, 30, tzinfo=UTC))
    assert quiet.contains(datetime(2025, 1, 2, 6, 59, tzinfo=UTC))
    assert not quiet.contains(datetime(2025, 1, 2, 7, 0, tzinfo=UTC))
    assert quiet.ends_after(datetime(2025, 1, 1, 23, 30, tzinfo=UTC)) == datetime(
        2025, 1, 2, 7, tzinfo=UTC
    )
    assert not QuietHours(time(7), time(7), UTC).contains(NOW)


@settings(deadline=None)  # a loaded CI machine is not a slow policy
@given(quiet_hours, MOMENTS, st.none() | LEVELS)
def test_quiet_hours_defer_warnings_and_drop_benign_notes(
    quiet: QuietHours, now: datetime, level: Level | None
) -> None:
    when = delivery(GroupState(quiet=quiet), level, now)
    if not quiet.contains(now):
        assert when == Delivery()
    elif level in (Level.SUSPICIOUS, Level.MALICIOUS):
        assert when.deferred and when.after is not None
        assert when.after == quiet.ends_after(now)
    else:
        assert when.dropped == policy.QUIET


@settings(deadline=None)  # a loaded CI machine is not a slow policy
@given(st.integers(1, 48 * 60), st.none() | LEVELS, st.none() | quiet_hours)
def test_a_mute_drops_all_but_malicious_which_waits_for_its_end(
    minutes: int, level: Level | None, quiet: QuietHours | None
) -> None:
    until = NOW + timedelta(minutes=minutes)
    when = delivery(GroupState(muted_until=until, quiet=quiet), level, NOW)
    if level is not Level.MALICIOUS:
        assert when.dropped == policy.MUTED
        return
    assert when.deferred and when.after is not None
    assert when.after >= until
    assert quiet is None or not quiet.contains(when.after) or quiet.start == quiet.end


def test_a_past_mute_is_no_mute() -> None:
    group = GroupState(muted_until=NOW - timedelta(seconds=1))
    assert delivery(group, Level.SUSPICIOUS, NOW) == Delivery()


# -- what the group was told, and corrections ------------------------------------------


@settings(deadline=None)  # a loaded CI machine is not a slow policy
@given(LEVELS, st.none() | LEVELS)
def test_corrections_only_when_the_level_rises_to_a_warning(
    told: Level, level: Level | None
) -> None:
    expected = (
        level is not None and level is not Level.BENIGN and level.rank > told.rank
    )
    assert needs_correction(Told(told), level) == expected


def test_told_after_a_reply_starts_the_window_unless_dropped() -> None:
    bad, fine = part(0, Level.MALICIOUS), part(1, Level.BENIGN)
    sent = MessageDecision((bad,), (fine,))
    told = told_after(sent, {}, NOW)
    assert told == {
        bad.canonical: Told(Level.MALICIOUS, NOW),
        fine.canonical: Told(Level.BENIGN),
    }

    earlier = NOW - timedelta(days=1)
    dropped = MessageDecision((bad,), delivery=Delivery(dropped=policy.MUTED))
    before = {bad.canonical: Told(Level.SUSPICIOUS, earlier)}
    assert told_after(dropped, before, NOW) == {
        bad.canonical: Told(Level.MALICIOUS, earlier)
    }


def test_reply_ids_are_natural_keys() -> None:
    assert policy.reply_id("g@g.us", "M1") == "reply/g@g.us/M1"
    assert policy.reply_id("g@g.us", "M1", "edit:T") == "reply/g@g.us/M1/edit:T"
    assert policy.check_id("g@g.us", "M1") == "check/g@g.us/M1"
    first = policy.correction_id("g@g.us", "https://a.example/", Level.MALICIOUS)
    assert first == policy.correction_id(
        "g@g.us", "https://a.example/", Level.MALICIOUS
    )
    assert re.fullmatch(r"correction/g@g\.us/[0-9a-f]{16}/malicious", first)


# -- wording --------------------------------------------------------------------------

_CLICKABLE = re.compile(r"https?://|\b[a-z0-9-]+\.[a-z]{2,}\b", re.IGNORECASE)


@settings(deadline=None)  # a loaded CI machine is not a slow policy
@given(parts_lists(), st.text(max_size=20))
def test_replies_are_defanged_and_vary(parts: list[Part], seed: str) -> None:
    links = [p for p in parts if p.level is not None]
    assume(links)
    text = warning_text(f"reply/g/{seed}", links)
    assert not _CLICKABLE.search(text), text
    for link in links[:5]:
        assert refang(link.canonical) in refang(text)
    assert warning_text(f"reply/g/{seed}", links) == text  # a replay says the same
    assert warning_text(f"reply/g/{seed}", links, avoid=text) != text


def test_a_reply_says_the_level_and_the_reasons() -> None:
    bad = Part(
        0,
        "https://paypa1.example/login",
        Level.MALICIOUS,
        (
            "Looks like paypal.com but is not.",
            "The link is shortened (bit.ly), so its destination is hidden.",
            "A third reason.",
        ),
    )
    text = warning_text("reply/g/1", [bad])
    assert "hxxps://paypa1[.]example/login" in text
    assert "paypal[.]com" in text and "bit[.]ly" in text
    assert "A third reason" not in text  # the top two only
    assert any(w in text.lower() for w in ("malicious", "dangerous", "unsafe"))
    assert len(text) < 400


def test_mixed_levels_are_labelled_and_long_lists_counted() -> None:
    links = [part(i, Level.SUSPICIOUS if i else Level.MALICIOUS) for i in range(7)]
    text = warning_text("reply/g/2", links)
    assert "(malicious)" in text and "(suspicious)" in text
    assert "and 2 more" in text


def test_corrections_and_checks_have_their_own_words() -> None:
    link = part(0, Level.MALICIOUS)
    assert "earlier" in correction_text("correction/g/x/malicious", link)
    assert "link" in check_text("check/g/1", [])
    benign = check_text("check/g/2", [part(0, Level.BENIGN)])
    assert "✅" in benign and "site0[.]example" in benign
