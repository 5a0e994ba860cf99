"""Look-alikes of protected brands: the trick behind most WhatsApp phishing.

A group member trusts a link because it *reads* like paypal.com or
whatsapp.com. Four checks catch the usual tricks, each a pure function of the
host:

- confusable skeleton: the registrable name, with every character replaced by
  the ASCII letter it passes for (Cyrillic ``а``, digit ``1`` for ``l``,
  ``rn`` for ``m``), equals a brand although the domain is not the brand's;
- mixed scripts in one label (Latin with Cyrillic or Greek): rare in honest
  names, since registries forbid most mixes; a label wholly in one non-Latin
  script (``пример.рф``) is not suspicious by itself;
- small edit distance from a brand's name (``paypai``, ``whatsap``);
- the brand as a label or hyphenated word in the subdomain or registrable
  name of an unrelated domain (``paypal.com.secure-login.top``,
  ``whatsapp-gold.net``).
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources

from wabscan.verdict import Signal


@dataclass(frozen=True, slots=True)
class Brand:
    name: str  # the word people recognise, as it appears in domain names
    display: str
    domains: frozenset[str]  # registered domains the brand really uses


def _brand(name: str, display: str, *domains: str) -> Brand:
    return Brand(name, display, frozenset(domains))


# Brands most impersonated in messaging-app phishing, with the registered
# domains each really uses. Extend per deployment with `scanner.brands`
# in the configuration rather than here.
PROTECTED_BRANDS: tuple[Brand, ...] = (
    _brand("whatsapp", "WhatsApp", "whatsapp.com", "whatsapp.net", "wa.me"),
    _brand("paypal", "PayPal", "paypal.com", "paypal.me", "paypalobjects.com"),
    _brand("facebook", "Facebook", "facebook.com", "fb.com", "fb.me", "fbcdn.net"),
    _brand("instagram", "Instagram", "instagram.com", "cdninstagram.com"),
    _brand(
        "google",
        "Google",
        "google.com",
        "goo.gl",
        "googleapis.com",
        "googleusercontent.com",
        "gstatic.com",
        "youtube.com",
        "google.co.uk",
    ),
    _brand("gmail", "Gmail", "gmail.com", "google.com"),
    _brand("youtube", "YouTube", "youtube.com", "youtu.be", "ytimg.com"),
    _brand("apple", "Apple", "apple.com", "icloud.com", "apple.news"),
    _brand("icloud", "iCloud", "icloud.com", "apple.com"),
    _brand(
        "microsoft",
        "Microsoft",
        "microsoft.com",
        "live.com",
        "office.com",
        "microsoftonline.com",
        "outlook.com",
        "azure.com",
        "msn.com",
    ),
    _brand(
        "outlook", "Outlook", "outlook.com", "live.com", "office.com", "microsoft.com"
    ),
    _brand("office365", "Office 365", "office.com", "microsoft.com"),
    _brand("netflix", "Netflix", "netflix.com", "nflxext.com", "nflximg.net"),
    _brand(
        "amazon",
        "Amazon",
        "amazon.com",
        "amazon.co.uk",
        "amazon.de",
        "amazon.in",
        "amazon.fr",
        "amazon.es",
        "amazon.it",
        "amazon.ca",
        "amazon.co.jp",
        "amazonaws.com",
        "amzn.to",
    ),
    _brand("ebay", "eBay", "ebay.com", "ebay.co.uk", "ebay.de"),
    _brand("telegram", "Telegram", "telegram.org", "t.me", "telegram.me"),
    _brand("signal", "Signal", "signal.org"),
    _brand("discord", "Discord", "discord.com", "discord.gg", "discordapp.com"),
    _brand("steamcommunity", "Steam", "steamcommunity.com", "steampowered.com"),
    _brand("steampowered", "Steam", "steampowered.com", "steamcommunity.com"),
    _brand("linkedin", "LinkedIn", "linkedin.com", "lnkd.in"),
    _brand("twitter", "Twitter", "twitter.com", "x.com", "t.co"),
    _brand("tiktok", "TikTok", "tiktok.com"),
    _brand("binance", "Binance", "binance.com"),
    _brand("coinbase", "Coinbase", "coinbase.com"),
    _brand("metamask", "MetaMask", "metamask.io"),
    _brand("blockchain", "Blockchain.com", "blockchain.com"),
    _brand("dropbox", "Dropbox", "dropbox.com", "db.tt"),
    _brand("docusign", "DocuSign", "docusign.com", "docusign.net"),
    _brand("adobe", "Adobe", "adobe.com"),
    _brand("yahoo", "Yahoo", "yahoo.com"),
    _brand("spotify", "Spotify", "spotify.com"),
    _brand("roblox", "Roblox", "roblox.com"),
    _brand("dhl", "DHL", "dhl.com", "dhl.de"),
    _brand("fedex", "FedEx", "fedex.com"),
    _brand("usps", "USPS", "usps.com"),
    _brand("royalmail", "Royal Mail", "royalmail.com"),
    _brand("chase", "Chase", "chase.com"),
    _brand("wellsfargo", "Wells Fargo", "wellsfargo.com"),
    _brand("bankofamerica", "Bank of America", "bankofamerica.com", "bofa.com"),
    _brand("citibank", "Citibank", "citibank.com", "citi.com"),
    _brand("hsbc", "HSBC", "hsbc.com", "hsbc.co.uk"),
    _brand("barclays", "Barclays", "barclays.co.uk", "barclays.com"),
    _brand("santander", "Santander", "santander.com", "santander.co.uk"),
    _brand("revolut", "Revolut", "revolut.com"),
    _brand("mpesa", "M-Pesa", "safaricom.co.ke", "vodafone.com"),
)

# Short names are only matched as a whole word: "dhl" or "ups" as a substring
# hits honest names far too often, and so does an edit of them.
_MIN_SUBSTRING = 6
_MIN_EDIT = 6

# ASCII sequences that read as another letter at a glance.
_ASCII_LOOKALIKES = (
    ("rn", "m"),
    ("vv", "w"),
    ("cl", "d"),
    ("0", "o"),
    ("1", "l"),
    ("3", "e"),
    ("5", "s"),
    ("$", "s"),
    ("@", "a"),
)


@cache
def _confusables() -> dict[str, str]:
    # Built by tools/build_confusables.py from Unicode's confusables data.
    text = (
        resources.files("wabscan.data")
        .joinpath("confusables.json")
        .read_text(encoding="utf-8")
    )
    table: dict[str, str] = json.loads(text)
    return table


def skeleton(label: str) -> str:
    """The ASCII string a label passes for at a glance.

    >>> skeleton("pаypa1")  # Cyrillic а, digit 1
    'paypal'
    """
    if not label.isascii():
        table = _confusables()
        label = "".join(table.get(c, c) for c in label)
        # Accents: "päypal" reads as "paypal".
        label = "".join(
            c
            for c in unicodedata.normalize("NFKD", label)
            if not unicodedata.combining(c)
        )
    label = label.lower()
    for seq, letter in _ASCII_LOOKALIKES:
        label = label.replace(seq, letter)
    return label


def scripts(label: str) -> set[str]:
    """The scripts of a label's letters (``LATIN``, ``CYRILLIC``...).

    Digits, hyphens and other common characters belong to no script.
    """
    found = set()
    for char in label:
        if char.isalpha():
            name = unicodedata.name(char, "")
            if name:
                found.add(name.split(" ", 1)[0])
    return found


def edit_distance(a: str, b: str, limit: int) -> int:
    """Levenshtein distance, or ``limit + 1`` as soon as it exceeds ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            )
        if min(current) > limit:
            return limit + 1
        previous = current
    return previous[-1]


