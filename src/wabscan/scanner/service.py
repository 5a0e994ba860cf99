"""The scanner unit: scan jobs in, verdicts out.

For each batch from the ``scan`` stream: judge every link (from the Redis
cache when a fresh verdict is there), store the verdicts and the sightings in
SQLite in one transaction, add one entry per job to the ``verdict`` stream,
and only then acknowledge the batch. A crash anywhere before the
acknowledgement means the batch is read again on restart; every write is
idempotent on its natural key, so nothing is doubled.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import redis
import trio
from prometheus_client import Counter, Gauge, Histogram
from sqlite_utils import Database

from wabscan import queue
from wabscan.cache import VerdictCache, cache_client
from wabscan.scanner.canonical import CanonicalURL, InvalidURL, canonicalize
from wabscan.scanner.engine import Scanner
from wabscan.service import Unit
from wabscan.storage import (
    open_database,
    record_sighting,
    record_verdict,
    transaction,
)
from wabscan.verdict import Level, Verdict

log = logging.getLogger(__name__)

GROUP = "scanner"


class ScannerUnit:
    def __init__(self, unit: Unit) -> None:
        self.unit = unit
        config = unit.config
        # Used only from the worker thread that judges a batch, one batch at a
        # time (handle() awaits each before reading the next).
        self.db: Database = open_database(config.database_path, any_thread=True)
        self.scanner = Scanner.from_database(self.db)
        self.consumer = queue.Consumer(
            queue.connect(config.redis_url, consumer=True), queue.SCAN, GROUP, GROUP
        )
        self.client = queue.connect(config.redis_url)
        self.verdicts = queue.Producer(self.client, queue.VERDICT)
        self.cache = VerdictCache(
            cache_client(config.redis_url), config.cache, self.scanner.version
        )

        registry = unit.registry
        self.links = Counter(
            "wabscan_scanner_links", "Links judged", ["verdict"], registry=registry
        )
        self.cache_hits = Counter(
            "wabscan_scanner_cache_hits",
            "Verdicts served from the cache",
            registry=registry,
        )
        self.invalid = Counter(
            "wabscan_scanner_invalid_links",
            "Jobs whose URL could not be parsed",
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "wabscan_scanner_batch_seconds",
            "Time to judge and store one batch",
            registry=registry,
        )
        self.failures = Counter(
            "wabscan_scanner_batch_failures",
            "Batches handed back after an error",
            registry=registry,
        )
        self.lag = Gauge(
            "wabscan_queue_lag",
            "Entries waiting in a stream",
            ["stream"],
            registry=registry,
        )
        self.total = 0

    async def run(self) -> None:
        unit = self.unit
        unit.notifier.register("scan")
        await self._connect()
        unit.ready(f"scanning; model {self.scanner.version}")

        await queue.consume(
            unit, self.consumer, self.handle, loop="scan", failures=self.failures
        )

    async def _connect(self) -> None:
        delay = 0.2
        while True:
            try:
                await self.consumer.ensure_group()
                return
            except queue.UNAVAILABLE as exc:
                self.unit.health.problem("redis", f"cannot reach Redis: {exc}")
                self.unit.status("waiting for Redis")
                log.warning("redis-unavailable error=%r", str(exc))
                await trio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def handle(self, batch: list[queue.Entry]) -> None:
        started = time.perf_counter()
        entries = await trio.to_thread.run_sync(self.judge, batch)
        await self.verdicts.add_many(entries)
        await self.consumer.ack([e.id for e in batch])
        self.batch_seconds.observe(time.perf_counter() - started)
        self.total += len(batch)
        self.unit.status(f"scanning; {self.total} links judged since start", every=2)

    def judge(self, batch: list[queue.Entry]) -> list[dict[str, str]]:
        """Judge and store a batch (in a worker thread); the verdict entries."""
        out: list[dict[str, str]] = []
        fresh: list[Verdict] = []
        now = datetime.now(UTC)
        canonicals = {entry.id: self._canonical(entry.fields) for entry in batch}
        cached = self.cache.get_many(
            c.url
            for entry in batch
            if (c := canonicals[entry.id]) is not None
            and entry.fields.get("kind") != "rescan"
        )
        with transaction(self.db):
            for entry in batch:
                job = entry.fields
                canonical = canonicals[entry.id]
                verdict = (
                    None
                    if canonical is None
                    else self._verdict(job, canonical, fresh, cached)
                )
                if verdict is None:
                    out.append({**job, "error": "invalid-url"})
                    continue
                if job.get("group") and job.get("message"):
                    record_sighting(
                        self.db,
                        job["group"],
                        job["message"],
                        verdict.canonical,
                        job.get("sender", ""),
                        seen_at=now,
                    )
                self.links.labels(verdict.level.value).inc()
                # Flagged links at info (they lead to replies an operator may
                # trace); benign ones at debug: at hundreds of links a second
                # they cost a sixth of the unit's time (py-spy) and would hit
                # journald's per-unit rate limit.
                log.log(
                    logging.INFO
                    if verdict.level is not Level.BENIGN
                    else logging.DEBUG,
                    "verdict scan=%s host=%s level=%s score=%.0f",
                    job.get("job", entry.id),
                    _domain(verdict.canonical),
                    verdict.level.value,
                    verdict.score,
                )
                out.append(_verdict_entry(job, verdict))
        self.cache.put_many(fresh)
        return out

    def _canonical(self, job: dict[str, str]) -> CanonicalURL | None:
        try:
            return canonicalize(job.get("url", ""))
        except InvalidURL as exc:
            self.invalid.inc()
            log.warning("invalid-url scan=%s error=%r", job.get("job"), str(exc))
            return None

    def _verdict(
        self,
        job: dict[str, str],
        canonical: CanonicalURL,
        fresh: list[Verdict],
        cached: dict[str, Verdict],
    ) -> Verdict:
        url = job.get("url", "")
        group = job.get("group") or None
        # An override beats the cache: an admin's ruling takes effect at once,
        # and a verdict it decided is never cached (it ends with the override).
        overridden = self.scanner.overridden(canonical, group)
        hit = cached.get(canonical.url)
        if job.get("kind") != "rescan" and not overridden and hit is not None:
            self.cache_hits.inc()
            return hit
        verdict = self.scanner.scan(url, group=group, canonical=canonical)
        # The job's own time: a job replayed after a crash records nothing new.
        record_verdict(
            self.db, verdict, self.scanner.version, scanned_at=_job_time(job)
        )
        if not overridden:
            fresh.append(verdict)
        return verdict


def _verdict_entry(job: dict[str, str], verdict: Verdict) -> dict[str, str]:
    return {
        **job,
        "canonical": verdict.canonical,
        "verdict": verdict.level.value,
        "score": f"{verdict.score:.1f}",
        "reasons": json.dumps(list(verdict.reasons), ensure_ascii=False),
    }


def _job_time(job: dict[str, str]) -> datetime | None:
    try:
        return datetime.fromisoformat(job["at"]) if job.get("at") else None
    except ValueError:
        return None


def _domain(canonical: str) -> str:
    return canonical.split("://", 1)[-1].split("/", 1)[0]


async def main(unit: Unit) -> None:
    await ScannerUnit(unit).run()


def queue_depths(client: redis.Redis) -> dict[str, Any]:
    return {
        stream: queue.depth_sync(client, stream, group)
        for stream, group in (
            (queue.SCAN, "scanner"),
            (queue.VERDICT, "reporter"),
            (queue.OUTBOX, "bridge"),
        )
    }
