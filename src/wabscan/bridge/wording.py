"""The last checks on a reply's text before it goes to WhatsApp.

- Links are defanged. The reporter writes them defanged already; a reply
  that still carried a live link would make the bot spread the very link it
  warns about, so the bridge checks again and defangs what it finds.
- The same text is never sent twice in a row to a group: identical bursts
  from one account are what WhatsApp bans (FIELD-NOTES). The reporter picks
  among phrasings already; when a reply would still repeat the group's
  previous one word for word, the bridge adds a closing line picked from the
  reply's id, so a resend after a crash writes the same text.
"""

from __future__ import annotations

import hashlib
from typing import Final

from wabscan.links import defang, extract_links, refang

_ENDINGS: Final = (
    "\n— wabscan",
    "\n(wabscan)",
    "\n🔎 wabscan",
    "\n— checked by wabscan",
)
_MAX_PASSES: Final = 64
_MAX_LINKS: Final = 1000


def digest(text: str) -> str:
    """A short fingerprint of a reply, so the ledger need not keep its text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def vary(text: str, seed: str, avoid: str) -> str:
    """``text``, or, if its digest is ``avoid``, ``text`` with a closing line.

    Args:
        text: the reply.
        seed: the reply's id: picks the closing line.
        avoid: the digest of the group's previous reply (empty for none).

    Returns:
        A text whose digest is not ``avoid`` and that starts with ``text``.
    """
    if digest(text) != avoid:
        return text
    start = int(hashlib.sha256(seed.encode("utf-8")).hexdigest()[:8], 16)
    for step in range(len(_ENDINGS)):
        candidate = text + _ENDINGS[(start + step) % len(_ENDINGS)]
        if digest(candidate) != avoid:
            return candidate
    # Unreachable: the endings differ, so at most one of them matches avoid.
    return text + _ENDINGS[0] + _ENDINGS[1]


def defang_links(text: str) -> str:
    """``text`` with every link WhatsApp would make clickable defanged.

    A link already written defanged (``hxxps://evil[.]example``) is left as
    it is. ``extract_links`` reports each URL once, so the text is read again
    with the links found so far blanked out until no more are found: a live
    copy after a defanged one of the same URL is found too.
    """
    masked = text
    edits: list[tuple[int, int, str]] = []
    for _ in range(_MAX_PASSES):
        # Every link counts, however long: a URL found without a scheme is
        # "http://" longer than what was written.
        found = extract_links(
            masked, max_links=_MAX_LINKS, max_url_length=len(masked) + 16
        ).links
        if not found:
            break
        for link in found:
            safe = _defanged(link.text)
            if safe != link.text:
                edits.append((link.start, link.end, safe))
            masked = (
                masked[: link.start]
                + " " * (link.end - link.start)
                + masked[link.end :]
            )
    for start, end, safe in sorted(edits, reverse=True):
        text = text[:start] + safe + text[end:]
    return text


def _defanged(written: str) -> str:
    # Defang what was written (refanged first so that a half-defanged
    # "evil[.]example.com" comes out whole), keeping the author's choice of
    # scheme or none.
    return defang(refang(written))
