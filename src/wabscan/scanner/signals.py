"""Heuristic signals read off a canonical URL alone: no feed, no network.

Each check is a pure function of the URL and returns the evidence it found as
:class:`~wabscan.verdict.Signal` values; weighing them is
``scanner/scoring.py``'s job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

from wabscan.scanner import hosts
from wabscan.scanner.brands import lookalike_signals
from wabscan.verdict import Signal

if TYPE_CHECKING:
    from wabscan.scanner.canonical import CanonicalURL

# Longer than nearly every honest link shared in chat; phishing kits pad URLs
# so that the real host scrolls out of a phone's address bar.
LONG_URL = 180
DEEP_SUBDOMAINS = 4


def url_signals(url: CanonicalURL) -> list[Signal]:
    """Every heuristic signal for one canonical URL."""
    found: list[Signal] = []
    host = url.host

    if url.is_ip:
        found.append(
            Signal(
                "host.ip_literal",
                "The link goes to a bare IP address instead of a named website.",
                {"host": host},
            )
        )
    if url.username:
        disguised = "." in url.username
        if disguised:
            reason = (
                f"The link starts with '{url.username}@', which hides where it "
                f"really goes: {host}."
            )
        else:
            reason = (
                "The link carries a user name before the site, a way to hide "
                "where it really goes."
            )
        found.append(
            Signal(
                "url.credentials_disguised" if disguised else "url.credentials",
                reason,
                {"username": url.username, "host": host, "disguised": disguised},
            )
        )
    if url.port is not None and url.port not in hosts.DEFAULT_PORTS:
        found.append(
            Signal(
                "url.unusual_port",
                f"The link uses an unusual network port ({url.port}).",
                {"port": url.port},
            )
        )

    if shortener := hosts.in_set(host, hosts.SHORTENERS):
        found.append(
            Signal(
                "host.shortener",
                f"The link is shortened ({shortener}), so its destination is hidden.",
                {"service": shortener},
            )
        )
    elif (free := hosts.in_set(host, hosts.FREE_HOSTING)) and host != free:
        found.append(
            Signal(
                "host.free_hosting",
                f"The site is on free web hosting ({free}), where anyone can "
                "publish a page in minutes.",
                {"service": free},
            )
        )
    if dyn := hosts.in_set(host, hosts.DYNAMIC_DNS):
        found.append(
            Signal(
                "host.dynamic_dns",
                f"The site uses a dynamic-DNS name ({dyn}), common for short-lived "
                "scam pages.",
                {"service": dyn},
            )
        )

    tld = host.rsplit(".", 1)[-1] if not url.is_ip else ""
    if tld in hosts.SUSPICIOUS_TLDS:
        found.append(
            Signal(
                "host.suspicious_tld",
                f"The domain ends in .{tld}, an ending heavily used for scams.",
                {"tld": tld},
            )
        )

    extension = _extension(url.path)
    if extension in hosts.EXECUTABLE_EXTENSIONS:
        found.append(
            Signal(
                "url.executable",
                f"The link downloads a program or app (.{extension}); installing "
                "apps from links is how phones and computers get infected.",
                {"extension": extension},
            )
        )

    if len(url.url) > LONG_URL:
        found.append(
            Signal(
                "url.long",
                "The link is unusually long, which can hide its real destination.",
                {"length": len(url.url)},
            )
        )
    if not url.is_ip and len(url.labels) - _suffix_len(url) - 1 >= DEEP_SUBDOMAINS:
        found.append(
            Signal(
                "host.deep_subdomains",
                "The address has many nested parts, a way to push the real site "
                "out of view.",
                {"labels": len(url.labels)},
            )
        )

    if not url.is_ip:
        found.extend(
            lookalike_signals(
                url.host_unicode, url.registered_domain, url.public_suffix
            )
        )
    return found


def redirect_target(url: CanonicalURL) -> str | None:
    """The destination of a redirecting link, when its query carries one.

    Open redirects (``google.com/url?q=...``, ``vk.com/away.php?to=...``,
    mail "safe links") let a phishing page ride on a famous name: the first
    query value that is a web address on another site is what the link
    really opens.
    """
    if not url.query:
        return None
    for _name, value in parse_qsl(url.query, keep_blank_values=False):
        value = value.strip()
        if not value.lower().startswith(("http://", "https://")):
            continue
        host = urlsplit(value).hostname or ""
        if host and host != url.host and not host.endswith("." + url.host):
            return value
    return None


def _extension(path: str) -> str:
    last = path.rsplit("/", 1)[-1]
    if "." not in last:
        return ""
    return last.rsplit(".", 1)[-1].lower()


def _suffix_len(url: CanonicalURL) -> int:
    return url.public_suffix.count(".") + 1 if url.public_suffix else 1
