"""How fast the lexical model scores URLs, and what loading it costs in memory.

Run from the repository root::

    .venv/bin/python benchmarks/lexical.py [--seconds 5]

It prints the resident-set growth from loading the packaged model and the
URLs/s of ``LexicalModel.probability`` on one core, over a fixed mix of
made-up URLs (homepages, deep links, long phishing-kit paths) so that runs
are comparable. It also prints a pure-Python reference loop, so a figure
from a busy or slow machine can be put in proportion.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from wabscan.scanner.lexical import LexicalModel

_WORDS = (
    "account",
    "news",
    "login",
    "blog",
    "update",
    "shop",
    "wp-content",
    "images",
    "index.php",
    "verify",
    "secure",
    "docs",
    "products",
    "2024",
    "user",
    "id",
    "session",
    "cart",
    "help",
    "support",
)
_TLDS = ("com", "org", "net", "co.uk", "xyz", "top", "info", "de", "com.br")


def _rss_kib() -> int:
    # VmRSS from /proc: what the kernel charges the service's cgroup for.
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def make_urls(n: int, seed: int = 7) -> list[str]:
    """A reproducible mix: a third homepages, the rest with paths and queries."""
    rng = random.Random(seed)
    urls = []
    for i in range(n):
        name = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(4, 14)))
        sub = rng.choice(("", "www.", "mail.", "secure-login.", "a1.b2."))
        host = f"{sub}{name}.{rng.choice(_TLDS)}"
        scheme = rng.choice(("http", "https"))
        if i % 3 == 0:
            urls.append(f"{scheme}://{host}/")
            continue
        path = "/".join(rng.choices(_WORDS, k=rng.randint(1, 6)))
        query = f"?id={rng.getrandbits(64):x}&ref=chat" if rng.random() < 0.3 else ""
        urls.append(f"{scheme}://{host}/{path}{query}")
    return urls


def _reference_ms() -> float:
    # A fixed pure-Python loop, best of five: URLs/s scale inversely with it,
    # so runs on different (or busier) machines can be compared.
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        sum(i * i for i in range(1_000_000))
        best = min(best, time.perf_counter() - started)
    return best * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()

    urls = make_urls(10_000)
    gc.collect()
    before = _rss_kib()
    started = time.perf_counter()
    model = LexicalModel.load()
    load_ms = (time.perf_counter() - started) * 1000
    gc.collect()
    after = _rss_kib()
    print(f"model {model.version}: load {load_ms:.0f} ms, RSS +{after - before} KiB")

    # Rounds over the same 10,000 URLs. The best round is the figure to
    # compare (as timeit advises: slower rounds measure other load on the
    # machine, not this code); the median shows how noisy the run was.
    probability = model.probability
    rounds: list[float] = []
    deadline = time.perf_counter() + args.seconds
    while time.perf_counter() < deadline or len(rounds) < 3:
        started = time.perf_counter()
        for url in urls:
            probability(url)
        rounds.append(time.perf_counter() - started)
    best = min(rounds)
    median = statistics.median(rounds)
    mean_len = sum(map(len, urls)) / len(urls)
    print(
        f"probability(): {len(urls) / best:,.0f} URLs/s on one core, best of"
        f" {len(rounds)} rounds ({best / len(urls) * 1e6:.1f} us each; median"
        f" round {len(urls) / median:,.0f} URLs/s); mean URL length {mean_len:.0f}"
    )
    print(f"reference loop (sum of 1e6 squares): {_reference_ms():.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
