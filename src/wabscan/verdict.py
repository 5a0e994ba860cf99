"""What the scanner says about one link: the verdict and the signals behind it.

These are the plain values that pass between the scanner, the storage, the
cache, the reporter and the command line. They carry no behaviour beyond
conversion to and from plain dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Level(StrEnum):
    """How bad a link is, in the order a group member would rank them."""

    BENIGN = "benign"
    SUSPICIOUS = "suspicious"
    MALICIOUS = "malicious"

    @property
    def rank(self) -> int:
        return _RANKS[self]


_RANKS = {Level.BENIGN: 0, Level.SUSPICIOUS: 1, Level.MALICIOUS: 2}


@dataclass(frozen=True, slots=True)
class Signal:
    """One piece of evidence about a link.

    Attributes:
        code: stable identifier, e.g. ``feed.phishing`` or ``lookalike.edit``;
            the weights in ``scanner/scoring.py`` are keyed by it.
        reason: one sentence a group member understands.
        detail: machine-readable facts (matched feed, brand, distance...).
    """

    code: str
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The scanner's judgement of one canonical URL."""

    url: str
    canonical: str
    level: Level
    score: float
    reasons: tuple[str, ...]
    signals: tuple[Signal, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "canonical": self.canonical,
            "verdict": self.level.value,
            "score": round(self.score, 3),
            "reasons": list(self.reasons),
            "signals": [
                {"code": s.code, "reason": s.reason, "detail": s.detail}
                for s in self.signals
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        return cls(
            url=data["url"],
            canonical=data["canonical"],
            level=Level(data["verdict"]),
            score=float(data["score"]),
            reasons=tuple(data["reasons"]),
            signals=tuple(
                Signal(s["code"], s["reason"], dict(s.get("detail") or {}))
                for s in data.get("signals", ())
            ),
        )
