"""How fast a large feed imports, re-imports and is looked up.

Run: .venv/bin/python benchmarks/feed_import.py [FEED]

FEED defaults to the shared 141k-line phishing domain list. Prints rows/s for
a first import into an empty database, for a re-import of the same file (no
writes), for a re-import after 1% of the lines changed (a set difference), and
lookups/s through FeedIndex. Rows are written in transactions of 5,000 after
parsing; the time spent writing is printed too. CPU time is printed beside
wall time because the development machines are shared: compare those.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path

from wabscan.feeds import FeedIndex, import_feed, parse_feed
from wabscan.scanner.canonical import canonicalize
from wabscan.storage import open_database

DEFAULT_FEED = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "feeds"
    / "phishingdb_domains_active.txt"
)


def timed_import(db_path: Path, feed: Path, label: str) -> None:
    db = open_database(db_path)
    marks: dict[str, float] = {}
    lines = sum(1 for _ in feed.open("rb"))

    def progress(done: int, total: int) -> None:
        if done >= lines and "parsed" not in marks:
            marks["parsed"] = time.perf_counter()

    start, cpu = time.perf_counter(), time.process_time()
    result = import_feed(db, feed, "bench", "phishing", progress=progress)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    db.close()
    written = elapsed - (marks.get("parsed", start + elapsed) - start)
    print(
        f"{label:<22} {elapsed:6.2f} s  {lines / elapsed:>11,.0f} rows/s  "
        f"cpu {cpu:.2f} s, writing {written:.2f} s  "
        f"(+{result.added:,} -{result.removed:,} ={result.unchanged:,} "
        f"skipped {result.skipped:,})"
    )


def main() -> None:
    feed = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_FEED
    if not feed.is_file():
        sys.exit(f"feed_import: {feed}: no such file")
    lines = feed.read_text(encoding="utf-8").splitlines()
    print(f"feed {feed} ({len(lines):,} lines, {feed.stat().st_size / 1e6:.1f} MB)")

    with tempfile.TemporaryDirectory(prefix="wabscan-bench-") as tmp:
        db_path = Path(tmp) / "wabscan.sqlite3"
        start, cpu = time.perf_counter(), time.process_time()
        count = sum(1 for _ in parse_feed(feed))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        rate = len(lines) / elapsed
        print(
            f"{'parse only':<22} {elapsed:6.2f} s  {rate:>11,.0f} rows/s  "
            f"cpu {cpu:.2f} s"
        )

        timed_import(db_path, feed, "first import")
        timed_import(db_path, feed, "re-import, same file")

        changed = Path(tmp) / feed.name
        rng = random.Random(1)
        edited = list(lines)
        for i in rng.sample(range(len(edited)), len(edited) // 100):
            edited[i] = f"changed-{i}.bench.example"
        changed.write_text("\n".join(edited) + "\n", encoding="utf-8")
        timed_import(db_path, changed, "re-import, 1% changed")

        db = open_database(db_path)
        index = FeedIndex(db)
        sample = rng.sample([line.strip() for line in edited if line.strip()], 4000)
        urls = []
        for host in sample:
            try:
                urls.append(canonicalize(f"https://{host}/some/path?q=1"))
            except ValueError:
                continue
        for label in ("lookups, cold", "lookups, warm cache"):
            start = time.perf_counter()
            hits = sum(1 for url in urls if index.lookup(url))
            elapsed = time.perf_counter() - start
            print(
                f"{label:<22} {elapsed:6.2f} s  {len(urls) / elapsed:>11,.0f} urls/s  "
                f"({hits:,} of {len(urls):,} hit)"
            )
        db.close()
        print(
            f"database size {db_path.stat().st_size / 1e6:.1f} MB "
            f"for {count:,} parsed entries"
        )


if __name__ == "__main__":
    main()
