"""Feeds of known sites: reading the files, importing them, looking URLs up.

A feed is a file of entries of three kinds:

- ``domain``: a host, matching itself and every subdomain;
- ``url``: a URL prefix without its scheme (``evil.com/a`` matches
  ``http://evil.com/a/b`` and ``https://evil.com/a?x``, not ``evil.com/ab``);
- ``ip``: an address, or a network in CIDR notation.

Files come in many shapes (one entry a line, hosts files, adblock rules, JSON,
``rank,domain`` CSV); :func:`parse_feed` reads them all into entries in the
form the scanner compares with, so a lookup is an exact, indexed match.
"""

from __future__ import annotations

import csv
import hashlib
import ipaddress
import json
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sqlite_utils import Database

from wabscan.errors import InputError
from wabscan.scanner.canonical import CanonicalURL, canonicalize
from wabscan.storage import format_time, transaction, utc_now

FEED_CATEGORIES: Final = (
    "phishing",
    "malware",
    "suspicious",
    "free-hosting",
    "dynamic-dns",
    "parking",
    "allow",
)

Progress = Callable[[int, int], None]

# The kind is written into the SQL, never bound: a bound value in a term on
# the column of the partial index feed_entries_host makes SQLite prepare the
# statement again at every execution (it might make that index usable).
# Measured on the 141k-domain feed: 30-38 us a lookup bound, 5-7 us literal.
_KIND_IS: Final = {kind: f"kind = '{kind}'" for kind in ("domain", "url", "ip")}

# How many skipped lines an import remembers for its warning summary.
SKIPPED_LINES_KEPT = 10


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """One entry of a feed, normalised.

    Attributes:
        kind: ``domain``, ``url`` or ``ip``.
        value: lower-case IDNA host; or the canonical URL without its scheme;
            or an address (``192.0.2.1``) or network (``192.0.2.0/24``).
        host: the host the entry concerns (the value itself for a domain or
            an address).
        line: the line of the file it came from (for JSON, its position in
            the list).
    """

    kind: str
    value: str
    host: str
    line: int


@dataclass(frozen=True, slots=True)
class SkippedLine:
    """A line that was not an entry, and why (for the import's warning)."""

    line: int
    text: str
    reason: str


class _Skip(Exception):
    """A line that is not an entry; the message says why."""


# -- reading files ------------------------------------------------------------


def parse_feed(path: str | Path) -> ParsedFeed:
    """Read a feed file into normalised entries, lazily.

    Lines that are not entries are skipped and counted on the returned
    iterator (``skipped``, ``first_skipped``); comments, blank lines, headers
    and hosts-file boilerplate (``127.0.0.1 localhost``) are not counted.

    Args:
        path: the feed file.

    Returns:
        An iterator of :class:`FeedEntry`, in file order, duplicates included.

    Raises:
        InputError: at once if the file cannot be read, is binary or is not
            UTF-8; at the end of iteration if not one line was an entry
            (naming the first bad line).
    """
    path = Path(path)
    return ParsedFeed(path, _read(path))


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(str(path), f"cannot read the feed: {exc.strerror}") from None


