"""The canonical form of a URL: one spelling for each place a link goes.

The scanner keys its cache, its overrides and its feed matches on this form,
so two links that a browser opens the same way must canonicalise to the same
string, and a canonical URL must canonicalise to itself.

Where browsers and the RFCs disagree, this follows what a browser does with
the link, because that is where the group member ends up (the WHATWG URL
standard): a backslash before the query is a slash (``http://evil.com\\@bank.com``
goes to evil.com), any number of slashes may follow the scheme, the host is
percent-decoded and mapped with UTS 46, and a host that ends in a number is
an IPv4 address in decimal, octal or hex (``http://3232235777/`` is
192.168.1.1). Splitting is left to :func:`urllib.parse.urlsplit`.

Choices beyond that:

- Schemes: http, https and ftp; anything else is an :class:`InvalidURL`.
- Credentials: the user name is kept, because ``https://bank.com@evil.example``
  is how a link pretends to be the bank; the password is dropped.
- Hosts that are not valid IDNA 2008 (emoji, symbols) are still encoded
  with Punycode after UTS 46 mapping, as browsers do, rather than refused:
  a link that opens must get a verdict.
- Lengths of DNS labels are not enforced; browsers do not enforce them.
- ``registered_domain`` follows the whole Public Suffix List, private
  section included, and a TLD the list does not know counts as a public
  suffix (the list's own default rule).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urlsplit

import idna
from publicsuffixlist import PublicSuffixList

__all__ = [
    "DEFAULT_PORTS",
    "MAX_URL_LENGTH",
    "TRACKING_PARAMETERS",
    "CanonicalURL",
    "InvalidURL",
    "canonicalize",
]

MAX_URL_LENGTH = 2048

DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21}

# Query parameters that only say where a click came from. Names are compared
# in lower case after percent-decoding; every name starting with "utm_" goes
# too.
TRACKING_PARAMETERS = frozenset(
    {
        "fbclid",  # Facebook
        "gclid",  # Google Ads
        "gclsrc",
        "dclid",
        "gbraid",
        "wbraid",
        "srsltid",  # Google Merchant Center
        "_ga",  # Google Analytics cross-domain linker
        "_gl",
        "msclkid",  # Microsoft Ads
        "mc_eid",  # Mailchimp
        "mc_cid",
        "igshid",  # Instagram
        "igsh",
        "yclid",  # Yandex
        "ysclid",
        "_hsenc",  # HubSpot
        "_hsmi",
        "__hstc",
        "__hssc",
        "__hsfp",
        "hsctatracking",
        "ref_src",  # Twitter / X
        "ref_url",
        "twclid",
        "ttclid",  # TikTok
        "li_fat_id",  # LinkedIn
        "mkt_tok",  # Marketo
        "oly_anon_id",  # Omeda
        "oly_enc_id",
        "rb_clickid",
        "vero_id",
        "wickedid",
    }
)

# Parameters that are tracking only on some sites: YouTube's and Spotify's
# share links add "si", which elsewhere may be a real parameter.
_SITE_TRACKING_PARAMETERS = {
    "si": frozenset({"youtube.com", "youtu.be", "spotify.com"}),
}

# Whitespace and C0 controls around a URL, which browsers ignore.
_SURROUNDING_SPACE = re.compile(
    r"""
    \A [\s\x00-\x20]+ | [\s\x00-\x20]+ \Z
    """,
    re.VERBOSE,
)
_SCHEME = re.compile(
    r"""
    ( [A-Za-z] [A-Za-z0-9+.\-]* ) :  # RFC 3986, section 3.1
    """,
    re.VERBOSE,
)
# An ASCII host after IDNA: labels of letters, digits, "-" and "_" (which
# browsers accept in host names, and some phishing subdomains use).
_HOST_SYNTAX = re.compile(
    r"""
    [a-z0-9_\-]+ (?: \. [a-z0-9_\-]+ )*
    """,
    re.VERBOSE,
)
# The digits of one part of an IPv4 host, by radix. int() alone would also
# take "1_0" and "+1".
_IPV4_DIGITS = {
    16: re.compile(r"[0-9a-fA-F]*  # after 0x; may be empty", re.VERBOSE),
    8: re.compile(r"[0-7]*  # after a leading 0", re.VERBOSE),
    10: re.compile(r"[0-9]+", re.VERBOSE),
}
_UNRESERVED = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
)
_HEX = frozenset("0123456789abcdefABCDEF")


class InvalidURL(ValueError):
    """The text is not a URL the scanner can check; the message says why."""


@dataclass(frozen=True, slots=True)
class CanonicalURL:
    """A URL in canonical form, with the parts the checks look at.

    Attributes:
        url: the canonical URL as one string.
        scheme: ``http``, ``https`` or ``ftp``.
        host: lower-case ASCII host (Punycode for IDN), no trailing dot;
            IPv4 in dotted form, IPv6 compressed and without brackets.
        host_unicode: the host in Unicode, for display and confusable checks.
        port: None when it is the scheme's default.
        path: never empty; dot segments resolved, percent-encoding normalised
            (upper-case hex, unreserved characters decoded).
        query: without tracking parameters, others in their order; "" when
            nothing is left.
        username: the user name before the host, if any (the password is
            dropped).
        is_ip: the host is an IPv4 or IPv6 address.
        registered_domain: eTLD+1 under the whole Public Suffix List
            (``x.github.io`` for ``a.x.github.io``); None for IPs and for a
            host that is itself a public suffix.
        icann_registered_domain: eTLD+1 under the ICANN section only
            (``github.io`` for ``a.x.github.io``).
        public_suffix: the suffix ``registered_domain`` was cut at (``github.io``
            for ``x.github.io``); None for IPs.
        labels: the host's labels (ASCII); empty for IPs.
    """

    url: str
    scheme: str
    host: str
    host_unicode: str
    port: int | None
    path: str
    query: str
    username: str | None
    is_ip: bool
    registered_domain: str | None
    icann_registered_domain: str | None
    public_suffix: str | None
    labels: tuple[str, ...]


def canonicalize(url: str) -> CanonicalURL:
    """Put a URL in canonical form.

    Args:
        url: an absolute http, https or ftp URL, as found in a message
            (already refanged).

    Returns:
        The canonical URL and its parts. ``canonicalize(c.url) == c`` for
        every result ``c``.

    Raises:
        InvalidURL: the URL is longer than 2048 characters, has no scheme or
            one other than http, https and ftp, has no host, a host that is
            not a name or address, or a port that is not a number from 0 to
            65535. Nothing else is raised, whatever the input.
    """
    parts = _split(url)
    scheme = parts.scheme

    host, host_unicode, is_ip = _host(parts)
    port = _port(parts)
    if port == DEFAULT_PORTS[scheme]:
        port = None

    username = None
    if parts.username:
        username = _normalise_percent(parts.username, _USERINFO_SAFE) or None

    path = _remove_dot_segments(_normalise_percent(parts.path, _PATH_SAFE) or "/")

    if is_ip:
        registered = icann_registered = suffix = None
        labels: tuple[str, ...] = ()
    else:
        registered = _suffixes(icann_only=False).privatesuffix(host)
        icann_registered = _suffixes(icann_only=True).privatesuffix(host)
        suffix = _suffixes(icann_only=False).publicsuffix(host)
        labels = tuple(host.split("."))

    query = _strip_tracking(
        _normalise_percent(parts.query, _QUERY_SAFE), registered or host
    )

    netloc = host if ":" not in host else f"[{host}]"
    if username is not None:
        netloc = f"{username}@{netloc}"
    if port is not None:
        netloc = f"{netloc}:{port}"
    canonical = f"{scheme}://{netloc}{path}"
    if query:
        canonical = f"{canonical}?{query}"
    if len(canonical) > MAX_URL_LENGTH:
        # Percent-encoding can triple a path; a canonical form over the limit
        # could not be canonicalised again.
        raise InvalidURL(
            f"URL is {len(canonical)} characters long once percent-encoded;"
            f" the limit is {MAX_URL_LENGTH}"
        )

    return CanonicalURL(
        url=canonical,
        scheme=scheme,
        host=host,
        host_unicode=host_unicode,
        port=port,
        path=path,
        query=query,
        username=username,
        is_ip=is_ip,
        registered_domain=registered,
        icann_registered_domain=icann_registered,
        public_suffix=suffix,
        labels=labels,
    )


def _split(url: str) -> SplitResult:
    """Check the outline of the URL and split it with urllib."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidURL(
            f"URL is {len(url)} characters long; the limit is {MAX_URL_LENGTH}"
        )
    try:
        url.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidURL("URL contains a lone surrogate character") from None

    # Browsers ignore spaces and control characters around a URL, and tabs
    # and newlines inside it.
    text = _SURROUNDING_SPACE.sub("", url)
    text = text.translate({ord("\t"): None, ord("\n"): None, ord("\r"): None})

    scheme_match = _SCHEME.match(text)
    if scheme_match is None:
        raise InvalidURL(f"URL {_short(url)} has no scheme such as https://")
    scheme = scheme_match.group(1).lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidURL(
            f"scheme {scheme!r} is not supported; expected http, https or ftp"
        )

    # For these schemes browsers skip any run of slashes and backslashes
    # after the colon ("https:/\evil.example"), and read a backslash before
    # the query as a slash.
    rest = text[scheme_match.end() :].lstrip("/\\")
    cut = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=None)
    if cut is None:
        rest = rest.replace("\\", "/")
    else:
        rest = rest[:cut].replace("\\", "/") + rest[cut:]

    try:
        return urlsplit(f"{scheme}://{rest}")
    except ValueError as error:
        raise InvalidURL(f"URL {_short(url)} cannot be split: {error}") from None


