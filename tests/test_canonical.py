"""Canonical URLs: one spelling per destination, and stable under repetition."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wabscan.links import extract_links
from wabscan.scanner.canonical import CanonicalURL, InvalidURL, canonicalize


def canon(url: str) -> str:
    return canonicalize(url).url


# --- the same destination, one spelling --------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTP://Example.COM/Path", "http://example.com/Path"),
        ("https://example.com", "https://example.com/"),
        ("http://example.com:80/", "http://example.com/"),
        ("https://example.com:443/", "https://example.com/"),
        ("ftp://files.example.com:21/a", "ftp://files.example.com/a"),
        ("http://example.com:443/", "http://example.com:443/"),
        ("https://example.com:8443", "https://example.com:8443/"),
        ("http://example.com./a", "http://example.com/a"),
        ("http://example.com/a#section", "http://example.com/a"),
        ("http://example.com/a/./b/../c", "http://example.com/a/c"),
        ("http://example.com/a/b/..", "http://example.com/a/"),
        ("http://example.com/../../a", "http://example.com/a"),
        ("http://example.com/a/%2E%2e/b", "http://example.com/b"),
        ("http://example.com//a//b", "http://example.com//a//b"),
        ("http://example.com/%7euser/%41", "http://example.com/~user/A"),
        ("http://example.com/a%2fb%3f", "http://example.com/a%2Fb%3F"),
        ("http://example.com/100%", "http://example.com/100%25"),
        ("http://example.com/a b", "http://example.com/a%20b"),
        ("http://example.com/путь", "http://example.com/%D0%BF%D1%83%D1%82%D1%8C"),
        ("http://example.com/?", "http://example.com/"),
        ("  http://example.com/  ", "http://example.com/"),
        ("http://exa\tmple.com/", "http://example.com/"),
        ("http://ex%61mple.com/", "http://example.com/"),
    ],
)
def test_canonical_form(url: str, expected: str) -> None:
    assert canon(url) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://example.com/a?utm_source=x&id=1&UTM_Medium=y&fbclid=z&b=2",
            "https://example.com/a?id=1&b=2",
        ),
        (
            "https://example.com/?gclid=1&dclid=2&msclkid=3&mc_eid=4&igshid=5"
            "&yclid=6&_hsenc=7&_hsmi=8&ref_src=9&keep=yes",
            "https://example.com/?keep=yes",
        ),
        ("https://example.com/?utm_source=x", "https://example.com/"),
        ("https://example.com/?utm%5Fsource=x&a=1", "https://example.com/?a=1"),
        ("https://youtu.be/abc?si=XYZ&t=42", "https://youtu.be/abc?t=42"),
        (
            "https://www.youtube.com/watch?v=abc&si=XYZ",
            "https://www.youtube.com/watch?v=abc",
        ),
        ("https://open.spotify.com/track/1?si=abc", "https://open.spotify.com/track/1"),
        # "si" is a real parameter elsewhere.
        ("https://example.com/?si=1", "https://example.com/?si=1"),
        ("https://example.com/?b=2&a=1", "https://example.com/?b=2&a=1"),
        ("https://example.com/?q=a b", "https://example.com/?q=a%20b"),
    ],
)
def test_tracking_parameters_are_removed_and_order_kept(
    url: str, expected: str
) -> None:
    assert canon(url) == expected


def test_idn_and_punycode_give_the_same_canonical() -> None:
    unicode_form = canonicalize("https://bücher.de")
    punycode_form = canonicalize("https://xn--bcher-kva.de/")
    assert unicode_form == punycode_form
    assert unicode_form.host == "xn--bcher-kva.de"
    assert unicode_form.host_unicode == "bücher.de"
    assert unicode_form.labels == ("xn--bcher-kva", "de")


@pytest.mark.parametrize(
    ("url", "host", "host_unicode"),
    [
        ("http://пример.рф/", "xn--e1afmkfd.xn--p1ai", "пример.рф"),
        ("http://ПРИМЕР.РФ/", "xn--e1afmkfd.xn--p1ai", "пример.рф"),
        ("http://BÜCHER.de/", "xn--bcher-kva.de", "bücher.de"),
        ("http://XN--BCHER-KVA.DE/", "xn--bcher-kva.de", "bücher.de"),
        # Ideographic and full-width full stops are dots to a browser.
        ("http://münchen。de/", "xn--mnchen-3ya.de", "münchen.de"),
        ("http://ｅｘａｍｐｌｅ．ｃｏｍ/", "example.com", "example.com"),
        # Not IDNA 2008, but browsers open it: encoded, not refused.
        ("https://i❤.ws/", "xn--i-7iq.ws", "i❤.ws"),
        # A Cyrillic "а" in a Latin name stays visible in the Unicode form.
        ("https://pаypal.com/", "xn--pypal-4ve.com", "pаypal.com"),
        ("http://a_b.example.com/", "a_b.example.com", "a_b.example.com"),
    ],
)
def test_hosts(url: str, host: str, host_unicode: str) -> None:
    result = canonicalize(url)
    assert (result.host, result.host_unicode, result.is_ip) == (
        host,
        host_unicode,
        False,
    )


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://3232235777/", "192.168.1.1"),
        ("http://0xC0A80001/", "192.168.0.1"),
        ("http://0xc0.0xa8.0x00.0x01/", "192.168.0.1"),
        ("http://0300.0250.0.1/", "192.168.0.1"),
        ("http://192.168.1/", "192.168.0.1"),
        ("http://192.11010049/", "192.168.0.1"),
        ("http://127.1/", "127.0.0.1"),
        ("http://192.168.000.001/", "192.168.0.1"),
        ("http://１２７．０．０．１/", "127.0.0.1"),
        ("http://0x/", "0.0.0.0"),
    ],
)
def test_ipv4_in_any_notation_is_dotted(url: str, host: str) -> None:
    result = canonicalize(url)
    assert (result.host, result.is_ip, result.labels) == (host, True, ())
    assert result.url == f"http://{host}/"
    assert result.registered_domain is None
    assert result.public_suffix is None


@pytest.mark.parametrize(
    ("url", "expected", "host"),
    [
        ("http://[2001:DB8::1]/", "http://[2001:db8::1]/", "2001:db8::1"),
        (
            "http://[2001:db8:0:0:0:0:0:1]:8080/a",
            "http://[2001:db8::1]:8080/a",
            "2001:db8::1",
        ),
        ("https://[::1]:443/", "https://[::1]/", "::1"),
        ("http://[::ffff:192.168.0.1]/", "http://[::ffff:c0a8:1]/", "::ffff:c0a8:1"),
    ],
)
def test_ipv6_literals(url: str, expected: str, host: str) -> None:
    result = canonicalize(url)
    assert (result.url, result.host, result.is_ip) == (expected, host, True)


def test_ports() -> None:
    assert canonicalize("http://example.com:8080/").port == 8080
    assert canonicalize("http://example.com:80/").port is None
    assert canonicalize("https://example.com/").port is None
    assert canonicalize("http://example.com:/").port is None
    assert canonicalize("http://example.com:0/").url == "http://example.com:0/"


def test_credentials_keep_the_user_and_drop_the_password() -> None:
    result = canonicalize("https://www.bank.com@evil.example/login")
    assert result.username == "www.bank.com"
    assert result.host == "evil.example"
    assert result.url == "https://www.bank.com@evil.example/login"

    result = canonicalize("https://user:secret@example.com/")
    assert (result.url, result.username) == ("https://user@example.com/", "user")

    assert canonicalize("https://:secret@example.com/").username is None
    # The last @ ends the credentials, as in browsers; earlier ones are data.
    result = canonicalize("http://a@b@example.com/")
    assert (result.username, result.host) == ("a%40b", "example.com")


def test_backslashes_and_extra_slashes_go_where_the_browser_goes() -> None:
    # A browser opens evil.com here; a parser that keeps "\" would say
    # google.com.
    result = canonicalize("http://evil.com\\@google.com/")
    assert (result.host, result.username) == ("evil.com", None)
    assert canon("https:/\\evil.example/a\\b") == "https://evil.example/a/b"
    assert canon("https:evil.example") == "https://evil.example/"
    assert canon("https:///evil.example") == "https://evil.example/"
    # In the query a backslash is data (escaped, as RFC 3986 wants).
    assert canon("http://example.com/?q=a\\b") == "http://example.com/?q=a%5Cb"


def test_registered_domains_and_suffixes() -> None:
    result = canonicalize("https://a.x.github.io/")
    assert result.registered_domain == "x.github.io"
    assert result.icann_registered_domain == "github.io"
    assert result.public_suffix == "github.io"
    assert result.labels == ("a", "x", "github", "io")

    result = canonicalize("https://www.example.co.uk/")
    assert result.registered_domain == "example.co.uk"
    assert result.icann_registered_domain == "example.co.uk"
    assert result.public_suffix == "co.uk"

    result = canonicalize("http://co.uk/")
    assert (result.registered_domain, result.public_suffix) == (None, "co.uk")

    result = canonicalize("http://localhost:8000/")
    assert (result.registered_domain, result.public_suffix) == (None, "localhost")

    # A TLD the list does not know counts as a suffix (the list's own rule).
    result = canonicalize("http://printer.lan/")
    assert (result.registered_domain, result.public_suffix) == ("printer.lan", "lan")

    result = canonicalize("http://пример.рф/")
    assert result.registered_domain == "xn--e1afmkfd.xn--p1ai"


# --- what is refused ---------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("example.com", "no scheme"),
        ("", "no scheme"),
        ("javascript:alert(1)", "'javascript' is not supported"),
        ("mailto:a@example.com", "'mailto' is not supported"),
        ("hxxp://evil.example/", "'hxxp' is not supported"),
        ("data:text/html,<b>x</b>", "'data' is not supported"),
        ("http://", "no host"),
        ("http:///", "no host"),
        ("http://user@/", "no host"),
        ("http://exa mple.com/", "contains a space"),
        ("http://exa\u3000mple.com/", "contains a space"),
        ("http://a..b/", "empty label"),
        ("http://./", "empty label"),
        ("http://a.b../", "empty label"),
        ("http://a!b.com/", "contains '!'"),
        ("http://example.com:99999/", "not a number from 0 to 65535"),
        ("http://example.com:8o/", "not a number from 0 to 65535"),
        ("http://example.com:-1/", "not a number from 0 to 65535"),
        ("http://999.1.1.1/", "above 255"),
        ("http://1.2.3.4.5/", "5 parts"),
        ("http://4294967296/", "out of the IPv4 range"),
        ("http://example.123/", "ends in a number"),
        ("http://09.1.1.1/", "ends in a number"),
        ("http://1_0.1/", "ends in a number"),
        ("http://[::1/", "cannot be split"),
        ("http://[v1.x]/", "not an IPv6 address"),
        ("http://[fe80::1%25eth0]/", "zone identifier"),
        ("http://[::1]x/", "after the IPv6 address"),
        ("http://%zz.com/", "not allowed"),
        ("http://%ff.com/", "not UTF-8"),
        ("http://example.com/" + "a" * 2048, "limit is 2048"),
        ("http://example.com/" + "é" * 700, "once percent-encoded"),
        ("http://\ud800.com/", "surrogate"),
    ],
)
def test_invalid_urls_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(InvalidURL, match=message.replace("(", r"\(")):
        canonicalize(url)


def test_invalid_url_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        canonicalize("nope")


# --- properties --------------------------------------------------------------

_LABEL = st.one_of(
    st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9_-]{0,10}[a-zA-Z0-9])?", fullmatch=True),
    st.sampled_from(["bücher", "пример", "例子", "i❤", "xn--bcher-kva", "ПРИМЕР", "ß"]),
)
_TLD = st.sampled_from(
    ["com", "co.uk", "de", "рф", "xn--p1ai", "github.io", "zip", "lan"]
)
_HOSTS = st.one_of(
    st.builds(
        lambda labels, tld, dot: ".".join([*labels, tld]) + dot,
        st.lists(_LABEL, min_size=1, max_size=3),
        _TLD,
        st.sampled_from(["", "."]),
    ),
    st.integers(0, 2**32 - 1).map(str),
    st.integers(0, 2**32 - 1).map(hex),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda address: f"[{address}]"),
    st.just("localhost"),
)
_PATH_PIECES = st.sampled_from(
    [*"aB/.é ~'([|\\:@+=&;,", "..", "%2e", "%2F", "%41", "%7e", "%", "%zz"]
)
_QUERY_FIELDS = st.one_of(
    st.sampled_from(["", "a=1", "b", "q=a b", "c=%41", "d=%", "e=é", "f=1&g=2"]),
    st.sampled_from(["utm_source=x", "UTM_Medium=y", "fbclid=1", "si=2"]),
)
generated_urls = st.builds(
    lambda scheme, user, host, port, path, query, fragment: (
        f"{scheme}{user}{host}{port}{path}{query}{fragment}"
    ),
    st.sampled_from(
        ["http://", "https://", "HTTPS://", "ftp://", "http:/\\", "https:"]
    ),
    st.sampled_from(["", "user@", "user:pw@", "www.bank.com@", "a@b@", ":pw@"]),
    _HOSTS,
    st.sampled_from(["", ":80", ":443", ":21", ":8080", ":0", ":"]),
    st.lists(_PATH_PIECES, max_size=12).map(lambda pieces: "/" + "".join(pieces)),
    st.lists(_QUERY_FIELDS, max_size=5).map(lambda f: "?" + "&".join(f) if f else ""),
    st.sampled_from(["", "#", "#frag", "#a?b"]),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(generated_urls)
def test_canonicalisation_is_idempotent(url: str) -> None:
    try:
        first = canonicalize(url)
    except InvalidURL:
        return
    assert canonicalize(first.url) == first


@settings(max_examples=300)
@given(
    st.one_of(
        st.text(),
        st.text().map(lambda text: "http://" + text),
        st.text().map(lambda text: "https://example.com/" + text),
    )
)
def test_arbitrary_text_gives_a_canonical_url_or_invalid_url(text: str) -> None:
    try:
        first = canonicalize(text)
    except InvalidURL:
        return
    assert canonicalize(first.url) == first


@settings(max_examples=150)
@given(generated_urls)
def test_parts_agree_with_the_url(url: str) -> None:
    try:
        result = canonicalize(url)
    except InvalidURL:
        return
    assert result.url.startswith(f"{result.scheme}://")
    assert result.path.startswith("/")
    assert result.host == result.host.lower()
    assert result.host.isascii()
    assert not result.host.endswith(".")
    assert "#" not in result.url
    assert "utm_" not in result.query.lower()
    if not result.is_ip:
        assert result.labels == tuple(result.host.split("."))
        assert result.public_suffix is not None
        assert result.host.endswith(result.public_suffix)


def test_canonical_url_is_a_plain_value() -> None:
    result = canonicalize("https://example.com/")
    assert isinstance(result, CanonicalURL)
    with pytest.raises(AttributeError):
        result.url = "x"  # type: ignore[misc]


# --- with the extractor, on real URLs ----------------------------------------


def test_extracted_links_canonicalise(shared_data: Path) -> None:
    with (shared_data / "urls" / "labelled_train.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))

    invalid = []
    for row in rows:
        try:
            result = canonicalize(row["url"])
        except InvalidURL:
            invalid.append(row["url"])
            continue
        assert canonicalize(result.url) == result

        # A few URLs in the set hold a space, so the first link must match
        # and every link must canonicalise.
        links = [canonicalize(link.url) for link in extract_links(row["url"]).links]
        assert links[0].host == result.host, row["url"]

    assert invalid == []


def test_defanged_and_plain_links_meet_in_the_canonical_form() -> None:
    message = (
        "hxxps://WWW[.]Example[.]com:443/a/../b?utm_source=wa and www.example.com/b"
    )
    canonical = {canon(link.url) for link in extract_links(message).links}
    assert canonical == {"https://www.example.com/b", "http://www.example.com/b"}
