"""What a reply says: short, plain text for a phone screen.

A reply names the level, the link(s) defanged so that WhatsApp does not make
them clickable, and the top reasons. It never names the sender (the reporter
never has a name or number). Each kind has several phrasings: the variant is
picked from the reply's id, so a replay writes the same text, and moved on
when it would repeat the group's previous reply word for word, because
identical bursts of bot messages get accounts banned (FIELD-NOTES).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from wabscan.links import defang
from wabscan.reporter.policy import Part, link_hash
from wabscan.verdict import Level

MAX_LINKS: Final = 5  # more would scroll a phone screen; the rest are counted
MAX_REASONS: Final = 2
MAX_LINK_CHARS: Final = 70
MAX_REASON_CHARS: Final = 140

_WARNING_ONE: Final = {
    Level.MALICIOUS: (
        "⚠️ Dangerous link, please do not open it:",
        "⚠️ This link looks malicious. Don't open it:",
        "⚠️ Warning: this link is unsafe:",
    ),
    Level.SUSPICIOUS: (
        "⚠️ Be careful with this link:",
        "⚠️ This link looks suspicious:",
        "⚠️ Think twice before opening this link:",
    ),
    Level.BENIGN: (
        "✅ No warning signs found for this link:",
        "✅ Checked this link, nothing suspicious found:",
        "✅ This link shows no known warning signs:",
    ),
}
_WARNING_MANY: Final = {
    Level.MALICIOUS: (
        "⚠️ Dangerous links in this message, please do not open them:",
        "⚠️ Some of these links look malicious. Don't open them:",
        "⚠️ Warning: unsafe links here:",
    ),
    Level.SUSPICIOUS: (
        "⚠️ Be careful with these links:",
        "⚠️ These links look suspicious:",
        "⚠️ Think twice before opening these links:",
    ),
    Level.BENIGN: (
        "✅ No warning signs found for these links:",
        "✅ Checked these links, nothing suspicious found:",
        "✅ These links show no known warning signs:",
    ),
}
_CORRECTION: Final = {
    Level.MALICIOUS: (
        "⚠️ Update on a link shared here earlier: it now looks malicious.",
        "⚠️ Correction: a link posted here earlier is dangerous after all.",
        "⚠️ New finding: a link from earlier in this chat is unsafe.",
    ),
    Level.SUSPICIOUS: (
        "⚠️ Update on a link shared here earlier: it now looks suspicious.",
        "⚠️ Correction: be careful with a link posted here earlier.",
        "⚠️ New finding: a link from earlier in this chat looks suspicious.",
    ),
}
_CHECK_UNREADABLE: Final = (
    "I could not read that as a link. Try: !wabscan check https://example.com",
    "That does not look like a link I can check.",
    "Sorry, I could not make a link out of that.",
)
_LABEL: Final = {
    Level.MALICIOUS: "malicious",
    Level.SUSPICIOUS: "suspicious",
    Level.BENIGN: "no warning signs",
}

# Host names inside a reason ("shortened (bit.ly)") would be made clickable
# by WhatsApp too.
_HOSTLIKE = re.compile(r"(?<![\w.-])(?:[\w-]+\.)+[a-z]{2,}(?![\w-])", re.IGNORECASE)


def warning_text(reply_id: str, links: Sequence[Part], avoid: str = "") -> str:
    """A warning (or, for a check or opt-in group, a benign note) about the
    named links of one message.

    Args:
        reply_id: the reply's id; picks the phrasing.
        links: the links to name, at least one, each with a level.
        avoid: the group's previous reply, not to be repeated word for word.
    """
    levels = [p.level for p in links if p.level is not None]
    worst = max(levels, key=lambda level: level.rank)
    table = _WARNING_ONE if len(links) == 1 else _WARNING_MANY
    mixed = len({p.level for p in links}) > 1
    body = _link_lines(links, labelled=mixed) + _reason_lines(links)
    return _pick(reply_id, [f"{head}\n{body}" for head in table[worst]], avoid)


def correction_text(reply_id: str, link: Part, avoid: str = "") -> str:
    """A correction: a link the group saw earlier now rates ``link.level``."""
    assert link.level in _CORRECTION
    body = _link_lines([link], labelled=False) + _reason_lines([link])
    return _pick(
        reply_id, [f"{head}\n{body}" for head in _CORRECTION[link.level]], avoid
    )


def check_text(reply_id: str, links: Sequence[Part], avoid: str = "") -> str:
    """The answer to an admin's check: the verdict whatever it is."""
    if not links:
        return _pick(reply_id, list(_CHECK_UNREADABLE), avoid)
    return warning_text(reply_id, links, avoid)


def _link_lines(links: Sequence[Part], *, labelled: bool) -> str:
    lines = []
    for part in links[:MAX_LINKS]:
        text = _shorten(defang(part.canonical), MAX_LINK_CHARS)
        if labelled and part.level is not None:
            text += f" ({_LABEL[part.level]})"
        lines.append(f"• {text}")
    if len(links) > MAX_LINKS:
        lines.append(f"• and {len(links) - MAX_LINKS} more")
    return "\n".join(lines)


def _reason_lines(links: Sequence[Part]) -> str:
    # The reasons of the worst links come first; the same sentence given for
    # two links is said once.
    reasons: list[str] = []
    for part in sorted(links, key=lambda p: -(p.level.rank if p.level else -1)):
        for reason in part.reasons:
            if reason and reason not in reasons:
                reasons.append(reason)
    if not reasons:
        return ""
    picked = [_shorten(_defang_hosts(r), MAX_REASON_CHARS) for r in reasons]
    return "\n" + "\n".join(f"Why: {r}" for r in picked[:MAX_REASONS])


def _defang_hosts(text: str) -> str:
    return _HOSTLIKE.sub(lambda match: defang(match.group()), text)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _pick(reply_id: str, variants: list[str], avoid: str) -> str:
    start = int(link_hash(reply_id), 16) % len(variants)
    for step in range(len(variants)):
        text = variants[(start + step) % len(variants)]
        if text != avoid:
            return text
    return variants[start]