def _host(parts: SplitResult) -> tuple[str, str, bool]:
    """The ASCII host, its Unicode form, and whether it is an IP address."""
    authority = parts.netloc.rpartition("@")[2]
    hostname = parts.hostname
    if not hostname:
        raise InvalidURL(f"URL {_short(parts.geturl())} has no host")

    if authority.startswith("["):
        address = _ipv6(hostname, authority)
        return address, address, True

    try:
        host = unquote(hostname, errors="strict")
    except UnicodeDecodeError:
        raise InvalidURL(
            f"host {hostname!r} has percent-escapes that are not UTF-8"
        ) from None
    if any(char.isspace() for char in host):
        raise InvalidURL(f"host {host!r} contains a space")

    ascii_host = _to_ascii(host)
    if ascii_host.endswith("."):
        ascii_host = ascii_host[:-1]
    if not _HOST_SYNTAX.fullmatch(ascii_host):
        bad = next((c for c in ascii_host if not (c.isalnum() or c in "._-")), None)
        if bad is None:
            raise InvalidURL(f"host {host!r} has an empty label")
        raise InvalidURL(f"host {host!r} contains {bad!r}, not allowed in a host")

    if _ends_in_number(ascii_host):
        address = _ipv4(ascii_host)
        return address, address, True

    return ascii_host, _to_unicode(ascii_host), False


