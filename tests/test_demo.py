"""The demo (the README's main job) end to end: three units, Redis, the local
transport, the bundled chat; the right messages get exactly one warning."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from wabscan.demo import run_demo

pytestmark = pytest.mark.slow

WARNED = [
    "whatsapp-gold-premium",
    "paypa1-account-review",
    "royalmail-redelivery-fee",
    "203.0.113.77",
    "account-verify-secure",
    "tesco-rewards-2024",
]
QUIET = ["youtube.com", "wikipedia.org", "bbc.co.uk", "bit.ly", "metoffice.gov.uk"]


def test_the_demo_warns_about_each_scam_once_and_about_nothing_else() -> None:
    output = io.StringIO()
    result = run_demo(console=Console(file=output, width=100))

    texts = {p.message.text: p.message for p in result.posted}
    for marker in WARNED:
        message = next(m for t, m in texts.items() if marker in t)
        replies = result.replies_to(message)
        assert len(replies) == 1, (marker, replies)
        assert "⚠" in replies[0].text
        # Links in replies are defanged: not clickable in WhatsApp.
        assert "http://" not in replies[0].text and "https://" not in replies[0].text
    for marker in QUIET:
        message = next(m for t, m in texts.items() if marker in t)
        assert result.replies_to(message) == [], marker

    shown = output.getvalue()
    assert "Checking is on" in shown
    assert shown.count("wabscan ▸") == len(result.sent)