class ParsedFeed(Iterator[FeedEntry]):
    """The entries of one feed file; see :func:`parse_feed`.

    Attributes:
        lines: the number of lines in the file.
        line: the line reached so far (for progress reports).
        entries: entries yielded so far.
        skipped: lines skipped so far as not entries.
        skipped_lines: their line numbers.
        first_skipped: the first few of them with the reason, for a warning.
    """

    def __init__(self, path: Path, data: bytes) -> None:
        self.path = path
        self.where = str(path)
        self.text = _decode(self.where, data)
        self.lines = self.text.count("\n") + (not self.text.endswith("\n"))
        self.line = 0
        self.entries = 0
        self.skipped = 0
        self.skipped_lines: list[int] = []
        self.first_skipped: list[SkippedLine] = []
        self._items = self._parse()

    def __next__(self) -> FeedEntry:
        try:
            entry = next(self._items)
        except StopIteration:
            self.line = self.lines
            if self.entries == 0:
                raise self._nothing_valid() from None
            raise
        self.entries += 1
        return entry

    def _nothing_valid(self) -> InputError:
        if not self.first_skipped:
            return InputError(self.where, "no feed entries (empty or only comments)")
        first = self.first_skipped[0]
        return InputError(
            f"{self.where}:{first.line}",
            f"no valid feed entry; first bad line {first.text[:80]!r}: {first.reason}",
        )

    def _skip(self, line: int, text: str, reason: str) -> None:
        self.skipped += 1
        self.skipped_lines.append(line)
        if len(self.first_skipped) < SKIPPED_LINES_KEPT:
            self.first_skipped.append(SkippedLine(line, text.strip(), reason))

    def _parse(self) -> Iterator[FeedEntry]:
        head = self.text.lstrip()
        if head.startswith("{") or (
            head.startswith("[") and not head.lower().startswith("[adblock")
        ):
            items = self._json_items()
            if items is not None:
                yield from self._entries(items)
                return
        # Split on "\n" only, as grep -n and editors count lines (splitlines()
        # would also split on form feeds and Unicode separators); the "\r" of
        # a CRLF file goes with the other surrounding white space.
        lines = self.text.split("\n")
        if lines[-1] == "":
            lines.pop()
        column = _csv_column(lines)
        if column is None:
            yield from self._entries(enumerate(lines, start=1))
        else:
            yield from self._csv_entries(lines, *column)

    def _entries(self, numbered: Iterable[tuple[int, str]]) -> Iterator[FeedEntry]:
        for number, text in numbered:
            self.line = number
            try:
                found = _line_entries(text)
            except _Skip as why:
                self._skip(number, text, str(why))
                continue
            for kind, value, host in found:
                yield FeedEntry(kind, value, host, number)

    def _csv_entries(
        self, lines: list[str], column: int, header_line: int
    ) -> Iterator[FeedEntry]:
        for number, text in enumerate(lines, start=1):
            self.line = number
            stripped = text.strip()
            if number == header_line or not stripped or stripped.startswith("#"):
                continue
            try:
                row = _csv_fields(stripped)
                if len(row) <= column:
                    raise _Skip(f"no column {column + 1}")
                kind, value, host = _entry(row[column].strip())
            except _Skip as why:
                self._skip(number, text, str(why))
                continue
            yield FeedEntry(kind, value, host, number)

    def _json_items(self) -> list[tuple[int, str]] | None:
        try:
            data = json.loads(self.text)
        except json.JSONDecodeError as exc:
            if self.text.lstrip().startswith("{"):
                raise InputError(
                    f"{self.where}:{exc.lineno}", f"not valid JSON: {exc.msg}"
                ) from None
            return None  # a text feed whose first line happens to start with [
        if isinstance(data, dict):
            lists = [data[k] for k in _JSON_KEYS if isinstance(data.get(k), list)]
            if not lists:
                raise InputError(
                    self.where,
                    "a JSON feed object needs a list under one of: "
                    + ", ".join(_JSON_KEYS),
                )
            values: list[Any] = [v for lst in lists for v in lst]
        elif isinstance(data, list):
            values = data
        else:
            raise InputError(self.where, "a JSON feed must be a list or an object")
        items: list[tuple[int, str]] = []
        for position, value in enumerate(values, start=1):
            if isinstance(value, str):
                items.append((position, value))
            else:
                self._skip(position, json.dumps(value)[:80], "not a string")
        return items


_JSON_KEYS: Final = ("domains", "hosts", "urls", "links", "ips", "entries")


def _decode(where: str, data: bytes) -> str:
    nul = data.find(b"\0")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise InputError(f"{where}:{line}", "binary data, not a text feed")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(f"{where}:{line}", "not UTF-8 text") from None


_CSV_HEADER_NAMES: Final = ("domain", "host", "hostname", "url", "site", "ip")


def _csv_fields(line: str) -> list[str]:
    # The csv module refuses fields over 128 KiB with csv.Error: such a line
    # is not an entry, whatever else the file holds.
    try:
        return next(csv.reader([line]))
    except csv.Error as exc:
        raise _Skip(f"not a CSV line: {exc}") from None


def _csv_column(lines: list[str]) -> tuple[int, int] | None:
    """Which column holds the entries and which line is the header, if CSV.

    A file is CSV only if its first entry line has a comma and either names
    a known column or starts with a number (a rank): a plain URL list may
    contain commas in its URLs.
    """
    for number, text in enumerate(lines, start=1):
        stripped = text.strip()
        if not stripped or stripped[0] in "#!;":
            continue
        if "," not in stripped:
            return None
        try:
            fields = [f.strip().lower() for f in _csv_fields(stripped)]
        except _Skip:
            return None
        for name in _CSV_HEADER_NAMES:
            if name in fields:
                return fields.index(name), number
        if fields[0].isdigit() and len(fields) > 1:
            return 1, 0
        return None
    return None


