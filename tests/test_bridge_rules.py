"""Pure rules of the outbox and the session: rate limits, wording, states."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wabscan.bridge import events
from wabscan.bridge.events import SessionEvent
from wabscan.bridge.outbox import _Held, next_reply
from wabscan.bridge.ratelimit import Bucket, RateLimiter
from wabscan.bridge.session import (
    KEEPALIVE_FAILURES_BEFORE_RESTART,
    WAITING_FOR_OPERATOR,
    Session,
    SessionState,
    next_state,
)
from wabscan.bridge.transport import RecentMessages, message_id_for
from wabscan.bridge.wording import defang_links, digest, vary
from wabscan.jobs import OutboxMessage
from wabscan.links import extract_links

# -- token buckets ------------------------------------------------------------

rates = st.floats(min_value=0.5, max_value=600, allow_nan=False)
bursts = st.floats(min_value=1, max_value=10, allow_nan=False)
gaps = st.lists(st.floats(min_value=0, max_value=120, allow_nan=False), max_size=60)


def _times(start: float, deltas: list[float]) -> list[float]:
    times, now = [], start
    for delta in deltas:
        now += delta
        times.append(now)
    return times


@given(rates, bursts, gaps, st.floats(min_value=1, max_value=600))
def test_a_bucket_never_lets_more_through_than_burst_plus_rate(
    per_minute: float, burst: float, deltas: list[float], window: float
) -> None:
    bucket = Bucket.full(per_minute, burst, 0.0)
    granted: list[float] = []
    for now in _times(0.0, deltas):
        taken = bucket.take(now)
        if taken is not None:
            bucket = taken
            granted.append(now)
    for start in granted:
        inside = [t for t in granted if start <= t < start + window]
        assert len(inside) <= bucket.capacity + bucket.rate * window + 1e-6


@given(rates, bursts, gaps)
def test_after_waiting_as_told_a_token_is_there(
    per_minute: float, burst: float, deltas: list[float]
) -> None:
    bucket = Bucket.full(per_minute, burst, 0.0)
    for now in _times(0.0, deltas):
        taken = bucket.take(now)
        if taken is None:
            wait = bucket.wait(now)
            assert wait > 0
            assert bucket.take(now + wait + 1e-9) is not None
        else:
            bucket = taken
        assert 0 <= bucket.tokens <= bucket.capacity


def test_default_group_rate_is_two_at_once_then_one_per_fifteen_seconds() -> None:
    limiter = RateLimiter(4, 20)
    assert limiter.take("g", 0.0) and limiter.take("g", 0.0)
    assert not limiter.take("g", 0.0)
    assert limiter.wait("g", 0.0) == pytest.approx(15.0)
    assert limiter.take("g", 15.0)
    assert limiter.take("other", 15.0)  # another group has its own bucket


def test_the_global_bucket_holds_every_group_back() -> None:
    limiter = RateLimiter(60, 4)
    for n in range(4):
        assert limiter.take(f"g{n}", 0.0)
    assert not limiter.take("g9", 0.0)
    assert limiter.wait("g9", 0.0) == pytest.approx(15.0)


@given(st.lists(st.tuples(st.sampled_from("abc"), st.floats(0, 600)), max_size=40))
def test_rebuilt_buckets_are_never_more_generous_than_live_ones(
    sends: list[tuple[str, float]],
) -> None:
    # A restart rebuilds the buckets from the ledger's send times; the
    # rebuilt limiter must not allow more than one that saw every send.
    live = RateLimiter(4, 20)
    for group, moment in sorted(sends, key=lambda s: s[1]):
        live.spend(group, moment)
    rebuilt = RateLimiter(4, 20)
    rebuilt.replay(sends)
    end = max((m for _, m in sends), default=0.0)
    for group in "abc":
        assert rebuilt.wait(group, end) >= live.wait(group, end) - 1e-9


def _held(entry: str, group: str) -> _Held:
    return _Held(entry, OutboxMessage(entry, group, "", "text", "warning"))


def test_next_reply_takes_the_oldest_group_that_may_send() -> None:
    limiter = RateLimiter(4, 20)
    limiter.spend("busy", 0.0)
    limiter.spend("busy", 0.0)
    heads = [_held("2-0", "quiet"), _held("1-0", "busy")]
    chosen, wait = next_reply(heads, limiter, 0.0)
    assert chosen is not None and chosen.message.group == "quiet"
    assert wait == 0


def test_next_reply_says_how_long_to_wait() -> None:
    limiter = RateLimiter(4, 20)
    limiter.spend("busy", 0.0)
    limiter.spend("busy", 0.0)
    chosen, wait = next_reply([_held("1-0", "busy")], limiter, 0.0)
    assert chosen is None and wait == pytest.approx(15.0)


# -- wording ------------------------------------------------------------------

replies = st.text(min_size=1, max_size=300)


@given(replies, st.text(max_size=40))
def test_vary_never_repeats_the_previous_reply(text: str, seed: str) -> None:
    first = vary(text, seed, "")
    assert first == text  # nothing to avoid: unchanged
    second = vary(text, seed, digest(first))
    assert second != first
    assert second.startswith(text)
    assert vary(text, seed, digest(first)) == second  # deterministic


@given(st.lists(replies.filter(str.strip), min_size=1, max_size=30), st.text())
def test_a_group_never_gets_the_same_text_twice_in_a_row(
    texts: list[str], seed: str
) -> None:
    previous = ""
    for n, text in enumerate(texts):
        sent = vary(text, f"{seed}{n}", digest(previous) if previous else "")
        assert sent != previous
        previous = sent


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("⚠️ Dangerous: https://evil.example/login", "hxxps://evil[.]example/login"),
        ("see evil-shop.com/x now", "evil-shop[.]com/x"),
        ("already hxxps://evil[.]example/x", "hxxps://evil[.]example/x"),
        ("half evil[.]example.com/x", "evil[.]example[.]com/x"),
    ],
)
def test_live_links_are_defanged(text: str, expected: str) -> None:
    assert expected in defang_links(text)


def test_a_live_copy_after_a_defanged_one_is_defanged_too() -> None:
    out = defang_links("hxxps://evil[.]example/x and https://evil.example/x")
    assert "https://evil.example" not in out
    assert out.count("hxxps://evil[.]example/x") == 2


link_texts = st.lists(
    st.sampled_from(
        [
            "https://evil.example/a",
            "http://bank.example.co.uk/login?x=1",
            "www.shop.example.com",
            "paypa1.com/verify",
            "hxxps://already[.]example",
            "just words",
            " and ",
            "\n",
            "(",
            ")",
            "*",
        ]
    ),
    max_size=12,
)


@settings(deadline=None)  # first call compiles links' patterns: 1 s seen
@given(link_texts)
def test_after_defanging_no_live_link_is_left(parts: list[str]) -> None:
    out = defang_links("".join(parts))
    assert all(link.defanged for link in extract_links(out, max_links=1000).links)
    assert defang_links(out) == out  # idempotent


# -- session states -----------------------------------------------------------

kinds = st.sampled_from(
    [
        events.CONNECTED,
        events.DISCONNECTED,
        events.LOGGED_OUT,
        events.CLIENT_OUTDATED,
        events.TEMPORARY_BAN,
        events.KEEPALIVE_TIMEOUT,
        events.KEEPALIVE_RESTORED,
        events.CONNECT_FAILED,
        events.STREAM_REPLACED,
        events.PAIRING,
        events.PAIRED,
    ]
)
session_events = st.builds(SessionEvent, kinds, st.just(""), st.integers(0, 10))


@given(st.sampled_from(list(SessionState)), session_events)
def test_only_a_person_leaves_the_operator_states(
    state: SessionState, event: SessionEvent
) -> None:
    after = next_state(state, event)
    if state in WAITING_FOR_OPERATOR:
        assert after.state in WAITING_FOR_OPERATOR
        assert not after.restart


def test_logged_out_stops_the_client_and_waits_for_pairing() -> None:
    after = next_state(SessionState.CONNECTED, SessionEvent(events.LOGGED_OUT))
    assert after.state is SessionState.NEEDS_PAIRING and after.stop


def test_keepalive_failures_restart_the_client_after_a_few() -> None:
    few = SessionEvent(events.KEEPALIVE_TIMEOUT, count=1)
    many = SessionEvent(
        events.KEEPALIVE_TIMEOUT, count=KEEPALIVE_FAILURES_BEFORE_RESTART
    )
    assert not next_state(SessionState.CONNECTED, few).restart
    assert next_state(SessionState.CONNECTED, many).restart


def test_session_reports_changes_and_resets_reconnects_when_connected() -> None:
    seen: list[str] = []
    session = Session("whatsapp", on_change=lambda s: seen.append(s.state.value))
    session.reconnects = 3
    session.apply(SessionEvent(events.CONNECTED))
    session.apply(SessionEvent(events.DISCONNECTED))
    assert seen == ["connected", "connecting"]
    assert session.reconnects == 0
    assert session.describe()["state"] == "connecting"


# -- transport helpers --------------------------------------------------------


@given(st.text(min_size=1))
def test_message_ids_are_derived_from_the_reply_id(reply: str) -> None:
    first = message_id_for(reply)
    assert first == message_id_for(reply)
    assert first.startswith("3EB0") and len(first) == 24
    assert first == first.upper()


def test_recent_messages_are_bounded_oldest_first() -> None:
    recent: RecentMessages[int] = RecentMessages(limit=3)
    for n in range(5):
        recent.put("g", str(n), n)
    assert len(recent) == 3
    assert recent.get("g", "0") is None and recent.get("g", "4") == 4
