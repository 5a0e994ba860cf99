"""From signals to a verdict: one pure function, every weight in one table.

docs/scoring.md explains each weight and threshold; keep the two in step (a
test checks that every code here is documented there).

Signals combine as a noisy OR: a signal of weight ``w`` alone gives a score
of ``w``, and independent signals reinforce each other without any one sum
running past 100: ``score = 100 * (1 - prod(1 - w_i / 100))``. So two weak
signs (a suspicious ending and free hosting: 15 and 20) stay benign at 32,
while a look-alike on free hosting (45 and 20) reaches suspicious at 56.

Three kinds of signal decide alone, in this order:

1. an admin's override (``override.deny`` / ``override.allow``);
2. evidence about this very URL: a feed entry for it (``detail["match"] ==
   "url"``) or the verdict of the page a redirect forwards to;
3. the allowlist, which silences every other signal: a popular site is not a
   look-alike of itself, and feeds list popular sites by mistake.
"""

from __future__ import annotations

from collections.abc import Iterable

from wabscan.verdict import Level, Signal

SUSPICIOUS_AT = 40.0
MALICIOUS_AT = 75.0

WEIGHTS: dict[str, float] = {
    # Feeds, by the category the operator imported them under.
    "feed.phishing": 100.0,
    "feed.malware": 100.0,
    "feed.suspicious": 50.0,
    "feed.dynamic-dns": 25.0,
    "feed.free-hosting": 20.0,
    "feed.parking": 15.0,
    # Look-alikes of protected brands.
    "lookalike.skeleton": 80.0,
    "lookalike.edit": 60.0,
    "lookalike.brand_in_subdomain": 60.0,
    "lookalike.mixed_script": 45.0,
    "lookalike.brand_in_name": 30.0,
    # The shape of the URL.
    "url.credentials_disguised": 75.0,
    "url.credentials": 40.0,
    "url.executable": 45.0,
    "host.ip_literal": 40.0,
    "host.dynamic_dns": 25.0,
    "host.free_hosting": 20.0,
    "host.shortener": 15.0,
    "host.suspicious_tld": 15.0,
    "url.unusual_port": 15.0,
    "host.deep_subdomains": 15.0,
    "url.long": 10.0,
    # The lexical model; its weight grows with its probability (see below).
    "lexical.phishing": 0.0,
    # A redirect's destination weighs what its own verdict scored.
    "redirect.target": 0.0,
    # A subdomain of an allowlisted site: evidence, no weight (see the docs).
    "allowlist.parent": 0.0,
    # Decisive signals carry no weight: assess() handles them first.
    "override.allow": 0.0,
    "override.deny": 0.0,
    "allowlist": 0.0,
}

# The lexical model's probability p becomes a weight that rises linearly from
# 0 at LEXICAL_FLOOR to LEXICAL_MAX at p = 1. Below the floor the model says
# nothing; its figures are in docs/lexical-model.md.
LEXICAL_FLOOR = 0.5
LEXICAL_MAX = 80.0
# On a shared-document or form service the model sees only an id, and gave
# nearly every one a high score (a breaker's test: every Docs, Drive and
# OneDrive link came out suspicious). Alone it now warns about none; with
# another sign it can.
SHARED_DOCUMENT_CAP = 35.0


def _beats_allowlist(signal: Signal) -> bool:
    """Evidence about this very URL rather than its domain: a feed entry for
    the URL, or the page a redirect on a popular site forwards to."""
    if signal.code == "redirect.target":
        return True
    return signal.code.startswith("feed.") and signal.detail.get("match") == "url"


def weight(signal: Signal) -> float:
    """The weight of one signal; unknown codes weigh nothing."""
    if signal.code == "redirect.target":
        return float(signal.detail.get("score", 0.0))
    if signal.code == "lexical.phishing":
        p = float(signal.detail.get("probability", 0.0))
        w = max(0.0, (p - LEXICAL_FLOOR) / (1 - LEXICAL_FLOOR)) * LEXICAL_MAX
        return min(w, float(signal.detail.get("cap", LEXICAL_MAX)))
    return WEIGHTS.get(signal.code, 0.0)


def assess(signals: Iterable[Signal]) -> tuple[Level, float, list[Signal]]:
    """Combine signals into a level, a score from 0 to 100, and the signals
    that decided it, strongest first (what the reasons are made of).

    >>> assess([Signal("host.ip_literal", "IP")])[0]
    <Level.BENIGN: 'benign'>
    """
    signals = list(signals)
    by_code = {s.code: s for s in signals}

    if "override.deny" in by_code:
        return Level.MALICIOUS, 100.0, [by_code["override.deny"]]
    if "override.allow" in by_code:
        return Level.BENIGN, 0.0, [by_code["override.allow"]]

    specific = [s for s in signals if _beats_allowlist(s)]
    if "allowlist" in by_code and not specific:
        return Level.BENIGN, 0.0, [by_code["allowlist"]]
    counted = specific if "allowlist" in by_code else signals

    weighted = sorted(
        ((weight(s), s) for s in counted), key=lambda pair: pair[0], reverse=True
    )
    remaining = 1.0
    for w, _ in weighted:
        remaining *= 1 - min(w, 100.0) / 100
    score = round(100 * (1 - remaining), 1)
    contributing = [s for w, s in weighted if w > 0]

    if score >= MALICIOUS_AT:
        return Level.MALICIOUS, score, contributing
    if score >= SUSPICIOUS_AT:
        return Level.SUSPICIOUS, score, contributing
    return Level.BENIGN, score, contributing