def _to_ascii(host: str) -> str:
    if host.isascii():
        return host.lower()

    try:
        # Maps case, full-width forms and the ideographic full stop ("。"),
        # as a browser does before looking the name up.
        mapped = idna.uts46_remap(host, std3_rules=False, transitional=False)
    except idna.IDNAError as error:
        raise InvalidURL(f"host {host!r} is not a valid name: {error}") from None
    return ".".join(_label_to_ascii(label) for label in mapped.split("."))


def _label_to_ascii(label: str) -> str:
    if label.isascii():
        return label
    try:
        return idna.alabel(label).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        # Not IDNA 2008 (emoji, symbols, joiners) but browsers still open it
        # after UTS 46 mapping; encode it the same way so it gets a verdict.
        return "xn--" + label.encode("punycode").decode("ascii")


def _to_unicode(host: str) -> str:
    return ".".join(_label_to_unicode(label) for label in host.split("."))


def _label_to_unicode(label: str) -> str:
    if not label.startswith("xn--"):
        return label
    try:
        return idna.ulabel(label)
    except (idna.IDNAError, UnicodeError, ValueError):
        pass
    try:
        return label[4:].encode("ascii").decode("punycode")
    except (UnicodeError, ValueError, IndexError):
        return label


def _ipv6(hostname: str, authority: str) -> str:
    closing = authority.find("]")
    after = authority[closing + 1 :]
    if after and not after.startswith(":"):
        raise InvalidURL(f"host {authority!r} has text after the IPv6 address")
    if "%" in hostname:
        # Browsers do not accept zone identifiers either.
        raise InvalidURL(f"host [{hostname}] has an IPv6 zone identifier")
    try:
        return ipaddress.IPv6Address(hostname).compressed
    except ValueError:
        raise InvalidURL(f"host [{hostname}] is not an IPv6 address") from None


def _ends_in_number(host: str) -> bool:
    last = host.rpartition(".")[2]
    return last.isdigit() or (
        last[:2] == "0x" and _IPV4_DIGITS[16].fullmatch(last[2:]) is not None
    )


