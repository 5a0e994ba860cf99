"""Local verdicts on the shared labelled URLs: speed, memory, precision, recall.

    .venv/bin/python benchmarks/local_verdicts.py [--data ../shared/data]

Imports every shared feed (phishing, suspicious, free hosting, dynamic DNS,
parking) and the popular-sites list as the allowlist into a fresh database,
then judges every URL of urls/labelled_train.csv with the scanner's engine on
one core, and prints:

- links/s, over the whole file, twice (cold and warm host cache);
- the RSS of a process that imports what the scanner unit imports, opens
  that database and judges the file (goal: under 60 MB);
- precision and recall, a detection being suspicious or malicious, with the
  feeds and without them (the phishing feeds list many of the file's URLs,
  so "with feeds" flatters; "without feeds" is heuristics and the lexical
  model alone; the model was trained on this file, so see
  docs/lexical-model.md for its figures on data held out of training).

Goals (issue 2): at least 3,000 links/s on one core; RSS under 60 MB.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FEEDS = {
    "feeds/discord_phishing_domains.txt": "phishing",
    "feeds/discord_suspicious_domains.txt": "suspicious",
    "feeds/maltrail_phishing.txt": "phishing",
    "feeds/maltrail_free_web_hosting.txt": "free-hosting",
    "feeds/maltrail_dynamic_domain.txt": "dynamic-dns",
    "feeds/maltrail_parking_site.txt": "parking",
    "feeds/phishingdb_domains_active.txt": "phishing",
    "feeds/phishingdb_links_active.txt": "phishing",
    "benign/top10k.csv": "allow",
}

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def load_labelled(data: Path) -> list[tuple[str, bool]]:
    with (data / "urls" / "labelled_train.csv").open(newline="") as f:
        return [(row["url"], row["status"] == "phishing") for row in csv.DictReader(f)]


def import_feeds(data: Path, database: Path) -> float:
    from wabscan.feeds import import_feed
    from wabscan.storage import open_database

    db = open_database(database)
    started = time.perf_counter()
    for relative, category in FEEDS.items():
        path = data / relative
        result = import_feed(db, path, Path(relative).stem, category)
        print(f"  {relative:45} {category:13} +{result.added:>7,}")
    db.close()
    return time.perf_counter() - started


def judge(database: Path, urls: list[str], with_feeds: bool) -> tuple[list[str], float]:
    from wabscan.scanner.canonical import InvalidURL
    from wabscan.scanner.engine import Scanner
    from wabscan.storage import open_database

    db = open_database(database)
    scanner = Scanner.from_database(db)
    if not with_feeds:
        scanner.feeds = None
    levels: list[str] = []
    # CPU time of this process: "links/s on one core", whatever else the
    # machine is running meanwhile.
    started = time.process_time()
    for url in urls:
        try:
            levels.append(scanner.scan(url).level.value)
        except InvalidURL:
            levels.append("invalid")
    return levels, time.process_time() - started


def scores(levels: list[str], truth: list[bool]) -> dict[str, float]:
    detected = [level in ("suspicious", "malicious") for level in levels]
    tp = sum(d and t for d, t in zip(detected, truth, strict=True))
    fp = sum(d and not t for d, t in zip(detected, truth, strict=True))
    fn = sum(t and not d for d, t in zip(detected, truth, strict=True))
    negatives = sum(not t for t in truth)
    return {
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "fpr": fp / negatives if negatives else 0.0,
    }


RSS_CHILD = """
import csv, resource, sys
import wabscan.scanner.service  # everything the scanner unit imports
from wabscan.scanner.engine import Scanner
from wabscan.storage import open_database
db = open_database(sys.argv[1])
scanner = Scanner.from_database(db)
with open(sys.argv[2], newline="") as f:
    for row in csv.DictReader(f):
        try:
            scanner.scan(row["url"])
        except ValueError:
            pass
status = open("/proc/self/status").read()
rss = next(l for l in status.splitlines() if l.startswith("VmRSS")).split()[1]
print(int(rss) // 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def measure_rss(database: Path, data: Path) -> tuple[int, int]:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            RSS_CHILD,
            str(database),
            str(data / "urls" / "labelled_train.csv"),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return int(out[0]), int(out[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    if not (args.data / "urls" / "labelled_train.csv").exists():
        sys.exit(f"no shared data at {args.data} (pass --data)")
    if "numpy" in sys.modules or _has_numpy():
        print(
            "note: numpy is installed in this environment; sqlite-utils imports it "
            "when present (about 17 MB), which the appliance does not have"
        )

    labelled = load_labelled(args.data)
    urls = [u for u, _ in labelled]
    truth = [t for _, t in labelled]
    with tempfile.TemporaryDirectory() as tmp:
        database = Path(tmp) / "wabscan.sqlite3"
        print("importing the shared feeds:")
        took = import_feeds(args.data, database)
        print(f"  all feeds imported in {took:.1f} s")

        _, cold = judge(database, urls, with_feeds=True)
        levels, warm = judge(database, urls, with_feeds=True)
        bare, _ = judge(database, urls, with_feeds=False)
        rss, peak = measure_rss(database, args.data)

    with_feeds = scores(levels, truth)
    without = scores(bare, truth)
    n = len(urls)
    print()
    print(f"{'measure':44} {'figure':>12}  goal")
    print(f"{'links/s, one core, cold host cache':44} {n / cold:>12,.0f}  >= 3,000")
    print(f"{'links/s, one core, warm host cache':44} {n / warm:>12,.0f}  >= 3,000")
    print(f"{'scanner RSS with all feeds (MB, now/peak)':44} {rss:>7}/{peak:<4}  < 60")
    for name, s in (("with feeds", with_feeds), ("without feeds", without)):
        print(
            f"{'precision / recall / FPR, ' + name:44} "
            f"{s['precision']:.3f} / {s['recall']:.3f} / {s['fpr']:.3f}"
        )
    print(f"({n:,} URLs, {sum(truth):,} phishing; detection = suspicious or malicious)")


def _has_numpy() -> bool:
    try:
        import importlib.util

        return importlib.util.find_spec("numpy") is not None
    except ValueError:
        return False


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
