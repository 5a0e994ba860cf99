"""Feed files, imports and lookups.

Every entry asserted on here is made up (``.example``/``.test`` names or made-up
names under real suffixes); the shared feeds are only read to check that each
of their lines is either an entry, a comment or a counted skip.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlite_utils import Database

from wabscan.errors import InputError
from wabscan.feeds import (
    FeedEntry,
    FeedHit,
    FeedIndex,
    domain_candidates,
    import_feed,
    list_sources,
    parse_feed,
    remove_source,
    url_candidates,
)
from wabscan.scanner.canonical import canonicalize
from wabscan.storage import open_database


def write(tmp_path: Path, text: str | bytes, name: str = "feed.txt") -> Path:
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


def entries(path: Path) -> list[tuple[str, str]]:
    return [(e.kind, e.value) for e in parse_feed(path)]


# -- formats ------------------------------------------------------------------


def test_plain_domains_with_comments_and_noise(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "# a made-up feed\n"
        "\n"
        "evil.example\n"
        "  Phish.EXAMPLE.  \n"
        "bad.test # listed 2024-05-01\n"
        "x_y.bad-site.test\n"
        "*.wild.test\n"
        "\t\n",
    )
    assert entries(path) == [
        ("domain", "evil.example"),
        ("domain", "phish.example"),
        ("domain", "bad.test"),
        ("domain", "x_y.bad-site.test"),
        ("domain", "wild.test"),
    ]


def test_entries_remember_their_line(tmp_path: Path) -> None:
    path = write(tmp_path, "# c\r\n\r\nevil.example\x0c\r\nbad.test")
    assert list(parse_feed(path)) == [
        FeedEntry("domain", "evil.example", "evil.example", 3),
        FeedEntry("domain", "bad.test", "bad.test", 4),
    ]


def test_urls_are_canonical_without_scheme(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "http://Evil.example/Login?a=1\n"
        "https://evil.example/Login?a=1\n"
        "hxxp://defanged.example/x\n"
        "evil.example/path/\n"
        "evil.example/p?q=1\n"
        "192.0.2.7?rid=5\n"
        "evil.example:8080/admin\n",
    )
    found = list(parse_feed(path))
    assert {e.kind for e in found} == {"url"}
    http, https = found[0], found[1]
    assert http.value == https.value
    assert not http.value.startswith("http")
    assert http.value.startswith("evil.example/Login")  # the path keeps its case
    assert http.host == "evil.example"
    assert found[2].host == "defanged.example"
    assert found[3].value == "evil.example/path/"
    assert found[5].host == "192.0.2.7"
    assert found[6].value.startswith("evil.example:8080/admin")
    # The stored value is exactly what the lookup strips from a canonical URL.
    assert (
        http.value == canonicalize("http://evil.example/Login?a=1").url.split("://")[1]
    )


def test_ips_and_networks(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "192.0.2.1\n"
        "198.51.100.0/24\n"
        "203.0.113.9/32\n"
        "2001:db8::1\n"
        "[2001:db8::2]\n"
        "2001:db8:1::/48\n"
        "10.0.0.0/4\n",  # too broad
    )
    parsed = parse_feed(path)
    assert [(e.kind, e.value) for e in parsed] == [
        ("ip", "192.0.2.1"),
        ("ip", "198.51.100.0/24"),
        ("ip", "203.0.113.9"),
        ("ip", "2001:db8::1"),
        ("ip", "2001:db8::2"),
        ("ip", "2001:db8:1::/48"),
    ]
    assert parsed.skipped_lines == [7]


def test_json_object_and_list(tmp_path: Path) -> None:
    obj = write(
        tmp_path,
        json.dumps({"domains": ["evil.example", "Bad.Test", 42], "other": "x"}),
        "a.json",
    )
    parsed = parse_feed(obj)
    assert [e.value for e in parsed] == ["evil.example", "bad.test"]
    assert parsed.skipped == 1

    lst = write(tmp_path, '[\n "evil.example",\n "http://bad.test/x"\n]\n', "b.json")
    assert entries(lst) == [("domain", "evil.example"), ("url", "bad.test/x")]


def test_broken_json_object_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, '{\n "domains": [\n "evil.example",\n]\n}\n', "c.json")
    with pytest.raises(InputError) as caught:
        list(parse_feed(path))
    assert caught.value.where == f"{path}:4"


def test_json_object_without_a_list(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="domains"):
        list(parse_feed(write(tmp_path, '{"name": "x"}', "d.json")))


def test_csv_rank_domain(tmp_path: Path) -> None:
    with_header = write(tmp_path, "rank,domain\n1,good.example\n2,Fine.Test\n3\n")
    parsed = parse_feed(with_header)
    assert [(e.value, e.line) for e in parsed] == [
        ("good.example", 2),
        ("fine.test", 3),
    ]
    assert parsed.skipped_lines == [4]

    without = write(tmp_path, "1,good.example\n2,fine.test\n", "e.csv")
    assert [v for _, v in entries(without)] == ["good.example", "fine.test"]

    named = write(tmp_path, 'url,first_seen\n"http://bad.test/a,b",2024\n', "f.csv")
    assert entries(named) == [("url", "bad.test/a,b")]


def test_commas_in_a_url_list_are_not_csv(tmp_path: Path) -> None:
    path = write(tmp_path, "http://bad.test/a,b\nevil.example\n")
    assert entries(path) == [("url", "bad.test/a,b"), ("domain", "evil.example")]


def test_hosts_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "127.0.0.1 localhost\n"
        "::1 localhost ip6-localhost ip6-loopback\n"
        "255.255.255.255 broadcasthost\n"
        "0.0.0.0 0.0.0.0\n"
        "0.0.0.0 evil.example\n"
        "127.0.0.1\tbad.test  tracker.bad.test # two on one line\n",
    )
    parsed = parse_feed(path)
    assert [e.value for e in parsed] == ["evil.example", "bad.test", "tracker.bad.test"]
    assert parsed.skipped == 0


def test_adblock_rules(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[Adblock Plus 2.0]\n"
        "! Title: made-up list\n"
        "||evil.example^\n"
        "||bad.test^$third-party\n"
        "||phish.test/login^\n"
        "|http://lure.test/x|\n"
        "@@||allowed.test^\n"
        "||ads*.test^\n"
        "example.test##.banner\n"
        "/banner[0-9]+/\n",
    )
    parsed = parse_feed(path)
    assert [(e.kind, e.value) for e in parsed] == [
        ("domain", "evil.example"),
        ("domain", "bad.test"),
        ("url", "phish.test/login"),
        ("url", "lure.test/x"),
    ]
    assert parsed.skipped_lines == [7, 8, 9, 10]
    reasons = [s.reason for s in parsed.first_skipped]
    assert "exception" in reasons[0] and "wildcard" in reasons[1]


def test_idn_hosts_are_idna_encoded(tmp_path: Path) -> None:
    path = write(
        tmp_path, "bücher.example\nhttps://BÜCHER.example/ä\nxn--bcher-kva.test\n"
    )
    found = list(parse_feed(path))
    assert found[0].value == "xn--bcher-kva.example"
    assert found[1].host == "xn--bcher-kva.example"
    assert found[2].value == "xn--bcher-kva.test"


def test_bad_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "evil.example\n"
        "^service\\-verify[a-z0-9]+\\.(ml|tk)$\n"
        "%20not-a-host.example\n"
        "localhost\n"
        "gopher://files.example/x\n"
        "two words\n"
        "bad.test\n",
    )
    parsed = parse_feed(path)
    assert [e.value for e in parsed] == ["evil.example", "bad.test"]
    assert parsed.skipped == 5
    assert parsed.skipped_lines == [2, 3, 4, 5, 6]
    assert parsed.first_skipped[0].text.startswith("^service")


@pytest.mark.parametrize(
    ("content", "where", "what"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00", ":3", "binary"),
        (b"evil.example\ncaf\xe9.example\n", ":2", "UTF-8"),
        (b"", "", "no feed entries"),
        (b"# only a comment\n\n", "", "no feed entries"),
        (b"# c\nnot a feed line\n!!!\n", ":2", "no valid feed entry"),
    ],
)
def test_unusable_files_name_the_file(
    tmp_path: Path, content: bytes, where: str, what: str
) -> None:
    path = write(tmp_path, content)
    with pytest.raises(InputError) as caught:
        list(parse_feed(path))
    assert caught.value.where == f"{path}{where}"
    assert what in caught.value.what


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        parse_feed(tmp_path / "absent.txt")


@pytest.mark.slow
def test_every_line_of_the_shared_feeds_is_accounted_for(shared_data: Path) -> None:
    files = sorted((shared_data / "feeds").iterdir()) + sorted(
        (shared_data / "benign").iterdir()
    )
    assert files
    for path in files:
        parsed = parse_feed(path)
        entry_lines = {e.line for e in parsed}
        lines = path.read_text(encoding="utf-8").splitlines()
        ignorable = {
            n
            for n, text in enumerate(lines, start=1)
            if not text.strip() or text.lstrip().startswith("#")
        }
        if path.suffix == ".csv":
            ignorable.add(1)  # the header
        skipped = set(parsed.skipped_lines)
        assert entry_lines | skipped | ignorable == set(range(1, len(lines) + 1)), path
        assert not entry_lines & skipped
        # Real feeds are mostly well formed: a parser that skips much is wrong.
        assert parsed.skipped <= max(10, len(lines) // 100), (
            path,
            parsed.first_skipped,
        )


# Pieces feed lines are made of, odd ones included; joined at random.
_FEED_PIECES = st.sampled_from(
    [
        *(string.ascii_letters + string.digits + ".-_/:?#&=%*^|@![],;\"'{} \t"),
        *("ü", "ß", "İ", "ı", "\u200d", "．", "。", "\ufeff", "\x00", "\r"),
        *("xn--", "0.0.0.0 ", "||", "http://", "hxxps://", "::", "/24", "$third-party"),
    ]
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    lines=st.lists(
        st.one_of(
            st.lists(_FEED_PIECES, max_size=12).map("".join),
            st.text(max_size=30),
            st.from_regex(r"[a-z]{1,8}(\.[a-z]{1,8}){1,3}", fullmatch=True),
        ),
        max_size=12,
    )
)
def test_parse_feed_raises_nothing_but_input_error(
    tmp_path: Path, lines: list[str]
) -> None:
    path = tmp_path / "prop.txt"
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    try:
        for entry in parse_feed(path):
            assert entry.kind in ("domain", "url", "ip")
            assert entry.value and entry.host
            assert entry.value.isascii() and entry.host == entry.host.lower()
    except InputError:
        pass


@given(
    st.from_regex(
        r"[a-z0-9][a-z0-9-]{0,10}(\.[a-z0-9-]{1,10}){0,3}\.[a-z]{2,6}", fullmatch=True
    )
)
def test_plain_domains_are_stored_as_the_scanner_sees_their_host(host: str) -> None:
    # Plain ASCII domains skip canonicalize() for speed; they must still
    # come out exactly as canonicalize() would make the host.
    from wabscan.feeds import _domain

    try:
        expected = canonicalize(f"http://{host}/").host
    except ValueError:
        return
    assert _domain(host) == expected


# -- import -------------------------------------------------------------------


def test_import_then_reimport_writes_nothing(db: Database, tmp_path: Path) -> None:
    path = write(tmp_path, "evil.example\nbad.test\nhttp://lure.test/x\nnot a line\n")
    first = import_feed(db, path, "made-up", "phishing")
    assert (first.added, first.removed, first.unchanged, first.skipped) == (3, 0, 0, 1)
    assert first.first_skipped_lines == (4,)

    before = db.conn.total_changes
    again = import_feed(db, path, "made-up", "phishing")
    assert db.conn.total_changes == before
    assert (again.added, again.removed, again.unchanged) == (0, 0, 3)
    assert again.skipped == 1 and again.file_unchanged


def test_reimport_of_a_changed_file_applies_the_difference(
    db: Database, tmp_path: Path
) -> None:
    path = write(tmp_path, "keep.example\ngone.example\nhttp://lure.test/x\n")
    import_feed(db, path, "made-up", "phishing")
    db.execute("UPDATE feed_entries SET added_at = 'then' WHERE value = 'keep.example'")

    path.write_text("keep.example\nhttp://lure.test/x\nnew.example\nnew.example\n")
    before = db.conn.total_changes
    result = import_feed(db, path, "made-up", "phishing")

    assert (result.added, result.removed, result.unchanged) == (1, 1, 2)
    # The source row (marked pending, then done), one insert, one delete:
    # nothing else was rewritten.
    assert db.conn.total_changes - before == 4
    values = {
        r[0]: r[1] for r in db.execute("SELECT value, added_at FROM feed_entries")
    }
    assert set(values) == {"keep.example", "lure.test/x", "new.example"}
    assert values["keep.example"] == "then"
    row = list_sources(db)[0]
    assert (row["name"], row["entries"], row["category"]) == ("made-up", 3, "phishing")


def test_interrupted_import_is_completed_or_undone_by_the_next(
    db: Database, tmp_path: Path
) -> None:
    old = write(tmp_path, "a.example\nb.example\n", "old.txt")
    new = write(tmp_path, "".join(f"n{i}.example\n" for i in range(12_000)), "new.txt")
    import_feed(db, old, "made-up", "phishing")

    def stop(done: int, total: int) -> None:
        if done > 12_000:  # past parsing, after the first chunk of rows
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_feed(db, new, "made-up", "phishing", progress=stop)
    assert list_sources(db)[0]["sha256"] == ""

    back = import_feed(db, old, "made-up", "phishing")
    assert not back.file_unchanged
    assert (back.added, back.unchanged) == (0, 2)
    assert back.removed == 5000
    count = db.execute("SELECT count(*) FROM feed_entries").fetchone()[0]
    assert count == 2

    done = import_feed(db, new, "made-up", "phishing")
    assert (done.added, done.removed) == (12_000, 2)
    assert list_sources(db)[0]["entries"] == 12_000


def test_same_file_under_a_new_category_relabels(db: Database, tmp_path: Path) -> None:
    path = write(tmp_path, "evil.example\n")
    import_feed(db, path, "made-up", "suspicious")
    result = import_feed(db, path, "made-up", "malware")
    assert result.file_unchanged
    assert db.execute("SELECT DISTINCT category FROM feed_entries").fetchall() == [
        ("malware",)
    ]
    assert list_sources(db)[0]["category"] == "malware"


def test_sources_are_separate(db: Database, tmp_path: Path) -> None:
    import_feed(db, write(tmp_path, "evil.example\n", "a.txt"), "one", "phishing")
    import_feed(db, write(tmp_path, "evil.example\n", "b.txt"), "two", "malware")
    assert [r["name"] for r in list_sources(db)] == ["one", "two"]

    assert remove_source(db, "one") == 1
    assert remove_source(db, "one") is None
    assert [r["name"] for r in list_sources(db)] == ["two"]
    assert db.execute("SELECT source FROM feed_entries").fetchall() == [("two",)]


def test_progress_reaches_the_total(db: Database, tmp_path: Path) -> None:
    path = write(tmp_path, "".join(f"host{i}.example\n" for i in range(12_000)))
    calls: list[tuple[int, int]] = []
    import_feed(
        db, path, "made-up", "phishing", progress=lambda d, t: calls.append((d, t))
    )
    assert len(calls) > 3
    done = [d for d, _ in calls]
    assert done == sorted(done)
    assert calls[-1][0] == calls[-1][1] == 12_000 + 12_000


@pytest.mark.parametrize(
    ("source", "category", "where"),
    [("ok", "evil", "feed category"), ("", "phishing", "feed source"),
     ("a b", "phishing", "feed source")],
)  # fmt: skip
def test_bad_source_or_category(
    db: Database, tmp_path: Path, source: str, category: str, where: str
) -> None:
    with pytest.raises(InputError) as caught:
        import_feed(db, write(tmp_path, "evil.example\n"), source, category)
    assert caught.value.where == where


def test_unusable_file_leaves_the_database_alone(db: Database, tmp_path: Path) -> None:
    import_feed(db, write(tmp_path, "evil.example\n"), "made-up", "phishing")
    with pytest.raises(InputError):
        import_feed(db, write(tmp_path, b"\x00\x01", "bin.txt"), "made-up", "phishing")
    assert db.execute("SELECT value FROM feed_entries").fetchall() == [
        ("evil.example",)
    ]


# -- lookup -------------------------------------------------------------------


@pytest.fixture
def index(db: Database, tmp_path: Path) -> FeedIndex:
    import_feed(
        db,
        write(
            tmp_path,
            "evil.example\n"
            "phish.co.uk\n"
            "co.uk\n"
            "bücher.example\n"
            "bad.test/a\n"
            "bad.test/dir/\n"
            "http://bad.test/page?id=1\n"
            "192.0.2.1\n"
            "198.51.100.0/24\n"
            "2001:db8::/32\n",
            "bad.txt",
        ),
        "bad",
        "phishing",
    )
    import_feed(db, write(tmp_path, "evil.example\n", "sus.txt"), "sus", "suspicious")
    return FeedIndex(db)


def look(index: FeedIndex, url: str) -> set[tuple[str, str, str]]:
    return {(h.source, h.kind, h.value) for h in index.lookup(canonicalize(url))}


def test_domain_matches_host_and_subdomains(index: FeedIndex) -> None:
    both = {("bad", "domain", "evil.example"), ("sus", "domain", "evil.example")}
    assert look(index, "http://evil.example/") == both
    assert look(index, "https://a.b.EVIL.example/x") == both
    assert look(index, "http://notevil.example/") == set()
    assert look(index, "http://evil.example.other.test/") == set()


def test_domain_matching_stops_at_the_public_suffix(index: FeedIndex) -> None:
    assert look(index, "http://login.phish.co.uk/") == {
        ("bad", "domain", "phish.co.uk")
    }
    # "co.uk" is a public suffix: it lists no site, so it matches no other.
    assert look(index, "http://innocent.co.uk/") == set()


def test_hits_carry_source_and_category(index: FeedIndex) -> None:
    hits = index.lookup(canonicalize("http://evil.example/"))
    assert set(hits) == {
        FeedHit("bad", "phishing", "domain", "evil.example"),
        FeedHit("sus", "suspicious", "domain", "evil.example"),
    }


@pytest.mark.parametrize(
    ("url", "entry"),
    [
        ("http://bad.test/a", "bad.test/a"),
        ("https://bad.test/a/b", "bad.test/a"),
        ("http://bad.test/a?x=1", "bad.test/a"),
        ("http://bad.test/dir/", "bad.test/dir/"),
        ("http://bad.test/dir/x.html", "bad.test/dir/"),
        ("https://bad.test/page?id=1", None),
        ("https://bad.test/page?id=1&utm=2", None),
    ],
)
def test_url_prefix_at_a_boundary(
    index: FeedIndex, url: str, entry: str | None
) -> None:
    found = {v for _, kind, v in look(index, url) if kind == "url"}
    if entry is None:  # the entry as canonicalize() stored it
        entry = canonicalize("http://bad.test/page?id=1").url.split("://")[1]
    assert found == {entry}


@pytest.mark.parametrize(
    "url",
    ["http://bad.test/ab", "http://bad.test/", "http://bad.test/dir",
     "http://bad.test/page?id=10", "http://sub.bad.test/a"],
)  # fmt: skip
def test_url_prefix_does_not_match_across_a_boundary(
    index: FeedIndex, url: str
) -> None:
    assert look(index, url) == set()


def test_ip_and_network(index: FeedIndex) -> None:
    assert look(index, "http://192.0.2.1/x") == {("bad", "ip", "192.0.2.1")}
    assert look(index, "http://192.0.2.2/") == set()
    assert look(index, "http://198.51.100.77:8080/") == {
        ("bad", "ip", "198.51.100.0/24")
    }
    assert look(index, "http://[2001:db8::5]/") == {("bad", "ip", "2001:db8::/32")}


def test_idn_lookup(index: FeedIndex) -> None:
    expected = {("bad", "domain", "xn--bcher-kva.example")}
    assert look(index, "http://shop.BÜCHER.example/") == expected
    assert look(index, "http://xn--bcher-kva.example/") == expected


def test_cache_follows_imports_from_another_connection(
    db: Database, tmp_path: Path
) -> None:
    path = write(tmp_path, "evil.example\n")
    import_feed(db, path, "made-up", "phishing")
    now = [100.0]
    index = FeedIndex(db, check_interval=1.0, clock=lambda: now[0])
    url = canonicalize("http://other.test/")
    assert index.lookup(url) == []

    other = open_database(tmp_path / "state" / "wabscan.sqlite3")
    try:
        path.write_text("evil.example\nother.test\n")
        import_feed(other, path, "made-up", "phishing")
    finally:
        other.close()

    assert index.lookup(url) == []  # within the check interval: still cached
    now[0] += 1.0
    assert [h.value for h in index.lookup(url)] == ["other.test"]


def test_cache_follows_imports_through_its_own_connection_at_once(
    db: Database, tmp_path: Path
) -> None:
    path = write(tmp_path, "evil.example\n")
    import_feed(db, path, "made-up", "phishing")
    index = FeedIndex(db, check_interval=3600)
    url = canonicalize("http://lure.test/a/b")
    assert index.lookup(url) == []
    path.write_text("evil.example\nlure.test/a\n")
    import_feed(db, path, "made-up", "phishing")
    assert [h.value for h in index.lookup(url)] == ["lure.test/a"]
    remove_source(db, "made-up")
    assert index.lookup(url) == []


def test_cache_is_kept_across_unrelated_writes(db: Database, tmp_path: Path) -> None:
    import_feed(db, write(tmp_path, "evil.example\n"), "made-up", "phishing")
    index = FeedIndex(db)
    url = canonicalize("http://evil.example/")
    statements: list[str] = []
    db.conn.set_trace_callback(statements.append)

    def domain_queries() -> int:
        found = [s for s in statements if "'domain'" in s and "feed_entries" in s]
        statements.clear()
        return len(found)

    index.lookup(url)
    assert domain_queries() == 1
    index.lookup(url)
    assert domain_queries() == 0
    db.execute("CREATE TABLE unrelated (x)")
    index.lookup(url)
    index.lookup(url)
    db.conn.set_trace_callback(None)
    assert domain_queries() == 0


def test_lookups_use_the_index(db: Database) -> None:
    plan = db.execute(
        "EXPLAIN QUERY PLAN SELECT source, category, kind, value FROM feed_entries"
        " WHERE kind = ? AND value IN (?, ?)",
        ["domain", "a.example", "example"],
    ).fetchall()
    assert any("feed_entries_kind_value" in row[-1] for row in plan), plan


def test_candidates() -> None:
    assert domain_candidates("a.b.evil.co.uk", "evil.co.uk") == [
        "a.b.evil.co.uk",
        "b.evil.co.uk",
        "evil.co.uk",
    ]
    assert domain_candidates("localhost", None) == ["localhost"]
    assert url_candidates("e.test/a/b?x=1&y=2") == sorted(
        {
            "e.test",
            "e.test/",
            "e.test/a",
            "e.test/a/",
            "e.test/a/b",
            "e.test/a/b?x=1",
            "e.test/a/b?x=1&y=2",
        }
    )