# -- one line -----------------------------------------------------------------

_INLINE_COMMENT = re.compile(r"\s[#;]")
_COSMETIC = re.compile(r"#[@?$%]?#")

# Names a hosts file maps for the machine itself, not as a block.
_HOSTS_BOILERPLATE: Final = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "local",
        "broadcasthost",
        "ip6-localhost",
        "ip6-loopback",
        "ip6-localnet",
        "ip6-mcastprefix",
        "ip6-allnodes",
        "ip6-allrouters",
        "ip6-allhosts",
        "0.0.0.0",
    }
)


def _line_entries(text: str) -> list[tuple[str, str, str]]:
    """The entries on one text line: none for a comment, several for a
    hosts-file line naming several hosts."""
    line = text.strip()
    if _ASCII_HOST.fullmatch(line):
        # Most lines of most feeds are one plain domain: skip the general
        # path (which costs 3-4x more, mostly in ipaddress) when it is one.
        labels = line.split(".")
        if (
            not labels[-1].isdigit()
            and len(line) <= 253
            and max(map(len, labels)) <= 63
        ):
            return [("domain", line, line)]
    if not line or line[0] in "#!;":
        return []
    if line[0] == "[" and line[-1] == "]" and _ip(line) is None:
        return []  # "[Adblock Plus 2.0]" and other section headers
    cut = _INLINE_COMMENT.search(line)
    if cut:
        line = line[: cut.start()].strip()
    if line.startswith("@@"):
        raise _Skip("adblock exception rules are not supported")
    if _COSMETIC.search(line):
        raise _Skip("adblock element-hiding rules are not entries")
    if line.startswith("|"):
        return [_entry(_adblock_target(line))]
    if len(line) > 1 and line[0] == "/" and line[-1] == "/":
        raise _Skip("regular expressions are not supported")

    fields = line.split()
    if len(fields) == 1:
        return [_entry(fields[0])]
    if _ip(fields[0]) is None:
        raise _Skip("more than one field on the line")
    # A hosts-file line: "0.0.0.0 evil.com [more.evil.com ...]".
    return [_entry(f) for f in fields[1:] if f.lower() not in _HOSTS_BOILERPLATE]


def _adblock_target(rule: str) -> str:
    # ||evil.com^  ||evil.com^$third-party  ||evil.com/path^  |http://evil.com/|
    body = rule.split("$", 1)[0]
    body = body[2:] if body.startswith("||") else body[1:]
    body = body.rstrip("|").rstrip("^")
    if not body or "*" in body or "^" in body:
        raise _Skip("adblock wildcard rules are not supported")
    return body


def _entry(token: str) -> tuple[str, str, str]:
    """Classify and normalise one entry: ``(kind, value, host)``."""
    token = token.strip().replace("[.]", ".")
    if not token:
        raise _Skip("empty entry")
    scheme, sep, rest = token.partition("://")
    if sep:
        scheme = scheme.lower()
        if scheme in ("hxxp", "hxxps"):  # defanged, as some feeds publish
            scheme = "http" + scheme[4:]
        if scheme not in ("http", "https", "ftp"):
            raise _Skip(f"not a web address (scheme {scheme!r})")
        return _url_entry(f"{scheme}://{rest}")

    if "/" in token:
        network = _network(token)
        if network is not None:
            return network
        return _url_entry("http://" + token)
    if "?" in token or "#" in token:
        return _url_entry("http://" + token)
    address = _ip(token)
    if address is not None:
        return ("ip", address, address)
    if ":" in token:
        port = token.rsplit(":", 1)[1]
        if not port.isdigit():
            raise _Skip("not a domain, URL or IP address")
        return _url_entry("http://" + token)
    if token.startswith("*."):  # wildcard domains: the domain kind covers them
        token = token[2:]
    host = _domain(token.lstrip("."))
    return ("domain", host, host)