def lookalike_signals(
    host_unicode: str,
    registered_domain: str | None,
    public_suffix: str | None,
    brands: tuple[Brand, ...] = PROTECTED_BRANDS,
) -> list[Signal]:
    """Signals for a host that imitates a protected brand.

    Args:
        host_unicode: the host in Unicode form (``раypal.com``, not punycode).
        registered_domain: its registered domain in ASCII (eTLD+1), or None.
        public_suffix: its public suffix, or None.
        brands: the protected brands.

    Returns:
        At most one signal per check, naming the brand imitated.
    """
    if not registered_domain or not public_suffix:
        return []
    if any(registered_domain in b.domains for b in brands):
        return []

    labels = host_unicode.lower().split(".")
    suffix_labels = public_suffix.count(".") + 1
    name_label = labels[-suffix_labels - 1] if len(labels) > suffix_labels else ""
    sub_labels = labels[: -suffix_labels - 1]
    signals: list[Signal] = []

    mixed = [
        label
        for label in labels
        if len(scripts(label) - {"LATIN"}) >= 1 and "LATIN" in scripts(label)
    ]
    if mixed:
        signals.append(
            Signal(
                "lookalike.mixed_script",
                "The address mixes letters of different alphabets, a trick to imitate "
                "a known name.",
                {"label": mixed[0], "scripts": sorted(scripts(mixed[0]))},
            )
        )

    # The name and each hyphenated word of it: "paypa1-secure" imitates
    # PayPal as much as "paypa1" does. Each word's skeleton is computed once
    # and brands are found by name: this check runs for every link, and
    # trying every brand on every word was most of a scan's time.
    words = [name_label, *(w for w in name_label.split("-") if w != name_label)]
    shapes = [(word, skeleton(word)) for word in words]
    index = _index(brands)
    for word, shape in shapes:
        brand = index.by_name.get(shape)
        if brand is not None and word != brand.name:
            signals.append(
                Signal(
                    "lookalike.skeleton",
                    f"The address imitates {brand.display} with look-alike characters.",
                    {"brand": brand.display, "label": name_label},
                )
            )
            return signals

    for _word, shape in shapes:
        if not shape.isascii() or shape in index.by_name:
            continue
        for brand in index.by_length.get(len(shape), ()):
            if _close(shape, brand.name):
                signals.append(
                    Signal(
                        "lookalike.edit",
                        f"The address is a misspelling of {brand.display}.",
                        {"brand": brand.display, "label": name_label},
                    )
                )
                return signals

    for label in sub_labels:
        brand = _mentioned(index, skeleton(label))
        if brand is not None:
            signals.append(
                Signal(
                    "lookalike.brand_in_subdomain",
                    f"The address mentions {brand.display} but the site is "
                    f"{registered_domain}, which is not {brand.display}'s.",
                    {"brand": brand.display, "domain": registered_domain},
                )
            )
            return signals
    brand = _mentioned(index, shapes[0][1])
    if brand is not None:
        signals.append(
            Signal(
                "lookalike.brand_in_name",
                f"The site {registered_domain} uses the name {brand.display} "
                f"but does not belong to {brand.display}.",
                {"brand": brand.display, "domain": registered_domain},
            )
        )
    return signals


