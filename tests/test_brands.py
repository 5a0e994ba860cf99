"""Look-alikes of protected brands (pure functions over hosts)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from wabscan.scanner.brands import (
    PROTECTED_BRANDS,
    edit_distance,
    lookalike_signals,
    scripts,
    skeleton,
)


def codes(host: str, registered: str, suffix: str) -> list[str]:
    return [s.code for s in lookalike_signals(host, registered, suffix)]


def test_skeleton_maps_homoglyphs_digits_and_accents() -> None:
    assert skeleton("pаypal") == "paypal"  # Cyrillic а
    assert skeleton("paypa1") == "paypal"
    assert skeleton("rnicrosoft") == "microsoft"
    assert skeleton("päypal") == "paypal"
    assert skeleton("wikipedia") == "wikipedia"


def test_scripts_ignores_digits_and_hyphens() -> None:
    assert scripts("pаypal") == {"LATIN", "CYRILLIC"}
    assert scripts("пример") == {"CYRILLIC"}
    assert scripts("a-1") == {"LATIN"}


def test_edit_distance_with_limit() -> None:
    assert edit_distance("paypal", "paypal", 1) == 0
    assert edit_distance("paypai", "paypal", 1) == 1
    assert edit_distance("kitten", "sitting", 5) == 3
    assert edit_distance("abc", "abcdefgh", 2) == 3


def test_homoglyph_domain_is_a_skeleton_lookalike_and_mixed_script() -> None:
    found = codes("pаypal.com", "xn--pypal-4ve.com", "com")
    assert found == ["lookalike.mixed_script", "lookalike.skeleton"]


def test_digit_for_letter_is_a_skeleton_lookalike() -> None:
    assert codes("paypa1.com", "paypa1.com", "com") == ["lookalike.skeleton"]


def test_misspelling_is_an_edit_lookalike() -> None:
    assert codes("whatsap.com", "whatsap.com", "com") == ["lookalike.edit"]


def test_brand_in_subdomain_of_unrelated_domain() -> None:
    found = lookalike_signals("paypal.com.secure-login.top", "secure-login.top", "top")
    assert [s.code for s in found] == ["lookalike.brand_in_subdomain"]
    assert found[0].detail == {"brand": "PayPal", "domain": "secure-login.top"}


def test_brand_as_hyphenated_word_in_name() -> None:
    assert codes("whatsapp-gold.net", "whatsapp-gold.net", "net") == [
        "lookalike.brand_in_name"
    ]


def test_the_brand_itself_and_honest_names_are_not_lookalikes() -> None:
    assert codes("www.paypal.com", "paypal.com", "com") == []
    assert codes("login.microsoftonline.com", "microsoftonline.com", "com") == []
    assert codes("applebees.com", "applebees.com", "com") == []
    assert codes("steampunk.net", "steampunk.net", "net") == []


def test_a_non_ascii_domain_is_not_suspicious_by_itself() -> None:
    assert codes("пример.рф", "xn--e1afmkfd.xn--p1ai", "рф") == []
    assert codes("bücher.de", "xn--bcher-kva.de", "de") == []
    assert codes("例え.jp", "xn--r8jz45g.jp", "jp") == []


@given(st.sampled_from(PROTECTED_BRANDS))
def test_no_brand_domain_is_its_own_lookalike(brand: object) -> None:
    for domain in brand.domains:  # type: ignore[attr-defined]
        suffix = domain.split(".", 1)[1]
        assert codes(f"www.{domain}", domain, suffix) == []


@given(st.text(max_size=40))
def test_lookalike_checks_never_raise(label: str) -> None:
    host = f"{label}.example.com"
    lookalike_signals(host, f"{label}.com", "com")
    skeleton(label)
    scripts(label)
