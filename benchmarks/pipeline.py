"""The whole pipeline on one machine: throughput, latency and memory.

    .venv/bin/python benchmarks/pipeline.py [--rate 100] [--seconds 30]
        [--burst 2000] [--links-per-message 4]

Starts a private Redis and the three units with the local WhatsApp
transport (as ``wabscan run`` does), then:

1. idle: RSS of each process once every unit is ready;
2. latency: group messages with one malicious link each, at ``--rate``
   links/s for ``--seconds``; for each, the time from the message reaching
   the bridge (its scan job's stream id) and from it being posted, to its
   reply entering the outbox (the reply's stream id); p50/p95/p99;
3. throughput: ``--burst`` messages of ``--links-per-message`` links posted
   at once; links/s from the first post to the last verdict decided;
4. RSS of each process, the largest seen while under load.

Local checks only (no provider is configured). Goals (issue 3): at least
1,000 links/s; p50 under 20 ms and p95 under 100 ms at 100 links/s; RSS
bridge 100 MB, scanner 60 MB, reporter 45 MB, Redis 32 MB, all under 200 MB.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import redis

from wabscan import queue
from wabscan.bridge.local import LocalChat, transport_file
from wabscan.config import load_config
from wabscan.demo import demo_settings, write_config
from wabscan.feeds import import_feed
from wabscan.jobs import OutboxMessage
from wabscan.storage import open_database
from wabscan.supervise import LocalAppliance

PROCESSES = ("bridge", "scanner", "reporter", "redis")
GOALS_MB = {"bridge": 100, "scanner": 60, "reporter": 45, "redis": 32}
GROUPS = 40
# An invented domain the benchmark imports as phishing: every link below it
# is malicious, so every message gets a reply.
BAD = "bench-phish.example"


def rss_mb(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Sampler(threading.Thread):
    def __init__(self, appliance: LocalAppliance) -> None:
        super().__init__(daemon=True)
        self.appliance = appliance
        self.peak = dict.fromkeys(PROCESSES, 0.0)
        self.running = True

    def run(self) -> None:
        while self.running:
            for name in PROCESSES:
                now = rss_mb(self.appliance.pid(name))
                self.peak[name] = max(self.peak[name], now)
            time.sleep(0.25)


def wait_ready(appliance: LocalAppliance) -> None:
    for unit in ("scanner", "reporter", "bridge"):
        host, port = appliance.address(unit)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


class Streams:
    """What went through the ``scan`` and ``outbox`` streams, read through
    a consumer group of the benchmark's own (the units delete entries once
    every group has acknowledged them). A stream id is the ms it was added."""

    def __init__(self, client: redis.Redis) -> None:
        self.observer = queue.Observer(client, [queue.SCAN, queue.OUTBOX], "bench")
        self.scanned: dict[str, int] = {}  # message id -> ms its job was queued
        self.replied: dict[str, int] = {}  # quoted message id -> ms of its reply
        self.outbox = 0

    def poll(self) -> None:
        for stream, entry in self.observer.read():
            at = int(entry.id.split("-")[0])
            if stream == queue.SCAN:
                self.scanned.setdefault(entry.fields.get("message", ""), at)
                continue
            self.outbox += 1
            quote = OutboxMessage.from_fields(entry.fields).quote
            if quote:
                self.replied.setdefault(quote, at)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--links-per-message", type=int, default=4)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="wabscan-bench-", dir="/tmp") as tmp:
        state = Path(tmp)
        feed = state / "bench-feed.txt"
        feed.write_text(f"{BAD}\n")
        log = (state / "appliance.log").open("w")
        appliance = LocalAppliance(state, state / "wabscan.toml", log=log)
        write_config(appliance.config_file, demo_settings(state, appliance.redis_url))
        config = load_config(appliance.config_file)
        db = open_database(config.database_path)
        import_feed(db, feed, "bench", "phishing")
        db.close()

        appliance.start()
        try:
            run(appliance, config, args)
        finally:
            appliance.stop()
            log.close()


def run(appliance: LocalAppliance, config: object, args: argparse.Namespace) -> None:
    wait_ready(appliance)
    chat = LocalChat(transport_file(config))  # type: ignore[arg-type]
    client = redis.Redis.from_url(appliance.redis_url, decode_responses=True)
    streams = Streams(client)
    groups = [f"bench-{g}" for g in range(GROUPS)]
    for group in groups:
        chat.add_bot(group, group)
        chat.post(group, "15550000000", "!wabscan enable", admin=True)
    time.sleep(3)
    idle = {name: rss_mb(appliance.pid(name)) for name in PROCESSES}

    sampler = Sampler(appliance)
    sampler.start()

    # Latency at a steady rate, one link per message.
    posted: dict[str, float] = {}
    interval = 1.0 / args.rate
    count = int(args.rate * args.seconds)
    start = time.perf_counter()
    for n in range(count):
        target = start + n * interval
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        group = groups[n % GROUPS]
        text = f"look http://m{n}.{BAD}/login?id={n}"
        posted[chat.post(group, "15550001111", text)] = time.time() * 1000
    deadline = time.monotonic() + 120
    while len(streams.replied) < count + GROUPS and time.monotonic() < deadline:
        streams.poll()
        time.sleep(0.2)
    replies, scans = streams.replied, streams.scanned
    from_bridge = [replies[m] - scans[m] for m in posted if m in replies and m in scans]
    from_post = [replies[m] - t for m, t in posted.items() if m in replies]

    # Throughput: a burst of messages with several links each.
    streams.poll()
    before = streams.outbox
    links = args.burst * args.links_per_message
    start = time.perf_counter()
    for n in range(args.burst):
        body = " ".join(
            f"http://b{n}-{k}.{BAD}/x" for k in range(args.links_per_message)
        )
        chat.post(groups[n % GROUPS], "15550002222", body)
    deadline = time.monotonic() + 600
    while streams.outbox < before + args.burst and time.monotonic() < deadline:
        streams.poll()
        time.sleep(0.05)
    took = time.perf_counter() - start
    done = streams.outbox - before
    sampler.running = False
    chat.close()

    def row(measure: str, figure: str, goal: str = "") -> None:
        print(f"{measure:54} {figure:>12}  {goal}")

    def spread(values: list[float]) -> str:
        return "/".join(f"{percentile(values, q):.0f}" for q in (50, 95, 99))

    print()
    row("measure", "figure", "goal")
    row(
        "links/s through the pipeline (burst)",
        f"{done * args.links_per_message / took:,.0f}",
        ">= 1,000",
    )
    rate = int(args.rate)
    row(
        f"bridge -> outbox ms at {rate} links/s, p50/p95/p99",
        spread(from_bridge),
        "p50 < 20, p95 < 100",
    )
    row("post -> outbox ms (with transport poll), p50/p95/p99", spread(from_post))
    row("replies seen / messages posted (latency phase)", f"{len(from_bridge)}/{count}")
    for name in PROCESSES:
        row(
            f"RSS {name}, idle / under load (MB)",
            f"{idle[name]:.0f}/{sampler.peak[name]:.0f}",
            f"< {GOALS_MB[name]}",
        )
    total = f"{sum(idle.values()):.0f}/{sum(sampler.peak.values()):.0f}"
    row("RSS appliance, idle / under load (MB)", total, "< 200")
    print(f"({links:,} links in the burst; {count:,} messages in the latency phase)")


if __name__ == "__main__":
    main()