def _close(word: str, name: str) -> bool:
    """One edit apart (two for names of 9 letters or more)."""
    if len(name) >= 9:
        # Two edits change at most four distinct letters: a cheap test that
        # spares the full distance for nearly every word.
        if len(set(word) ^ set(name)) > 4:
            return False
        return edit_distance(word, name, 2) <= 2
    if abs(len(word) - len(name)) > 1 or word == name:
        return False
    # One substitution, insertion or deletion: skip the common prefix and
    # suffix, and at most one character may remain on either side.
    start = 0
    while start < min(len(word), len(name)) and word[start] == name[start]:
        start += 1
    end_w, end_n = len(word), len(name)
    while end_w > start and end_n > start and word[end_w - 1] == name[end_n - 1]:
        end_w -= 1
        end_n -= 1
    return end_w - start <= 1 and end_n - start <= 1


@dataclass(frozen=True)
class _Index:
    """What the checks look up for a list of brands, built once per list."""

    by_name: dict[str, Brand]
    by_length: dict[int, tuple[Brand, ...]]  # edit candidates by word length
    long_names: re.Pattern[str]  # brands matched inside a word


_INDEXES: dict[int, tuple[tuple[Brand, ...], _Index]] = {}


def _index(brands: tuple[Brand, ...]) -> _Index:
    # Keyed by identity: hashing a tuple of brands on every call cost more
    # than the checks themselves.
    cached = _INDEXES.get(id(brands))
    if cached is not None and cached[0] is brands:
        return cached[1]
    longest = max((len(b.name) for b in brands), default=0)
    index = _Index(
        by_name={b.name: b for b in reversed(brands)},
        by_length={
            n: tuple(
                b
                for b in brands
                if len(b.name) >= _MIN_EDIT and abs(len(b.name) - n) <= 2
            )
            for n in range(longest + 3)
        },
        long_names=re.compile(
            "|".join(
                sorted(
                    (
                        re.escape(b.name)
                        for b in brands
                        if len(b.name) >= _MIN_SUBSTRING
                    ),
                    key=len,
                    reverse=True,
                )
            )
            or "(?!)"
        ),
    )
    _INDEXES[id(brands)] = (brands, index)
    return index


def _mentioned(index: _Index, label: str) -> Brand | None:
    """The brand a label mentions: as a hyphenated word, or (long names)
    anywhere inside it."""
    for part in label.split("-"):
        if part in index.by_name:
            return index.by_name[part]
    found = index.long_names.search(label)
    if found and found.group(0) != label:
        return index.by_name[found.group(0)]
    return None
