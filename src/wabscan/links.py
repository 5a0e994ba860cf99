"""Finding the links in the text of a WhatsApp message.

People paste links in every shape a chat allows: with and without a scheme,
inside WhatsApp's ``*bold*``/``_italic_``/``~strike~`` markers, in brackets
and quotes, at the end of a sentence, and, when they pass on a warning,
defanged (``hxxps://evil[.]example``). :func:`extract_links` finds all of
them and says exactly where each one was written, so that a reply can quote
it; :func:`refang` and :func:`defang` turn the defanged spelling into a URL
and back.

Rules that decide what counts as a link:

- A scheme (``http://``, ``https://``, or ``hxxp(s)://`` / ``http[:]//``
  defanged) makes a link of any host with a dot, any IP literal (including
  the numeric ``http://3232235777/`` forms), and ``localhost``. Credentials
  before the host are part of the link (``https://www.bank.com@evil.example``
  goes to ``evil.example``).
- ``www.`` followed by at least two more labels, the last made of letters,
  is a link.
- Any other ``name.suffix`` is a link only when ``suffix`` ends in a public
  suffix from the ICANN section of the Public Suffix List and there is a
  label before it (``example.co.uk`` yes, ``co.uk`` and ``report.pdf`` no).
  Two exceptions keep ordinary chat text out when nothing follows the host
  (no port, path, query or fragment): a last label that is a common file
  extension as well as a TLD (``report.zip``, ``notes.md``, ``setup.sh``,
  ``main.py``, ``Main.java``, ``IMG_0001.MOV``), and a Capitalised last label,
  which is a sentence with a missing space (``ok.You``, ``the end.Click``).
  Add a path and both are links again (``evil.zip/x``).
- A dotted-quad IPv4 address without a scheme is a link only with a port or
  a path after it; on its own it reads as a version number.
- ``a.b@example.com`` is an e-mail address, not a link. With a path or port
  after the host (``bank.com@evil.example/login``) it is a link with
  credentials, as a browser would read it.

This runs on every message the bridge sees, so the work is kept linear in
the length of the message: the full pattern is tried only at a scheme or a
dot, every repetition in it is possessive (no backtracking), and a candidate
that fails is skipped whole.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import unicodedata
from dataclasses import dataclass

from publicsuffixlist import PublicSuffixList

__all__ = ["Extraction", "FoundLink", "defang", "extract_links", "refang"]


@dataclass(frozen=True, slots=True)
class FoundLink:
    """One link as it was written in a message.

    Attributes:
        text: exactly ``message[start:end]``.
        url: ``text`` refanged, with ``http://`` in front when it was written
            without a scheme; otherwise the text as written (case and all).
        start: index of the first character of the link in the message.
        end: index just past the last character of the link.
        defanged: the text was written defanged (``hxxp``, ``[.]``, ``(.)``,
            ``[dot]``, ``[:]``).
    """

    text: str
    url: str
    start: int
    end: int
    defanged: bool


@dataclass(frozen=True, slots=True)
class Extraction:
    """The links of one message and what was left out.

    Attributes:
        links: in order of appearance; a URL that appears twice is kept once,
            at its first appearance.
        dropped_over_cap: distinct URLs found after ``max_links`` were kept.
        dropped_too_long: distinct URLs longer than ``max_url_length``; they
            are neither returned nor counted towards ``max_links``.
    """

    links: list[FoundLink]
    dropped_over_cap: int
    dropped_too_long: int


# Last labels that are TLDs but, with nothing after them, far more often end
# a file name in a chat than a domain. Country codes that are also file
# extensions (.pl, .rs, .ps, .ai, .so, .in) are left out of this set on
# purpose: whole countries write those domains bare every day.
_FILE_EXTENSION_TLDS = frozenset({"zip", "mov", "md", "sh", "py", "java"})

# A DNS name is at most 253 characters; longer runs are not hosts.
_MAX_HOST_LENGTH = 253

# An e-mail local part longer than this is not taken for credentials. It is
# the same bound the scheme pattern puts on credentials, so a link found
# here is found again in its own URL.
_MAX_USERINFO = 256

# What may end a link without being part of it: sentence punctuation and
# WhatsApp's formatting markers.
_TRAILING = frozenset(".,;:!?'*_~")
_CLOSER_OF = {")": "(", "]": "[", "}": "{"}

_DEFANG_TOKEN = re.compile(
    r"""
    # hxxp:// and hxxps://, only where a scheme stands, so that words with
    # "hxxp" in them are left alone.
    (?P<scheme> h xx p (?P<s> s? ) (?= (?: : | \[:\] ) // ) )
    | (?P<dot> \[\.\] | \(\.\) | \[dot\] )
    | (?P<colon> \[:\] )
    """,
    re.IGNORECASE | re.VERBOSE,
)

# A defanged dot or colon ending a candidate; it is trailing punctuation.
_TRAILING_TOKEN = re.compile(
    r"""
    (?: \[\.\] | \(\.\) | \[dot\] | \[:\] ) \Z
    """,
    re.IGNORECASE | re.VERBOSE,
)

_DOTTED_QUAD = re.compile(
    r"""
    (?: 25[0-5] | 2[0-4][0-9] | 1[0-9][0-9] | [1-9]?[0-9] )
    (?: \. (?: 25[0-5] | 2[0-4][0-9] | 1[0-9][0-9] | [1-9]?[0-9] ) ){3}
    """,
    re.VERBOSE,
)

# Single-label hosts that follow a scheme and still make a link: decimal,
# octal and hex IPv4 numbers (http://3232235777/, which phishers use), and
# localhost. Anything else without a dot ("http://http") is a typo.
_SINGLE_LABEL_HOST = re.compile(
    r"""
    [0-9]+ | 0x[0-9a-f]* | localhost
    """,
    re.IGNORECASE | re.VERBOSE,
)

_WWW = re.compile(
    r"""
    www [0-9]{0,3}  # www, www2, www10
    """,
    re.IGNORECASE | re.VERBOSE,
)

# A scheme at the end of a run of labels, and the slashes after it:
# "foo.barhttps://" is a word run into a link.
_SCHEME_AT_END = re.compile(
    r"""
    h (?: tt | xx ) p s? \Z
    """,
    re.IGNORECASE | re.VERBOSE,
)
_SCHEME_SLASHES = re.compile(
    r"""
    (?: : | \[:\] ) //
    """,
    re.VERBOSE,
)


def extract_links(
    text: str, *, max_links: int = 20, max_url_length: int = 2048
) -> Extraction:
    """Find the links in the text of one message.

    Args:
        text: the message text (plain, extended text or caption).
        max_links: how many distinct URLs to return at most; the rest are
            counted in ``dropped_over_cap``.
        max_url_length: URLs longer than this many characters are counted in
            ``dropped_too_long`` and not returned.

    Returns:
        The links in order of appearance, each URL once, with the counts of
        what was dropped.

    Example:
        >>> [link.url for link in extract_links("see *hxxps://evil[.]co/x*.").links]
        ['https://evil.co/x']
    """
    links: list[FoundLink] = []
    seen: set[str] = set()
    over_cap: set[str] = set()
    too_long: set[str] = set()

    # Every link has a scheme or a dot. Looking for those first and matching
    # the full pattern only there is what makes a message without links
    # cheap: a regex search that tried a host at every word cost 20 times
    # more on ordinary text.
    pos = 0
    while (anchor := _ANCHOR.search(text, pos)) is not None:
        match = _candidate_at(text, anchor, floor=pos)
        if match is None:
            pos = anchor.end()
            continue

        link, pos = _judge(text, match)
        if link is None or link.url in seen:
            continue

        if len(link.url) > max_url_length:
            too_long.add(link.url)
        elif len(links) < max_links:
            seen.add(link.url)
            links.append(link)
        else:
            over_cap.add(link.url)

    return Extraction(links, len(over_cap), len(too_long))


def refang(text: str) -> str:
    """Undo defanging: ``hxxps://evil[.]example`` becomes ``https://evil.example``.

    ``hxxp``/``hxxps`` are rewritten only where a scheme stands (followed by
    ``://`` or ``[:]//``); ``[.]``, ``(.)``, ``[dot]`` (any case) become ``.``
    and ``[:]`` becomes ``:``. A marker directly wrapped in a matching bracket
    pair, as in ``[[.]]``, is left as written: refanging it would make a new
    marker, and ``refang`` must give the same result when applied twice.

    Args:
        text: any text.

    Returns:
        The text with every defanged marker replaced.
    """
    return _DEFANG_TOKEN.sub(_refang_token, text)


def defang(url: str) -> str:
    """Write a URL so that WhatsApp does not make it clickable in a reply.

    The scheme becomes ``hxxp``/``hxxps`` and every dot becomes ``[.]``, in
    the path as well, because WhatsApp would otherwise link a domain that
    appears in a query string. ``refang(defang(url)) == url`` for every URL
    without a dot directly wrapped in brackets (``[.]`` in a URL is already a
    marker).

    Args:
        url: a URL, with or without a scheme.

    Returns:
        The defanged spelling, for example ``hxxps://evil[.]example/x``.
    """
    head, sep, rest = url.partition("://")
    if not sep:
        head, rest = "", url
    elif head.lower() in ("http", "https"):
        head = "hxxp" + head[4:].lower()
    return head + sep + rest.replace(".", "[.]")


def _refang_token(token: re.Match[str]) -> str:
    if token.group("scheme") is not None:
        return "https" if token.group("s") else "http"

    whole = token.string
    before = whole[token.start() - 1] if token.start() > 0 else ""
    after = whole[token.end()] if token.end() < len(whole) else ""
    if before + after in ("[]", "()"):
        return token.group()

    return "." if token.group("dot") is not None else ":"


def _candidate_at(
    text: str, anchor: re.Match[str], *, floor: int
) -> re.Match[str] | None:
    """Match the candidate around a scheme or a dot, or None."""
    pattern = _candidate_pattern()
    if anchor.group("scheme") is not None:
        match = pattern.match(text, anchor.start())
        return match if match is not None and match.group("scheme") else None

    start = _run_start(text, anchor.start(), floor=floor)
    if start is None:
        return None
    match = pattern.match(text, start)
    return match if match is not None and match.group("bare") else None


def _run_start(text: str, dot: int, *, floor: int) -> int | None:
    """Where the labels before a dot start: back over letters, digits, marks,
    hyphens and underscores, not across a change between a script written
    with spaces and one without, and not before ``floor``."""
    label_char = _label_char()
    start = dot
    unspaced: bool | None = None
    while start > floor:
        char = text[start - 1]
        if char in "-_":
            unspaced = None
        elif label_char.match(char):
            is_unspaced = _UNSPACED_CHAR.match(char) is not None
            if unspaced is not None and is_unspaced != unspaced:
                break
            unspaced = is_unspaced
        else:
            break
        start -= 1

    # A label starts with a letter or digit: skip "_" of "_example.com_" and
    # the variation selector after an emoji.
    while start < dot and not text[start].isalnum():
        start += 1
    return start if start < dot else None


def _judge(text: str, match: re.Match[str]) -> tuple[FoundLink | None, int]:
    """Decide whether one candidate is a link.

    Returns the link (or None) and where the search for the next candidate
    resumes: past the whole candidate, so that nothing is read twice.
    """
    start = match.start()
    if match.group("scheme") is not None:
        return _judge_with_scheme(text, match), match.end()

    host_end = match.end("bare")
    scheme = _SCHEME_AT_END.search(text, start, host_end)
    if (
        scheme is not None
        and scheme.start() > start
        and _SCHEME_SLASHES.match(text, host_end)
    ):
        # A word run into a scheme ("linkhttps://..."): look again from the
        # scheme.
        return None, scheme.start()
    if host_end < len(text) and text[host_end] == "@":
        return _judge_userinfo(text, start, host_end)
    if host_end - start > 4 * _MAX_HOST_LENGTH:
        return None, match.end()

    end = _trim(text, start, match.end(), floor=host_end)
    has_tail = end > host_end
    if start > 0 and text[start - 1] == "@" and not has_tail:
        # The domain of an e-mail address whose local part was not a host
        # run ("first+last@example.com").
        return None, match.end()

    host = refang(text[start:host_end])
    if not _bare_host_is_link(host, has_tail=has_tail):
        return None, match.end()
    return _found(text, start, end, "http://"), match.end()


def _judge_with_scheme(text: str, match: re.Match[str]) -> FoundLink | None:
    host = refang(match.group("host"))
    if host.startswith("["):
        if not _is_ipv6_literal(host):
            return None
    elif "." not in host.rstrip(".") and not _SINGLE_LABEL_HOST.fullmatch(host):
        return None

    # A fully qualified name's final dot may go with trailing punctuation:
    # "http://example.com.:" ends a sentence.
    floor = match.start("fqdn_dot")
    if floor < 0:
        floor = match.end("host")
    end = _trim(text, match.start(), match.end(), floor=floor)
    return _found(text, match.start(), end, "")


def _judge_userinfo(text: str, start: int, at: int) -> tuple[FoundLink | None, int]:
    """A host run followed by ``@``: an e-mail address or credentials."""
    after = _candidate_pattern().match(text, at + 1)
    if after is None or after.group("bare") is None:
        return None, at + 1

    host_end = after.end("bare")
    end = _trim(text, start, after.end(), floor=host_end)
    if end == host_end or at - start > _MAX_USERINFO:
        return None, after.end()
    if not _bare_host_is_link(refang(after.group("bare")), has_tail=True):
        return None, after.end()
    return _found(text, start, end, "http://"), after.end()


def _found(text: str, start: int, end: int, scheme: str) -> FoundLink:
    written = text[start:end]
    refanged = refang(written)
    return FoundLink(written, scheme + refanged, start, end, refanged != written)


def _trim(text: str, start: int, end: int, *, floor: int) -> int:
    """Move ``end`` back over what follows a link but is not part of it.

    Trailing punctuation and formatting markers go, and so do closing
    brackets without a partner inside the link: ``(see example.com/a)``
    loses its ``)`` but ``/wiki/Foo_(bar)`` keeps it. Never moves past
    ``floor`` (the end of the host).
    """
    counts: dict[str, int] = {}

    while end > floor:
        last = text[end - 1]
        if last in "])":
            token = _TRAILING_TOKEN.search(text, max(floor, end - 5), end)
            if token is not None:
                # Its brackets are a matched pair: the balance is unchanged.
                if counts:
                    counts[token.group()[0]] -= 1
                    counts[last] -= 1
                end = token.start()
                continue

        if last in _TRAILING:
            end -= 1
            continue
        if last not in _CLOSER_OF:
            break

        if not counts:
            # Counted once, and only for links that end in a bracket.
            counts = {bracket: text.count(bracket, start, end) for bracket in "()[]{}"}
        if counts[last] <= counts[_CLOSER_OF[last]]:
            break
        counts[last] -= 1
        end -= 1

    return end


def _bare_host_is_link(host: str, *, has_tail: bool) -> bool:
    """Whether a host written without a scheme is meant as a link."""
    if len(host) > _MAX_HOST_LENGTH:
        return False
    if _DOTTED_QUAD.fullmatch(host):
        return has_tail

    labels = host.split(".")
    if len(labels) < 2:
        return False
    last = labels[-1]

    if _WWW.fullmatch(labels[0]) and len(labels) >= 3:
        return last.isalpha() or last.lower().startswith("xn--")

    if not _is_tld(last.lower()):
        return False
    if _icann_suffixes().privatesuffix(host.lower(), accept_unknown=False) is None:
        return False
    if has_tail:
        return True
    if last.lower() in _FILE_EXTENSION_TLDS:
        return False
    return not (last[0].isupper() and any(char.islower() for char in last))


def _is_ipv6_literal(host: str) -> bool:
    address = host[1:-1].partition("%25")[0]
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return False
    return True


@functools.cache
def _icann_suffixes() -> PublicSuffixList:
    # The ICANN section only: "blogspot.com" and "github.io" written bare
    # are links to those sites, though the private section lists them as
    # suffixes. The list is the one bundled with the package; nothing is
    # downloaded.
    return PublicSuffixList(only_icann=True)


@functools.lru_cache(maxsize=4096)
def _is_tld(label: str) -> bool:
    # A cheap first test that settles most words with a dot in them
    # ("ok.so", "3.14") before the full suffix lookup.
    return _icann_suffixes().publicsuffix(label, accept_unknown=False) is not None


@functools.cache
def _mark_class() -> str:
    """The body of a character class that matches every combining mark.

    Python's ``\\w`` covers letters and digits but not combining marks, so
    without them a Hindi host would end at its first vowel sign. Built from
    :mod:`unicodedata` rather than kept as a table that goes stale with
    Python's Unicode version. Ranges are merged across gaps of letters,
    digits and unassigned code points (which ``\\w`` takes anyway or which
    never occur), which keeps the class at about 130 ranges: the class is
    repeated in the patterns, and the exact 300-range one made compiling
    them take over a second.
    """
    ranges: list[list[int]] = []
    gap_is_wordlike = False
    for code in range(0x300, 0x1F000):
        category = unicodedata.category(chr(code))
        if category[0] == "M":
            if ranges and gap_is_wordlike:
                ranges[-1][1] = code
            else:
                ranges.append([code, code])
            gap_is_wordlike = True
        elif category[0] not in "LN" and category != "Cn":
            gap_is_wordlike = False
    return "".join(f"\\U{first:08x}-\\U{last:08x}" for first, last in ranges)


# Scripts written without spaces between words: Thai, Lao, Myanmar, Khmer,
# Hangul, kana and Han. A host label is either all in these or has none of
# them, so that "请访问example.com获取" gives example.com and
# "看这个https://..." does not swallow the scheme; a label such as
# "请访问example" is not one a registry hands out.
_UNSPACED = (
    r"\u0e00-\u0eff\u1000-\u109f\u1100-\u11ff\u1780-\u17ff\u3040-\u30ff"
    r"\u3130-\u318f\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
    r"\uf900-\ufaff\U00020000-\U0003134f"
)


_UNSPACED_CHAR = re.compile(
    rf"""
    [{_UNSPACED}]
    """,
    re.VERBOSE,
)

# Where a candidate can be: every link has a scheme or a dot.
_ANCHOR = re.compile(
    r"""
    (?P<scheme> h (?: tt | xx ) p s? (?: : | \[:\] ) // )
    | \. | \[\.\] | \(\.\) | \[dot\]  # a dot, plain or defanged
    """,
    re.IGNORECASE | re.VERBOSE,
)


@functools.cache
def _label_char() -> re.Pattern[str]:
    return re.compile(
        rf"""
        [^\W_]              # a letter or digit of any script
        | [{_mark_class()}]  # or a combining mark
        """,
        re.VERBOSE,
    )


@functools.cache
def _candidate_pattern() -> re.Pattern[str]:
    marks = _mark_class()
    label_char = rf"(?: [^\W_] | [{marks}] )"
    spaced_start = rf"(?: (?! [{_UNSPACED}] ) [^\W_] )"
    spaced_char = rf"(?: (?! [{_UNSPACED}] ) {label_char} )"
    unspaced_start = rf"(?: (?= [^\W_] ) [{_UNSPACED}] )"
    dot = r"(?: \. | \[\.\] | \(\.\) | \[dot\] )"
    colon = r"(?: : | \[:\] )"
    # Labels start and end with a letter, digit or mark, and hyphens and
    # underscores only join them: "_example.com_" is example.com, and the
    # variation selector after an emoji does not start a host.
    unit = rf"(?: {spaced_start} {spaced_char}*+ | {unspaced_start} [{_UNSPACED}]*+ )"
    hostname = rf"{unit} (?: (?: [-_]++ | {dot} ) {unit} )*+"
    # Without a scheme a host needs a dot.
    bare_hostname = rf"{unit} (?: [-_]++ {unit} )*+ {dot} {hostname}"
    # What RFC 3986 allows in a path, query and fragment and browsers take
    # unescaped (the backslash too: browsers read it as "/"), and letters,
    # digits and marks of any script. Whitespace, quotes, <>, symbols, emoji
    # and CJK or full-width punctuation end a link in running text.
    path_char = (
        rf"(?: [A-Za-z0-9\-._~:/?\#\[\]@!$&'()*+,;=%\\{{}}|]"
        rf" | [^\x00-\x7f\W] | [{marks}] )"
    )
    user_char = rf"(?: [\w\-.~%!$&'()*+,;=:] | [{marks}] )"

    return re.compile(
        rf"""
        (?:
            # A scheme as written, or defanged: hxxps://, http[:]//.
            (?P<scheme> h (?: tt | xx ) p s? {colon} // )
            # Credentials: "https://www.bank.com@evil.example/" goes to
            # evil.example. Bounded, so that a run without an @ costs at
            # most 256 steps for each scheme in the text.
            (?P<userinfo> (?: {user_char} | {dot} | \[:\] ){{1,256}}+ @ )?
            (?P<host>
                # An IPv6 literal: at least two colons, so that a defanged
                # "[:]" is not taken for one.
                \[ [0-9a-f.]*+ : [0-9a-f.]*+ : [0-9a-f:.]*+ (?: %25 [\w.~-]++ )? \]
              | {hostname}
                # A fully qualified name's final dot, when the link goes on.
                (?P<fqdn_dot> {dot} (?= [/\\?\#:] ) )?
            )
          |
            # No scheme: a run of labels, judged afterwards (public suffix,
            # www., e-mail address, file name).
            (?P<bare> {bare_hostname} )
        )
        # A port; "example.com:80abc" has none.
        (?P<port> {colon} [0-9]{{1,5}}+ (?! {label_char} ) )?
        (?P<path> [/\\?\#] {path_char}*+ )?
        """,
        re.IGNORECASE | re.VERBOSE,
    )
