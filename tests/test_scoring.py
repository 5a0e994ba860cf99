"""Scoring: the pure function from signals to a verdict."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from wabscan.scanner import scoring
from wabscan.scanner.scoring import assess
from wabscan.verdict import Level, Signal

DOCS = Path(__file__).resolve().parents[1] / "docs" / "scoring.md"
WEIGHTED = [code for code, w in scoring.WEIGHTS.items() if w > 0]


def sig(code: str, **detail: object) -> Signal:
    return Signal(code, f"reason for {code}", dict(detail))


signals = st.lists(
    st.one_of(
        st.sampled_from(WEIGHTED).map(sig),
        st.floats(0, 1).map(lambda p: sig("lexical.phishing", probability=p)),
    ),
    max_size=8,
)


def test_no_signals_is_benign_with_zero_score() -> None:
    assert assess([]) == (Level.BENIGN, 0.0, [])


def test_a_phishing_feed_hit_alone_is_malicious() -> None:
    level, score, deciding = assess([sig("feed.phishing", match="domain")])
    assert level is Level.MALICIOUS
    assert score == 100.0
    assert [s.code for s in deciding] == ["feed.phishing"]


def test_two_weak_signs_stay_benign_but_a_lookalike_on_free_hosting_does_not() -> None:
    assert assess([sig("host.suspicious_tld"), sig("host.free_hosting")])[0] == (
        Level.BENIGN
    )
    level, score, _ = assess([sig("lookalike.brand_in_name"), sig("url.executable")])
    assert level is Level.SUSPICIOUS
    assert score == 61.5


def test_allowlist_silences_domain_hits_and_heuristics() -> None:
    level, score, deciding = assess(
        [sig("allowlist"), sig("feed.phishing", match="domain"), sig("host.ip_literal")]
    )
    assert (level, score) == (Level.BENIGN, 0.0)
    assert [s.code for s in deciding] == ["allowlist"]


def test_a_url_level_feed_hit_beats_the_allowlist() -> None:
    level, _, deciding = assess([sig("allowlist"), sig("feed.phishing", match="url")])
    assert level is Level.MALICIOUS
    assert [s.code for s in deciding] == ["feed.phishing"]


def test_overrides_beat_everything() -> None:
    deny = sig("override.deny")
    allow = sig("override.allow")
    assert assess([allow, sig("feed.phishing", match="url")])[0] is Level.BENIGN
    assert assess([deny, sig("allowlist")])[0] is Level.MALICIOUS
    assert assess([deny, allow])[0] is Level.MALICIOUS


def test_lexical_weight_rises_with_probability() -> None:
    low = scoring.weight(sig("lexical.phishing", probability=0.4))
    mid = scoring.weight(sig("lexical.phishing", probability=0.75))
    top = scoring.weight(sig("lexical.phishing", probability=1.0))
    assert low == 0.0
    assert 0 < mid < top == scoring.LEXICAL_MAX


@given(signals)
def test_score_is_bounded_and_level_follows_thresholds(found: list[Signal]) -> None:
    level, score, deciding = assess(found)
    assert 0.0 <= score <= 100.0
    expected = (
        Level.MALICIOUS
        if score >= scoring.MALICIOUS_AT
        else Level.SUSPICIOUS
        if score >= scoring.SUSPICIOUS_AT
        else Level.BENIGN
    )
    assert level is expected
    weights = [scoring.weight(s) for s in deciding]
    assert weights == sorted(weights, reverse=True)


@given(signals, st.sampled_from(WEIGHTED))
def test_more_evidence_never_lowers_the_score(found: list[Signal], code: str) -> None:
    before = assess(found)[1]
    after = assess([*found, sig(code)])[1]
    assert after >= before


def test_every_weighted_code_and_threshold_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for code, weight in scoring.WEIGHTS.items():
        assert f"`{code}`" in text, f"{code} missing from docs/scoring.md"
        if weight:
            row = re.search(rf"`{re.escape(code)}`\s*\|\s*([\d.]+)", text)
            assert row and float(row.group(1)) == weight, f"{code} weight differs"
    for name in ("SUSPICIOUS_AT", "MALICIOUS_AT", "LEXICAL_FLOOR", "LEXICAL_MAX"):
        value = getattr(scoring, name)
        assert re.search(rf"`{name}`[^\n]*\b{value:g}\b", text), f"{name} undocumented"
