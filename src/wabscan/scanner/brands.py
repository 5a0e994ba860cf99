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
    # PayPal as much as "paypa1" does.
    words = [name_label, *(w for w in name_label.split("-") if w != name_label)]
    for brand in brands:
        for word in words:
            if word != brand.name and skeleton(word) == brand.name:
                signals.append(
                    Signal(
                        "lookalike.skeleton",
                        f"The address imitates {brand.display} with look-alike "
                        "characters.",
                        {"brand": brand.display, "label": name_label},
                    )
                )
                return signals

    for brand in brands:
        if len(brand.name) < _MIN_EDIT:
            continue
        limit = 1 if len(brand.name) < 9 else 2
        for word in words:
            shape = skeleton(word)
            if (
                shape.isascii()
                and shape != brand.name
                and edit_distance(shape, brand.name, limit) <= limit
            ):
                signals.append(
                    Signal(
                        "lookalike.edit",
                        f"The address is a misspelling of {brand.display}.",
                        {"brand": brand.display, "label": name_label},
                    )
                )
                return signals

    for brand in brands:
        where = _brand_mention(brand, name_label, sub_labels)
        if where == "subdomain":
            signals.append(
                Signal(
                    "lookalike.brand_in_subdomain",
                    f"The address mentions {brand.display} but the site is "
                    f"{registered_domain}, which is not {brand.display}'s.",
                    {"brand": brand.display, "domain": registered_domain},
                )
            )
            return signals
        if where == "name":
            signals.append(
                Signal(
                    "lookalike.brand_in_name",
                    f"The site {registered_domain} uses the name {brand.display} "
                    f"but does not belong to {brand.display}.",
                    {"brand": brand.display, "domain": registered_domain},
                )
            )
            return signals
    return signals


def _brand_mention(brand: Brand, name_label: str, sub_labels: list[str]) -> str | None:
    for label in sub_labels:
        if _mentions(brand.name, skeleton(label)):
            return "subdomain"
    if _mentions(brand.name, skeleton(name_label)):
        return "name"
    return None


def _mentions(brand: str, label: str) -> bool:
    if brand in label.split("-"):
        return True
    return len(brand) >= _MIN_SUBSTRING and brand in label and label != brand