def _url_entry(url: str) -> tuple[str, str, str]:
    try:
        canonical = canonicalize(url)
    except ValueError as exc:  # InvalidURL, and idna's UnicodeError
        raise _Skip(f"not a valid URL: {exc}") from None
    return ("url", scheme_less(canonical), canonical.host)


def scheme_less(canonical: CanonicalURL) -> str:
    """The form URL entries are stored and looked up in: host, port, path
    and query of the canonical URL, without scheme or user name.

    http and https name the same site as far as a feed is concerned, and a
    user name (``https://bank.com@evil.example/x``) does not change where
    the link goes.
    """
    host = f"[{canonical.host}]" if ":" in canonical.host else canonical.host
    port = "" if canonical.port is None else f":{canonical.port}"
    query = f"?{canonical.query}" if canonical.query else ""
    return f"{host}{port}{canonical.path}{query}"


# Lower-case ASCII hostnames. Underscores are not valid in hostnames but are in
# DNS names, and phishing feeds list hosts such as a_b.example.com that
# browsers do resolve.
_ASCII_HOST = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)+")


def _domain(token: str) -> str:
    host = token.strip().rstrip(".").lower()
    if not host.isascii() or "%" in host:
        # IDN (and percent-escaped) names: let canonicalize() map and encode
        # them exactly as it will the hosts of scanned links. The characters
        # that would make it read a user name, port or path are refused first.
        if any(c in host for c in "@:/\\?#"):
            raise _Skip("not a domain, URL or IP address")
        try:
            canonical = canonicalize(f"http://{host}/")
        except ValueError as exc:
            raise _Skip(f"not a valid domain: {exc}") from None
        if canonical.is_ip:
            raise _Skip("an IP address written as a name")
        host = canonical.host
    if not _ASCII_HOST.fullmatch(host):
        if "." not in host and re.fullmatch(r"[a-z0-9_-]+", host):
            raise _Skip("a single label is not a site")
        raise _Skip("not a domain, URL or IP address")
    labels = host.split(".")
    if len(host) > 253 or any(len(label) > 63 for label in labels):
        raise _Skip("domain name too long")
    if labels[-1].isdigit():
        raise _Skip("not a domain (numeric top-level label) nor an IP address")
    return host


_NOT_AN_IP = re.compile(r"[^0-9a-fA-F:.\[\]%]")


def _ip(token: str) -> str | None:
    if _NOT_AN_IP.search(token):  # letters beyond hex: a name, not an address
        return None
    try:
        return str(ipaddress.ip_address(token.strip("[]")))
    except ValueError:
        return None


# A network broader than this cannot be matched: lookups try these prefixes.
_SHORTEST_PREFIX: Final = {4: 8, 6: 16}


def _network(token: str) -> tuple[str, str, str] | None:
    address, _, prefix = token.partition("/")
    if not prefix.isdigit() or _ip(address) is None:
        return None
    try:
        network = ipaddress.ip_network(token, strict=False)
    except ValueError as exc:
        raise _Skip(f"not a valid network: {exc}") from None
    if network.prefixlen == network.max_prefixlen:
        value = str(network.network_address)
        return ("ip", value, value)
    if network.prefixlen < _SHORTEST_PREFIX[network.version]:
        raise _Skip("network too broad to be a feed entry")
    return ("ip", str(network), str(network))


