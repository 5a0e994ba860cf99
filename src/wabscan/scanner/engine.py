"""The scan of one link, offline: overrides, feeds, allowlist, heuristics and
the lexical model, weighed by ``scoring.assess``.

The engine holds no I/O of its own beyond the feed index's SQLite lookups;
the CLI and the scanner service give it the same objects, so both judge a
link the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from wabscan.scanner import hosts, scoring
from wabscan.scanner.brands import PROTECTED_BRANDS
from wabscan.scanner.canonical import (
    CanonicalURL,
    InvalidURL,
    canonicalize,
    without_password,
)
from wabscan.scanner.signals import redirect_target, url_signals
from wabscan.verdict import Level, Signal, Verdict

if TYPE_CHECKING:
    from sqlite_utils import Database

    from wabscan.feeds import FeedHit
    from wabscan.storage import Override

# Feed categories whose hits are signals of their own; "allow" is handled
# apart, since it silences the others.
_ALLOW = "allow"


class FeedLookup(Protocol):
    def lookup(self, url: CanonicalURL) -> list[FeedHit]: ...


class PhishingModel(Protocol):
    version: str

    def probability(self, url: str) -> float: ...


@dataclass
class Scanner:
    """Judges links with local knowledge only.

    Args:
        feeds: the feed index, or None to scan without feeds.
        model: the lexical model, or None to scan without it.
        overrides: returns the overrides in force now; called at most once
            every ``overrides_ttl`` seconds, so that an admin's change takes
            effect within that time without a lookup per link.
    """

    feeds: FeedLookup | None = None
    model: PhishingModel | None = None
    overrides: Callable[[], Sequence[Override]] | None = None
    overrides_ttl: float = 5.0

    def __post_init__(self) -> None:
        self._overrides: Sequence[Override] = ()
        self._overrides_at = float("-inf")

    @classmethod
    def from_database(cls, db: Database, *, with_model: bool = True) -> Scanner:
        """The scanner the CLI and the scanner service use: feeds and overrides
        from the database, and the packaged lexical model."""
        from wabscan.feeds import FeedIndex
        from wabscan.scanner.lexical import LexicalModel
        from wabscan.storage import active_overrides

        return cls(
            feeds=FeedIndex(db),
            model=LexicalModel.load() if with_model else None,
            overrides=lambda: active_overrides(db, datetime.now(UTC)),
        )

    @property
    def version(self) -> str:
        """Identifies the judgement: cached verdicts of another version are stale."""
        return f"engine-1/{self.model.version if self.model else 'no-model'}"

    def reload_overrides(self) -> None:
        self._overrides_at = float("-inf")

    def scan(
        self,
        url: str,
        group: str | None = None,
        *,
        canonical: CanonicalURL | None = None,
        _depth: int = 0,
    ) -> Verdict:
        """Judge one link as written (refanged) in a message.

        Args:
            url: the link, e.g. ``http://paypa1-secure.com/login``.
            group: the group it was posted in, for group-scoped overrides.
            canonical: ``url`` already canonicalised, when the caller has it.

        Raises:
            InvalidURL: the link cannot be parsed as a web address.
        """
        canonical = canonical or canonicalize(url)
        signals = self.signals(canonical, group)
        if _depth == 0 and not self.overridden(canonical, group):
            signals.extend(self._redirect_signals(canonical, group))
        level, score, deciding = scoring.assess(signals)
        reasons = tuple(s.reason for s in deciding) or (
            "No warning signs in wabscan's local checks.",
        )
        return Verdict(
            url=without_password(url),
            canonical=canonical.url,
            level=level,
            score=score,
            reasons=reasons,
            signals=tuple(signals),
        )

    def overridden(self, url: CanonicalURL, group: str | None = None) -> bool:
        """Whether an admin's override decides this URL (then no cached verdict
        may be used, and the verdict must not be cached)."""
        return self._override_for(url, group) is not None

    def signals(self, url: CanonicalURL, group: str | None = None) -> list[Signal]:
        """All evidence about a canonical URL, before weighing."""
        override = self._override_for(url, group)
        if override is not None:
            return [override]

        official = _official_site(url)
        if official is not None:
            return [official]
        found = self._feed_signals(url)
        found.extend(url_signals(url))
        # A shortener's path is a random token by design: the model would
        # judge the token, not the destination, which only expanding the
        # redirect can reveal. On a document or form service (docs.google.com,
        # forms.office.com) the path is an id too, but such links are a common
        # way to host phishing forms: the model may speak, capped at
        # suspicious, since it cannot see the page.
        tenancy = hosts.tenancy_base(url.host)
        shared_document = tenancy is not None and tenancy[1] == "path"
        if self.model is not None and not hosts.in_set(url.host, hosts.SHORTENERS):
            p = self.model.probability(url.url)
            if p >= scoring.LEXICAL_FLOOR:
                detail: dict[str, object] = {"probability": round(p, 3)}
                reason = "The address is built like typical phishing addresses."
                if shared_document:
                    detail["cap"] = scoring.SHARED_DOCUMENT_CAP
                    reason = (
                        "Shared documents and forms are a common way to host "
                        "phishing pages, and this link is built like one."
                    )
                found.append(Signal("lexical.phishing", reason, detail))
        return found

    def _redirect_signals(self, url: CanonicalURL, group: str | None) -> list[Signal]:
        # One level only: a chain of redirects in one URL is itself unusual,
        # and the scan of a link must stay bounded.
        target = redirect_target(url)
        if target is None:
            return []
        try:
            verdict = self.scan(target, group, _depth=1)
        except InvalidURL:
            return []
        if verdict.level is Level.BENIGN:
            return []
        host = verdict.canonical.split("://", 1)[-1].split("/", 1)[0]
        return [
            Signal(
                "redirect.target",
                f"The link forwards to {host}: {verdict.reasons[0]}",
                {"target": verdict.canonical, "score": verdict.score},
            )
        ]

    def _feed_signals(self, url: CanonicalURL) -> list[Signal]:
        if self.feeds is None:
            return []
        hits = [h for h in self.feeds.lookup(url) if _applies(h, url)]
        signals: list[Signal] = []
        allow = [h for h in hits if h.category == _ALLOW]
        # An allowlisted domain vouches for its own front door and for hosts
        # listed by name. Its other subdomains are often its users' (a
        # tumblr blog, a codesandbox app): there it only cancels block-list
        # entries for the popular domain as a whole, and the link is judged.
        decisive = any(h.kind != "domain" or h.value == url.host for h in allow) or (
            allow and hosts.front_door(url.host, url.registered_domain)
        )
        if decisive:
            signals.append(
                Signal(
                    "allowlist",
                    f"{url.registered_domain or url.host} is a well-known site "
                    f"(listed in {allow[0].source}).",
                    {"sources": sorted({h.source for h in allow})},
                )
            )
        elif allow:
            vouched = {h.value for h in allow if h.kind == "domain"}
            hits = [
                h
                for h in hits
                if h.category == _ALLOW
                or h.kind != "domain"
                or not any(h.value == v or v.endswith("." + h.value) for v in vouched)
            ]
            signals.append(
                Signal(
                    "allowlist.parent",
                    f"{url.registered_domain} is a well-known site, but "
                    f"{url.host} may be one of its users' pages.",
                    {"sources": sorted({h.source for h in allow})},
                )
            )
        by_category: dict[str, list[FeedHit]] = {}
        for hit in hits:
            if hit.category != _ALLOW:
                by_category.setdefault(hit.category, []).append(hit)
        for category, group_hits in by_category.items():
            sources = sorted({h.source for h in group_hits})
            exact = [h for h in group_hits if h.kind == "url"]
            signals.append(
                Signal(
                    f"feed.{category}",
                    _FEED_REASONS.get(
                        category, "The site is on a list of {cat} sites."
                    ).format(cat=category, sources=", ".join(sources)),
                    {
                        "sources": sources,
                        "match": "url" if exact else group_hits[0].kind,
                        "entry": (exact or group_hits)[0].value,
                    },
                )
            )
        return signals

    def _override_for(self, url: CanonicalURL, group: str | None) -> Signal | None:
        now = time.monotonic()
        if self.overrides is None:
            return None
        if now - self._overrides_at > self.overrides_ttl:
            self._overrides = self.overrides()
            self._overrides_at = now

        # The cached list may hold an override that expired since it was read.
        moment = datetime.now(UTC)
        matches = [
            o
            for o in self._overrides
            if o.scope in ("global", group)
            and o.active(moment)
            and _override_matches(o.kind, o.value, url)
        ]
        if not matches:
            return None
        # The most specific wins: a group's own ruling over a global one, then
        # a URL over a host over a domain.
        rank = {"url": 0, "host": 1, "domain": 2}
        best = min(matches, key=lambda o: (o.scope == "global", rank.get(o.kind, 3)))
        allowed = best.action == "allow"
        why = f": {best.reason}" if best.reason else ""
        return Signal(
            "override.allow" if allowed else "override.deny",
            f"An admin marked this {best.kind} as "
            f"{'safe' if allowed else 'dangerous'}{why}.",
            {"override": best.id, "scope": best.scope},
        )


def _official_site(url: CanonicalURL) -> Signal | None:
    """A protected brand's own site (``chat.whatsapp.com``, ``www.paypal.com``):
    as trusted as an allowlisted front door, unless the host is a tenant of
    a multi-tenant service the brand runs (an S3 bucket, a Google Doc)."""
    domain = url.registered_domain
    if domain is None or hosts.tenancy_base(url.host) is not None:
        return None
    for brand in PROTECTED_BRANDS:
        if domain in brand.domains:
            return Signal(
                "allowlist",
                f"{url.host} is {brand.display}'s own site.",
                {"sources": ["protected brands"], "brand": brand.display},
            )
    return None


_FEED_REASONS = {
    "phishing": "The site is on a list of known phishing sites ({sources}).",
    "malware": "The site is on a list of sites that spread malware ({sources}).",
    "suspicious": "The site is on a list of suspicious sites ({sources}).",
    "free-hosting": "The site is on free web hosting, listed in {sources}.",
    "dynamic-dns": "The site uses a dynamic-DNS service, listed in {sources}.",
    "parking": "The domain is parked (listed in {sources}): it serves ads, not a "
    "real site.",
}


def _applies(hit: FeedHit, url: CanonicalURL) -> bool:
    """Whether a feed hit may judge this URL.

    A multi-tenant service is never judged as a whole: an entry for
    github.io or docs.google.com (or a parent of it) says nothing about one
    tenant's page, whether the entry blocks or allows. Entries below the
    service (one tenant's host) and URL entries do apply.
    """
    if hit.kind != "domain":
        return True
    tenancy = hosts.tenancy_base(url.host)
    if tenancy is None:
        return True
    base, _ = tenancy
    return not (hit.value == base or base.endswith("." + hit.value))


def _override_matches(kind: str, value: str, url: CanonicalURL) -> bool:
    if kind == "host":
        return url.host == value
    if kind == "domain":
        return url.host == value or url.host.endswith("." + value)
    # kind == "url": the override's URL, canonical, as a prefix at a boundary.
    target = url.url.split("://", 1)[-1]
    stem = value.split("://", 1)[-1]
    return target == stem or (
        target.startswith(stem) and (stem.endswith("/") or target[len(stem)] in "/?")
    )