def _ipv4(host: str) -> str:
    """Parse an IPv4 host the way browsers do: 1 to 4 parts, each decimal,
    octal (leading 0) or hex (0x), the last filling the remaining bytes."""
    parts = host.split(".")
    if len(parts) > 4:
        raise InvalidURL(f"host {host!r} ends in a number but has {len(parts)} parts")

    numbers = [_ipv4_number(part, host) for part in parts]
    if any(number > 255 for number in numbers[:-1]):
        raise InvalidURL(f"host {host!r} has an IPv4 part above 255")
    if numbers[-1] >= 256 ** (5 - len(numbers)):
        raise InvalidURL(f"host {host!r} is out of the IPv4 range")

    address = numbers[-1]
    for index, number in enumerate(numbers[:-1]):
        address += number * 256 ** (3 - index)
    return str(ipaddress.IPv4Address(address))


def _ipv4_number(part: str, host: str) -> int:
    radix = 10
    digits = part
    if part[:2] == "0x":
        radix, digits = 16, part[2:]
    elif len(part) > 1 and part[0] == "0":
        radix, digits = 8, part[1:]

    if not _IPV4_DIGITS[radix].fullmatch(digits):
        raise InvalidURL(f"host {host!r} ends in a number but {part!r} is not one")
    return int(digits, radix) if digits else 0


def _port(parts: SplitResult) -> int | None:
    try:
        return parts.port
    except ValueError:
        port = parts.netloc.rpartition("@")[2].rpartition(":")[2]
        raise InvalidURL(f"port {port!r} is not a number from 0 to 65535") from None


# Characters left as they are in each part; everything else outside the
# unreserved set is percent-encoded (RFC 3986, sections 3.2.1, 3.3, 3.4).
_SUB_DELIMS = "!$&'()*+,;="
_USERINFO_SAFE = _UNRESERVED | frozenset(_SUB_DELIMS)
_PATH_SAFE = _USERINFO_SAFE | frozenset(":@/")
_QUERY_SAFE = _PATH_SAFE | frozenset("?")


def _normalise_percent(text: str, safe: frozenset[str]) -> str:
    """Upper-case escapes, decode unreserved ones, escape what must be.

    A "%" that starts no escape becomes "%25": left alone, "%%41" would turn
    into "%A" + "1" = "%A1" on the next pass, and canonical forms must not
    change when canonicalised again.
    """
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "%":
            pair = text[index + 1 : index + 3]
            if len(pair) == 2 and pair[0] in _HEX and pair[1] in _HEX:
                decoded = chr(int(pair, 16))
                out.append(decoded if decoded in _UNRESERVED else "%" + pair.upper())
                index += 3
                continue
            out.append("%25")
        elif char in safe:
            out.append(char)
        else:
            out.extend(f"%{byte:02X}" for byte in char.encode("utf-8"))
        index += 1
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    """Resolve "." and ".." segments; the result keeps a trailing slash."""
    segments = path.split("/")[1:]
    kept: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "..":
            if kept:
                kept.pop()
        elif segment != ".":
            kept.append(segment)
            continue
        if last:
            kept.append("")
    return "/" + "/".join(kept)


def _strip_tracking(query: str, domain: str) -> str:
    if not query:
        return ""
    kept = []
    for field in query.split("&"):
        name = unquote(field.partition("=")[0]).lower()
        if name.startswith("utm_") or name in TRACKING_PARAMETERS:
            continue
        if domain in _SITE_TRACKING_PARAMETERS.get(name, ()):
            continue
        kept.append(field)
    return "&".join(kept)


def _short(url: str) -> str:
    return repr(url if len(url) <= 80 else url[:77] + "...")


@functools.cache
def _suffixes(*, icann_only: bool) -> PublicSuffixList:
    # Built once per process from the list bundled with the package; nothing
    # is downloaded.
    return PublicSuffixList(only_icann=icann_only)


def without_password(url: str) -> str:
    """``url`` as written, less any password in its user info.

    What wabscan stores, logs or shows of a link never carries a secret that
    was in it (``https://admin:hunter2@host/`` becomes
    ``https://admin@host/``); the user name stays, since it is evidence
    (``https://www.bank.com@evil.example/``).
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority_end = len(rest)
    for mark in "/?#":
        found = rest.find(mark)
        if found != -1:
            authority_end = min(authority_end, found)
    authority = rest[:authority_end]
    userinfo, at, host = authority.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}@{host}{rest[authority_end:]}"