# -- import -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import changed.

    Attributes:
        added: entries new in this version of the feed.
        removed: entries no longer in it.
        unchanged: entries in both.
        skipped: lines that were not entries.
        first_skipped_lines: their line numbers (the first few).
        file_unchanged: the file was the one already imported; nothing was
            parsed or written.
    """

    added: int
    removed: int
    unchanged: int
    skipped: int
    first_skipped_lines: tuple[int, ...]
    file_unchanged: bool = False


_SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_BATCH: Final = 5000


def import_feed(
    db: Database,
    path: str | Path,
    source: str,
    category: str,
    progress: Progress | None = None,
) -> ImportResult:
    """Import a feed file as ``source``, replacing that source's entries.

    Re-importing the same file writes nothing (its sha256 is compared first).
    A changed file is applied as a difference: new entries are inserted and
    entries no longer listed are deleted; entries in both keep their
    ``added_at``. The difference is written in short transactions of 5,000
    rows so that other units are not kept waiting for the write lock; while
    it is written, lookups may see part of it. An interrupted import is
    completed (or undone) by the next import of the new (or old) file.

    Args:
        db: an open database.
        path: the feed file, in any format :func:`parse_feed` reads.
        source: the feed's name, e.g. ``phishing-db``.
        category: one of :data:`FEED_CATEGORIES`.
        progress: called with ``(done, total)`` as lines are parsed and rows
            written; ``total`` grows once the number of changes is known.

    Returns:
        The counts of what changed.

    Raises:
        InputError: an unknown category, a bad source name, or a file that
            cannot be used (see :func:`parse_feed`).
    """
    if category not in FEED_CATEGORIES:
        raise InputError(
            "feed category",
            f"{category!r} is not one of {', '.join(FEED_CATEGORIES)}",
        )
    if not _SOURCE_NAME.fullmatch(source):
        raise InputError(
            "feed source",
            f"{source!r}: use letters, digits, '.', '_' or '-' (64 at most)",
        )
    path = Path(path)
    data = _read(path)
    sha256 = hashlib.sha256(data).hexdigest()
    now = format_time(utc_now())

    previous = db.execute(
        "SELECT category, path, sha256, entries, skipped FROM feed_sources"
        " WHERE name = ?",
        (source,),
    ).fetchone()
    if previous is not None and previous[2] == sha256:
        return _same_file(db, source, category, str(path), previous, progress)

    parsed = ParsedFeed(path, data)
    wanted: dict[tuple[str, str], str] = {}
    for entry in parsed:
        wanted.setdefault((entry.kind, entry.value), entry.host)
        if progress is not None and parsed.entries % _BATCH == 0:
            progress(parsed.line, parsed.lines)
    if progress is not None:
        progress(parsed.lines, parsed.lines)

    # Applied in chunks, each its own short transaction: one transaction for
    # a 141k-entry feed held the write lock 2-4 s on a loaded machine, close
    # to the 5 s busy_timeout of the units that write verdicts meanwhile.
    # The sha256 is cleared first and written last, so an import that stops
    # half-way is never mistaken for a complete one: the next import of any
    # file diffs again from whatever the table holds. Two imports of the same
    # source at once are not guarded against; the second to finish wins.
    conn = db.conn
    with transaction(db):
        conn.execute(
            """
            INSERT INTO feed_sources
                (name, category, path, sha256, entries, skipped, imported_at)
            VALUES (?, ?, ?, '', 0, 0, ?)
            ON CONFLICT (name) DO UPDATE SET
                category = excluded.category,
                path = excluded.path,
                sha256 = ''
            """,
            (source, category, str(path), now),
        )
        if previous is not None and previous[0] != category:
            conn.execute(
                "UPDATE feed_entries SET category = ? WHERE source = ?",
                (category, source),
            )
        present = set(
            conn.execute(
                "SELECT kind, value FROM feed_entries WHERE source = ?", (source,)
            )
        )
    # Sorted, rows go into the B-trees in key order: cheaper than file order.
    added = sorted(key for key in wanted if key not in present)
    removed = sorted(key for key in present if key not in wanted)
    total = parsed.lines + len(added) + len(removed)
    done = parsed.lines
    for start in range(0, len(added), _BATCH):
        batch = added[start : start + _BATCH]
        with transaction(db):
            conn.executemany(
                "INSERT INTO feed_entries"
                " (source, kind, value, host, category, added_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(source, k, v, wanted[k, v], category, now) for k, v in batch],
            )
        done += len(batch)
        if progress is not None:
            progress(done, total)
    for start in range(0, len(removed), _BATCH):
        batch = removed[start : start + _BATCH]
        with transaction(db):
            for kind in sorted({k for k, _ in batch}):
                conn.executemany(
                    "DELETE FROM feed_entries"
                    f" WHERE source = ? AND {_KIND_IS[kind]} AND value = ?",
                    [(source, v) for k, v in batch if k == kind],
                )
        done += len(batch)
        if progress is not None:
            progress(done, total)
    with transaction(db):
        conn.execute(
            "UPDATE feed_sources SET sha256 = ?, entries = ?, skipped = ?,"
            " imported_at = ? WHERE name = ?",
            (sha256, len(wanted), parsed.skipped, now, source),
        )

    return ImportResult(
        added=len(added),
        removed=len(removed),
        unchanged=len(wanted) - len(added),
        skipped=parsed.skipped,
        first_skipped_lines=tuple(s.line for s in parsed.first_skipped),
    )


def _same_file(
    db: Database,
    source: str,
    category: str,
    path: str,
    previous: tuple[Any, ...],
    progress: Progress | None,
) -> ImportResult:
    old_category, old_path, _, entries, skipped = previous
    if old_category != category or old_path != path:
        # The same entries under a new category or file name: relabel only.
        with transaction(db):
            db.conn.execute(
                "UPDATE feed_sources SET category = ?, path = ? WHERE name = ?",
                (category, path, source),
            )
            if old_category != category:
                db.conn.execute(
                    "UPDATE feed_entries SET category = ? WHERE source = ?",
                    (category, source),
                )
    if progress is not None:
        progress(1, 1)
    return ImportResult(
        added=0,
        removed=0,
        unchanged=entries,
        skipped=skipped,
        first_skipped_lines=(),
        file_unchanged=True,
    )


def list_sources(db: Database) -> list[dict[str, Any]]:
    """The imported feeds, by name: one dict per feed with the columns of
    ``feed_sources`` (name, category, path, sha256, entries, skipped,
    imported_at)."""
    return list(db.query("SELECT * FROM feed_sources ORDER BY name"))


def remove_source(db: Database, name: str) -> int | None:
    """Remove a feed and all its entries.

    Returns:
        The number of entries removed, or None if there is no such feed
        (removing twice is harmless).
    """
    with transaction(db):
        row = db.conn.execute(
            "SELECT 1 FROM feed_sources WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            return None
        removed = db.conn.execute(
            "DELETE FROM feed_entries WHERE source = ?", (name,)
        ).rowcount
        db.conn.execute("DELETE FROM feed_sources WHERE name = ?", (name,))
    return int(removed)


# -- lookup -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedHit:
    """A feed entry that matches a URL."""

    source: str
    category: str
    kind: str
    value: str


# SQLite before 3.32 allows 999 parameters a statement.
_IN_CHUNK: Final = 500


class FeedIndex:
    """Looks canonical URLs up in the imported feeds, with indexed SQL.

    Entries stay in SQLite; the scanner keeps only a small LRU of host-level
    results: the domain or IP hits, and whether any URL entry names the host
    (most hosts have none, so most warm lookups run no SQL at all). The cache
    is dropped when a feed is imported or removed: at once when through this
    connection, within ``check_interval`` seconds when by another process.
    Not thread-safe: one per connection.

    Args:
        db: an open database.
        cache_size: hosts whose results are remembered.
        check_interval: seconds between checks for another process's import.
        clock: monotonic seconds, replaced in tests.
    """

    def __init__(
        self,
        db: Database,
        cache_size: int = 4096,
        check_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.cache_size = cache_size
        self.check_interval = check_interval
        self._clock = clock
        self._hosts: OrderedDict[str, tuple[tuple[FeedHit, ...], bool]] = OrderedDict()
        self._data_version: int | None = None
        self._total_changes = -1
        self._checked_at = float("-inf")
        self._feeds_fingerprint: list[tuple[Any, ...]] | None = None

    def lookup(self, canonical: CanonicalURL) -> list[FeedHit]:
        """Every entry that matches the URL.

        Domain entries match the host or a parent of it down to its
        registered domain (under the ICANN public suffixes, so that a
        free-hosting feed's ``000webhostapp.com`` matches its tenants; the
        scanner decides what such a hit means). URL entries match as a prefix
        ending at a boundary (``/``, ``?``, ``&``). IP entries match the
        address or a network containing it.

        Returns:
            The hits, host-level first (most specific first), then URL hits.
        """
        self._drop_cache_if_feeds_changed()
        host_hits, has_urls = self._host_result(canonical)
        hits = list(host_hits)
        if has_urls:
            hits.extend(self._query("url", url_candidates(scheme_less(canonical))))
        return hits

    def entries_for_host(self, host: str) -> list[FeedHit]:
        """Every entry recorded against exactly this host (any kind), for an
        operator asking why a site is listed."""
        rows = self.db.conn.execute(
            "SELECT source, category, kind, value FROM feed_entries"
            " WHERE kind = 'url' AND host = ?"
            " UNION ALL SELECT source, category, kind, value FROM feed_entries"
            " WHERE kind IN ('domain', 'ip') AND value = ?"
            " ORDER BY source, kind, value",
            (host, host),
        )
        return [FeedHit(*row) for row in rows]

    def clear_cache(self) -> None:
        self._hosts.clear()

    def _host_result(self, canonical: CanonicalURL) -> tuple[tuple[FeedHit, ...], bool]:
        host = canonical.host
        cached = self._hosts.get(host)
        if cached is not None:
            self._hosts.move_to_end(host)
            return cached
        if canonical.is_ip:
            found = self._query("ip", ip_candidates(host))
        else:
            found = self._query(
                "domain", domain_candidates(host, canonical.icann_registered_domain)
            )
        found.sort(key=lambda h: (-len(h.value), h.source))
        has_urls = (
            self.db.conn.execute(
                "SELECT 1 FROM feed_entries WHERE kind = 'url' AND host = ? LIMIT 1",
                (host,),
            ).fetchone()
            is not None
        )
        result = (tuple(found), has_urls)
        self._hosts[host] = result
        if len(self._hosts) > self.cache_size:
            self._hosts.popitem(last=False)
        return result

    def _query(self, kind: str, candidates: list[str]) -> list[FeedHit]:
        hits: list[FeedHit] = []
        for start in range(0, len(candidates), _IN_CHUNK):
            chunk = candidates[start : start + _IN_CHUNK]
            marks = ", ".join("?" * len(chunk))
            rows = self.db.conn.execute(
                "SELECT source, category, kind, value FROM feed_entries"
                f" WHERE {_KIND_IS[kind]} AND value IN ({marks})",
                chunk,
            )
            hits.extend(FeedHit(*row) for row in rows)
        return hits

    def _drop_cache_if_feeds_changed(self) -> None:
        # Writes through this connection move total_changes (free to read);
        # another connection's commits move PRAGMA data_version, read at most
        # once a check_interval since it costs about as much as a lookup.
        # Either way feed_sources is read again, and the cache dropped only if
        # a feed really changed: verdict writes leave it alone.
        conn = self.db.conn
        now = self._clock()
        changed = conn.total_changes != self._total_changes
        if not changed and now - self._checked_at < self.check_interval:
            return
        self._checked_at = now
        self._total_changes = conn.total_changes
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if not changed and version == self._data_version:
            return
        self._data_version = version
        fingerprint = conn.execute(
            "SELECT name, sha256, category FROM feed_sources ORDER BY name"
        ).fetchall()
        if fingerprint != self._feeds_fingerprint:
            self._feeds_fingerprint = fingerprint
            self._hosts.clear()


def domain_candidates(host: str, registered_domain: str | None) -> list[str]:
    """The host and its parents down to the registered domain.

    ``a.b.evil.co.uk`` with ``evil.co.uk`` gives ``a.b.evil.co.uk``,
    ``b.evil.co.uk``, ``evil.co.uk``: never ``co.uk``. A host that is not
    under its registered domain (or has none) gives only itself.
    """
    candidates = [host]
    if not registered_domain or not host.endswith("." + registered_domain):
        return candidates
    rest = host
    while rest != registered_domain:
        rest = rest.split(".", 1)[1]
        candidates.append(rest)
    return candidates


def url_candidates(target: str) -> list[str]:
    """Every prefix of a scheme-less URL that ends at a boundary.

    In the path, a prefix may end just before or just after a ``/``, or
    before the ``?``; in the query, before a ``&`` or ``#``. The whole URL is
    a candidate too. So an entry ``evil.com/a`` matches ``evil.com/a/b`` and
    ``evil.com/a?x`` but not ``evil.com/ab``.
    """
    candidates = {target}
    query_at = target.find("?")
    path_end = len(target) if query_at < 0 else query_at
    for i in range(path_end):
        if target[i] == "/":
            candidates.add(target[:i])
            candidates.add(target[: i + 1])
    if query_at >= 0:
        candidates.add(target[:query_at])
        for i in range(query_at + 1, len(target)):
            if target[i] in "&#":
                candidates.add(target[:i])
    candidates.discard("")
    return sorted(candidates)


def ip_candidates(host: str) -> list[str]:
    """The address and every network entry that could contain it."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return [host]
    candidates = [str(address)]
    for prefix in range(_SHORTEST_PREFIX[address.version], address.max_prefixlen):
        network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
        candidates.append(str(network))
    return candidates
