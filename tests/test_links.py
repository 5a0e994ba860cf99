"""Finding links in message text: examples for every shape, and properties."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wabscan.links import Extraction, FoundLink, defang, extract_links, refang


def urls(text: str) -> list[str]:
    return [link.url for link in extract_links(text).links]


def texts(text: str) -> list[str]:
    return [link.text for link in extract_links(text).links]


# --- what is a link ----------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("https://example.com", ["https://example.com"]),
        ("see http://example.com/a?b=c#d now", ["http://example.com/a?b=c#d"]),
        ("HTTPS://EXAMPLE.COM/X", ["HTTPS://EXAMPLE.COM/X"]),
        ("www.example.com", ["http://www.example.com"]),
        ("WWW.Example.org/path", ["http://WWW.Example.org/path"]),
        ("www2.example.net", ["http://www2.example.net"]),
        ("paypa1-secure.com/login", ["http://paypa1-secure.com/login"]),
        ("example.co.uk", ["http://example.co.uk"]),
        ("visit blogspot.com today", ["http://blogspot.com"]),
        (
            "claude.ai allegro.pl notion.so",
            ["http://claude.ai", "http://allegro.pl", "http://notion.so"],
        ),
        ("wa.me/123456789", ["http://wa.me/123456789"]),
        ("chat.whatsapp.com/AbCdEf123", ["http://chat.whatsapp.com/AbCdEf123"]),
        ("evil.com/setup.exe", ["http://evil.com/setup.exe"]),
        ("a-b.example.com:8080/x", ["http://a-b.example.com:8080/x"]),
    ],
)
def test_plain_links(message: str, expected: list[str]) -> None:
    assert urls(message) == expected


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("https://bücher.de", ["https://bücher.de"]),
        ("bücher.de/katalog", ["http://bücher.de/katalog"]),
        ("пример.рф", ["http://пример.рф"]),
        ("https://xn--bcher-kva.de/", ["https://xn--bcher-kva.de/"]),
        ("xn--e1afmkfd.xn--p1ai", ["http://xn--e1afmkfd.xn--p1ai"]),
        # Devanagari vowel signs are combining marks, not \w: the host must
        # not stop at the first one.
        ("https://उदाहरण.भारत/", ["https://उदाहरण.भारत/"]),
        ("ไทย.ไทย", ["http://ไทย.ไทย"]),
        (
            "https://ru.wikipedia.org/wiki/Пример",
            ["https://ru.wikipedia.org/wiki/Пример"],
        ),
    ],
)
def test_international_hosts_and_punycode(message: str, expected: list[str]) -> None:
    assert urls(message) == expected


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("*https://example.com/a*", "https://example.com/a"),
        ("_https://example.com/a_", "https://example.com/a"),
        ("~https://example.com/a~", "https://example.com/a"),
        ("```https://example.com/a```", "https://example.com/a"),
        ("*example.com*", "example.com"),
        ("_example.com_", "example.com"),
        ("~www.example.org~", "www.example.org"),
        ("(https://example.com/a)", "https://example.com/a"),
        ("[https://example.com/a]", "https://example.com/a"),
        ("{https://example.com/a}", "https://example.com/a"),
        ("<https://example.com/a>", "https://example.com/a"),
        ("“https://example.com/a”", "https://example.com/a"),
        ("‘https://example.com/a’", "https://example.com/a"),
        ("'https://example.com/a'", "https://example.com/a"),
        ('"https://example.com/a"', "https://example.com/a"),
        ("«example.com»", "example.com"),
        ("「https://example.com/a」", "https://example.com/a"),
        ("👉https://example.com/a👈", "https://example.com/a"),
        ("👉example.com", "example.com"),
        ("*_https://example.com/a_*", "https://example.com/a"),
    ],
)
def test_formatting_brackets_and_quotes_are_not_part_of_the_link(
    message: str, expected: str
) -> None:
    assert texts(message) == [expected]


@pytest.mark.parametrize("after", [*".,;:!?…", "...", "?!", ").", ")", "]", "'", '"'])
def test_trailing_punctuation_is_not_part_of_the_link(after: str) -> None:
    assert texts(f"go to https://example.com/a{after} now") == ["https://example.com/a"]
    assert texts(f"go to example.com{after}") == ["example.com"]


def test_balanced_parentheses_stay_in_the_link() -> None:
    wiki = "https://en.wikipedia.org/wiki/Foo_(bar)"
    assert texts(wiki) == [wiki]
    assert texts(f"(see {wiki})") == [wiki]
    assert texts(f"(see {wiki}).") == [wiki]
    assert texts("https://example.com/a[1]") == ["https://example.com/a[1]"]
    assert texts("(https://example.com/a(b)c)") == ["https://example.com/a(b)c"]


def test_the_path_ends_at_a_space_or_full_width_punctuation() -> None:
    assert texts("看这个https://example.com/a，很好") == ["https://example.com/a"]
    assert texts("https://example.com/a»") == ["https://example.com/a"]
    assert texts("https://example.com/a\u200bb") == ["https://example.com/a"]
    assert texts("https://example.com/a\u202eb") == ["https://example.com/a"]
    assert texts("https://example.com/a\nhttps://example.org/") == [
        "https://example.com/a",
        "https://example.org/",
    ]


@pytest.mark.parametrize(
    ("message", "text", "url"),
    [
        ("hxxp://evil.example/x", "hxxp://evil.example/x", "http://evil.example/x"),
        (
            "hxxps://evil[.]example/x",
            "hxxps://evil[.]example/x",
            "https://evil.example/x",
        ),
        ("HXXPS://EVIL[.]COM", "HXXPS://EVIL[.]COM", "https://EVIL.COM"),
        ("evil[.]com", "evil[.]com", "http://evil.com"),
        ("evil(.)com/login", "evil(.)com/login", "http://evil.com/login"),
        ("evil[dot]com", "evil[dot]com", "http://evil.com"),
        ("evil[DOT]com", "evil[DOT]com", "http://evil.com"),
        ("http[:]//evil.com", "http[:]//evil.com", "http://evil.com"),
        (
            "hxxps[:]//evil[.]com[:]8443/a",
            "hxxps[:]//evil[.]com[:]8443/a",
            "https://evil.com:8443/a",
        ),
        ("hxxp://1[.]2[.]3[.]4/x", "hxxp://1[.]2[.]3[.]4/x", "http://1.2.3.4/x"),
        ("see evil[.]com/a[.]php[.]", "evil[.]com/a[.]php", "http://evil.com/a.php"),
        ("www[.]evil[.]com", "www[.]evil[.]com", "http://www.evil.com"),
    ],
)
def test_defanged_links_are_refanged(message: str, text: str, url: str) -> None:
    (link,) = extract_links(message).links
    assert (link.text, link.url, link.defanged) == (text, url, True)


def test_plain_links_are_not_marked_defanged() -> None:
    (link,) = extract_links("https://example.com/a").links
    assert link.defanged is False


def test_credentials_before_the_host() -> None:
    assert urls("https://www.bank.com@evil.example/") == [
        "https://www.bank.com@evil.example/"
    ]
    assert urls("https://user:secret@example.com/x") == [
        "https://user:secret@example.com/x"
    ]
    assert urls("hxxps://www[.]bank[.]com@evil[.]com/") == [
        "https://www.bank.com@evil.com/"
    ]
    # Without a scheme, a path after the host makes it credentials, as a
    # browser reads it; without one it is an e-mail address.
    assert urls("bank.com@evil.xyz/login") == ["http://bank.com@evil.xyz/login"]
    assert urls("write to bank.com@evil.xyz") == []


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("http://192.168.0.1:8080/x", ["http://192.168.0.1:8080/x"]),
        ("192.168.0.1:8080", ["http://192.168.0.1:8080"]),
        ("10.0.0.1/admin", ["http://10.0.0.1/admin"]),
        ("http://[2001:db8::1]:8443/a", ["http://[2001:db8::1]:8443/a"]),
        ("http://[::1]/", ["http://[::1]/"]),
        ("http://3232235777/", ["http://3232235777/"]),
        ("http://0xC0A80001/", ["http://0xC0A80001/"]),
        ("http://localhost:8000/", ["http://localhost:8000/"]),
        ("http://example.com./a", ["http://example.com./a"]),
    ],
)
def test_ip_literals_ports_and_special_hosts(message: str, expected: list[str]) -> None:
    assert urls(message) == expected


@pytest.mark.parametrize(
    "message",
    [
        "a.b@c.com",
        "mail me at first.last+tag@example.co.uk.",
        "mailto:someone@example.com",
        "1.2.3",
        "v2.0",
        "version 10.4.1 is out",
        "report.pdf",
        "IMG-2024.jpg",
        "IMG_0001.MOV",
        "setup.exe",
        "report.zip",
        "notes.md",
        "install.sh",
        "main.py",
        "Main.java",
        "at 10.30 sharp",
        "pi is 3.14",
        "e.g. this, i.e. that",
        "U.S.A. and a.m. / p.m.",
        "192.168.0.1",
        "ok.You there?",
        "the end.Click here",
        "co.uk",
        "localhost",
        "http://",
        "http://http://",
        "http://[:]/",
        "just text, no links at all",
        "",
    ],
)
def test_not_links(message: str) -> None:
    assert urls(message) == []


def test_file_extension_and_capital_rules_give_way_to_a_path() -> None:
    assert urls("evil.zip/x") == ["http://evil.zip/x"]
    assert urls("https://report.zip") == ["https://report.zip"]
    assert urls("www.report.zip") == ["http://www.report.zip"]
    assert urls("Example.Com/login") == ["http://Example.Com/login"]
    assert urls("EXAMPLE.COM") == ["http://EXAMPLE.COM"]
    assert urls("Example.com") == ["http://Example.com"]


def test_several_links_in_order_and_duplicates_once() -> None:
    message = "a.com, b.com and https://a.com/x then a.com again; b.com."
    assert urls(message) == ["http://a.com", "http://b.com", "https://a.com/x"]


def test_positions_point_into_the_message() -> None:
    message = "1 *hxxps://evil[.]com/a*, 2 (www.example.org)"
    found = extract_links(message).links
    assert [(link.start, link.end) for link in found] == [(3, 23), (29, 44)]
    for link in found:
        assert message[link.start : link.end] == link.text


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("请访问example.com获取", ["http://example.com"]),
        ("看这个https://example.com/a", ["https://example.com/a"]),
        ("ดูที่example.comนะ", ["http://example.com"]),
        ("example.com에서", ["http://example.com"]),
        ("例子.中国", ["http://例子.中国"]),
        ("linkhttps://example.com/a", ["https://example.com/a"]),
        ("see:hxxps://evil[.]com", ["https://evil.com"]),
    ],
)
def test_links_run_into_words(message: str, expected: list[str]) -> None:
    assert urls(message) == expected


def test_a_url_inside_a_url_is_one_link() -> None:
    message = "https://a.example/r?to=https://b.example/x"
    assert urls(message) == [message]


def test_backslash_is_kept_for_the_canonicaliser() -> None:
    # Browsers read "\" as "/", so this goes to evil.com: keep it in the link
    # and let canonicalisation decide the host.
    assert urls("http://evil.com\\@google.com/") == ["http://evil.com\\@google.com/"]


# --- caps --------------------------------------------------------------------


def test_max_links_counts_distinct_urls_dropped() -> None:
    message = " ".join(f"site{n}.com" for n in range(30)) + " site0.com site29.com"
    result = extract_links(message, max_links=20)
    assert len(result.links) == 20
    assert result.dropped_over_cap == 10
    assert result.dropped_too_long == 0


def test_max_url_length_drops_and_counts() -> None:
    long_url = "https://example.com/" + "a" * 100
    message = f"{long_url} short.com {long_url} https://example.org/" + "b" * 200
    result = extract_links(message, max_url_length=50)
    assert [link.url for link in result.links] == ["http://short.com"]
    assert result.dropped_too_long == 2
    assert result.dropped_over_cap == 0


def test_too_long_links_do_not_use_up_the_cap() -> None:
    message = "https://example.com/" + "a" * 100 + " one.com two.com"
    result = extract_links(message, max_links=2, max_url_length=50)
    assert urls_of(result) == ["http://one.com", "http://two.com"]
    assert (result.dropped_over_cap, result.dropped_too_long) == (0, 1)


def test_max_links_zero_returns_nothing() -> None:
    result = extract_links("a.com b.com", max_links=0)
    assert result == Extraction([], 2, 0)


def urls_of(result: Extraction) -> list[str]:
    return [link.url for link in result.links]


# --- refang and defang -------------------------------------------------------


@pytest.mark.parametrize(
    ("defanged", "plain"),
    [
        ("hxxps://evil[.]example/x", "https://evil.example/x"),
        ("hXXp://a(.)b[dot]c[:]80", "http://a.b.c:80"),
        ("hxxps[:]//x[.]y", "https://x.y"),
        # hxxp only where a scheme stands.
        ("the hxxp word", "the hxxp word"),
        # A marker wrapped in its own brackets is left alone: refanging it
        # would make a new marker.
        ("a[[.]]b", "a[[.]]b"),
        ("a([.])b", "a([.])b"),
        ("a[[.])b", "a[.)b"),
    ],
)
def test_refang(defanged: str, plain: str) -> None:
    assert refang(defanged) == plain
    assert refang(plain) == plain


@pytest.mark.parametrize(
    ("url", "defanged"),
    [
        ("https://evil.example/x", "hxxps://evil[.]example/x"),
        (
            "http://evil.example/a.php?u=b.com",
            "hxxp://evil[.]example/a[.]php?u=b[.]com",
        ),
        ("HTTPS://EVIL.COM", "hxxps://EVIL[.]COM"),
        ("evil.com/x", "evil[.]com/x"),
        ("ftp://files.example", "ftp://files[.]example"),
    ],
)
def test_defang(url: str, defanged: str) -> None:
    assert defang(url) == defanged


def test_defanged_reply_is_not_a_plain_link_but_refangs_back() -> None:
    url = "https://www.bank.com@evil.example.com/login.php?next=paypal.com"
    reply = defang(url)
    assert re.search(r"\w\.\w", reply) is None
    assert extract_links(reply.replace("[.]", "·")).links == []
    (link,) = extract_links(f"Careful: {reply}").links
    assert (link.url, link.defanged) == (url, True)


# --- speed on hostile input --------------------------------------------------


@pytest.mark.parametrize(
    "hostile",
    [
        "a." * 50000,
        "http://" * 10000,
        "[.]" * 30000,
        "hxxp[:]//" * 10000,
        "a@" * 50000,
        "a," * 50000,
        "1." * 50000,
        "x.com:" * 20000,
        "https://example.com/" + ")" * 100000,
        "https://example.com/" + ".," * 50000,
        "https://example.com/" + "[.]" * 30000,
        "http://[" + ":" * 100000,
        "a" + "-" * 100000,
        "a" + "_" * 100000,
        "http://" + "a" * 300 + "@" * 1000,
        "www." * 25000,
        "é\u0301." * 30000,
    ],
    ids=lambda s: repr(s[:12]),
)
def test_hostile_input_completes(hostile: str) -> None:
    # No time limit here: the patterns are possessive and a failed candidate
    # is skipped whole, so these finish in well under a second; a regression
    # to backtracking would make this test hang rather than fail slowly.
    result = extract_links(hostile)
    assert len(result.links) <= 20


# --- properties --------------------------------------------------------------

_PIECES = [
    *"ab.-_/:@[]()?#*~'\"<>,;!hxtpsw0129 AZ{}$=&%\\\n",
    "[.]",
    "(.)",
    "[dot]",
    "[:]",
    "hxxp://",
    "https://",
    "http[:]//",
    "www.",
    ".com",
    ".co.uk",
    ".zip",
    ".You",
    "é",
    "ा",
    "\u0301",
    "\ufe0f",
    "\u200b",
    "…",
    "😀",
    "%2e",
    "xn--",
    "[[.]]",
    "。",
    "localhost",
    "0x",
    "[::1]",
]

# Text made of the pieces links are made of, which finds far more corner
# cases than arbitrary Unicode does; arbitrary Unicode is tested as well.
link_soup = st.lists(st.sampled_from(_PIECES), max_size=60).map("".join)
messages = st.one_of(st.text(), link_soup)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(messages)
def test_every_link_is_its_text_refanged_and_stable(message: str) -> None:
    result = extract_links(message)

    found = result.links
    assert len({link.url for link in found}) == len(found)
    assert [link.start for link in found] == sorted(link.start for link in found)
    for link in found:
        assert message[link.start : link.end] == link.text
        refanged = refang(link.text)
        added = link.url[: len(link.url) - len(refanged)]
        assert link.url.endswith(refanged)
        assert added in ("", "http://")
        assert link.defanged == (refanged != link.text)

        again = extract_links(link.url).links
        assert [other.url for other in again] == [link.url]
        assert again[0].text == link.url


@settings(max_examples=200)
@given(messages)
def test_refang_is_idempotent(message: str) -> None:
    once = refang(message)
    assert refang(once) == once


@settings(max_examples=200)
@given(link_soup)
def test_defang_round_trips_through_extraction(message: str) -> None:
    for link in extract_links(message).links:
        if "[.]" in link.url or "(.)" in link.url:
            continue  # dots already wrapped in brackets: see defang()
        assert refang(defang(link.url)) == link.url
        again = extract_links(defang(link.url)).links
        assert [(other.url, other.defanged) for other in again] == [(link.url, True)]


@given(st.text(max_size=5000))
def test_never_raises_on_long_text(message: str) -> None:
    extract_links(message * 20)


hosts = st.from_regex(r"[a-z][a-z0-9]{0,8}\.(com|org|co\.uk|de)", fullmatch=True)


@given(
    st.lists(hosts, min_size=0, max_size=40),
    st.integers(min_value=0, max_value=25),
    st.integers(min_value=10, max_value=40),
)
def test_caps_and_drop_counts(
    host_list: list[str], max_links: int, max_url_length: int
) -> None:
    message = " ".join(host_list)
    result = extract_links(message, max_links=max_links, max_url_length=max_url_length)

    distinct = list(dict.fromkeys(f"http://{host}" for host in host_list))
    fitting = [url for url in distinct if len(url) <= max_url_length]
    assert urls_of(result) == fitting[:max_links]
    assert result.dropped_over_cap == max(0, len(fitting) - max_links)
    assert result.dropped_too_long == len(distinct) - len(fitting)


# --- real URLs ---------------------------------------------------------------


def test_labelled_urls_are_found_in_a_sentence(shared_data: Path) -> None:
    with (shared_data / "urls" / "labelled_train.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))

    wrong = []
    for row in rows:
        url = row["url"]
        found = extract_links(f"look at this: {url} !").links
        # Trailing punctuation and formatting characters are trimmed on
        # purpose (":", "_", "?" at the very end), and a few URLs in the set
        # contain spaces or backticks; the host must always come through.
        host = url.split("://", 1)[-1].split("/", 1)[0]
        if not found or host not in found[0].url or not url.startswith(found[0].url):
            wrong.append(url)

    assert len(wrong) <= len(rows) // 1000, wrong[:20]


def test_found_link_is_a_plain_value() -> None:
    link = FoundLink("a.com", "http://a.com", 0, 5, False)
    assert link == FoundLink("a.com", "http://a.com", 0, 5, False)
    with pytest.raises(AttributeError):
        link.url = "x"  # type: ignore[misc]
