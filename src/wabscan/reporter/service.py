"""The reporter unit: verdicts in, replies out, and the control API.

For each batch from the ``verdict`` stream, in this order:

1. record the batch in SQLite in one transaction: the message parts, the
   decision about every message the batch completes, the replies decided
   (status ``queued``, or ``deferred`` with ``send_after``), what each group
   was told, and corrections;
2. add every ``queued`` reply to the ``outbox`` stream, keyed by its id;
3. mark those replies ``sent-to-outbox``;
4. acknowledge the batch.

A ``kill -9`` between any two steps neither loses nor doubles a reply.
Before 1 commits, nothing happened and the batch is read again. Between 1
and 2 the replies wait as ``queued`` and are added at the next start (the
replayed batch finds its messages decided and adds nothing). Between 2 and 3
they are added once more at the next start: the same id, which the bridge
sends at most once. After 3 a replay is a no-op. So a reply is never lost,
and at worst its outbox entry is repeated, never its id.

A second loop releases deferred replies (quiet hours, mutes) when their time
comes, decides messages whose last verdicts never came, and purges old
bookkeeping; it follows the same queue-then-mark order.
"""

from __future__ import annotations

import logging
import sqlite3
import time

import trio
from prometheus_client import Counter, Gauge, Histogram

from wabscan import queue
from wabscan.jobs import VerdictMessage
from wabscan.reporter import ledger
from wabscan.reporter.api import ControlAPI, load_token
from wabscan.reporter.ledger import Report, Settings
from wabscan.serial import SerialDatabase
from wabscan.service import Unit
from wabscan.storage import utc_now

log = logging.getLogger(__name__)

GROUP = "reporter"
RELEASE_EVERY = 5.0
PURGE_EVERY = 3600.0
# What a batch may meet and retry: Redis down or full, SQLite locked for
# longer than its busy timeout.
RETRYABLE = (*queue.UNAVAILABLE, sqlite3.OperationalError)


class ReporterUnit:
    """The reporter's loops and state; :func:`main` runs it."""

    def __init__(self, unit: Unit) -> None:
        self.unit = unit
        config = unit.config
        self.settings = Settings.from_config(config)
        self.store = SerialDatabase.open(config.database_path)
        self.consumer = queue.Consumer(
            queue.connect(config.redis_url, consumer=True), queue.VERDICT, GROUP, GROUP
        )
        self.client = queue.connect(config.redis_url)
        self.outbox = queue.Producer(self.client, queue.OUTBOX)
        self._flushing = trio.Lock()
        self._wake = trio.Event()
        self.api = ControlAPI(
            self.store, self.client, config, load_token(config), self.wake
        )

        registry = unit.registry
        self.verdicts = Counter(
            "wabscan_reporter_verdicts",
            "Verdicts read from the verdict stream",
            ["verdict"],
            registry=registry,
        )
        self.replies = Counter(
            "wabscan_reporter_replies",
            "Replies added to the outbox",
            ["kind"],
            registry=registry,
        )
        self.deferrals = Counter(
            "wabscan_reporter_deferrals",
            "Replies held for quiet hours or a mute",
            registry=registry,
        )
        self.deferred = Gauge(
            "wabscan_reporter_deferred_replies",
            "Replies held now, waiting for their time",
            registry=registry,
        )
        self.suppressed = Counter(
            "wabscan_reporter_suppressed",
            "Messages or corrections that got no reply, by reason",
            ["reason"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "wabscan_reporter_batch_seconds",
            "Time to record, decide and queue one batch",
            registry=registry,
        )
        self.failures = Counter(
            "wabscan_reporter_batch_failures",
            "Batches handed back after an error",
            registry=registry,
        )
        self.total = 0
        self.sent = 0

    def wake(self) -> None:
        """Re-judge deferred replies now (a group's settings changed)."""
        self._wake.set()

    async def run(self) -> None:
        unit = self.unit
        if self.api.token.value is None:
            log.warning("control-api-disabled reason=%r", self.api.token.problem)
        self.api.install(unit.router)
        unit.notifier.register("verdicts")
        unit.notifier.register("release")
        await self._connect()
        if unit.stopping.is_set():
            self.store.close()
            return
        indexed = await self.store.run(ledger.index_scans)
        if indexed:
            log.info("scan-ids-indexed count=%d", indexed)
        unit.ready("reporting")

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._verdict_loop)
                nursery.start_soon(self._release_loop)
                await unit.stopping.wait()
                self.wake()  # the release loop stops at once, not after its pause
        finally:
            # Cancelled here only once any database call has returned (they
            # are not abandoned), so the connection is free to close.
            self.store.close()

    async def _connect(self) -> None:
        delay = 0.2
        while not self.unit.stopping.is_set():
            self.unit.notifier.beat("verdicts")
            self.unit.notifier.beat("release")
            try:
                await self.consumer.ensure_group()
                # Replies queued before a crash go out before anything new.
                await self.flush()
                self.unit.health.clear("redis")
                return
            except queue.UNAVAILABLE as exc:
                self.unit.health.problem("redis", f"cannot reach Redis: {exc}")
                self.unit.status("waiting for Redis")
                log.warning("redis-unavailable error=%r", str(exc))
                await trio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _verdict_loop(self) -> None:
        await queue.consume(
            self.unit,
            self.consumer,
            self.handle,
            loop="verdicts",
            retryable=RETRYABLE,
            failures=self.failures,
        )

    async def handle(self, batch: list[queue.Entry]) -> None:
        """Record, decide, queue, then acknowledge one batch (see the module
        docstring for why in this order)."""
        started = time.perf_counter()
        verdicts: list[VerdictMessage] = []
        for entry in batch:
            try:
                verdicts.append(VerdictMessage.from_fields(entry.fields))
            except (ValueError, TypeError) as exc:
                # Acknowledged with the rest: a malformed entry would
                # otherwise be read again forever.
                log.warning("verdict-malformed entry=%s error=%r", entry.id, str(exc))
        report = await self.store.run(
            ledger.record_verdicts, verdicts, self.settings, utc_now()
        )
        self._count(report)
        await self.flush()
        await self.consumer.ack([e.id for e in batch])
        self.batch_seconds.observe(time.perf_counter() - started)
        self.total += len(batch)
        self.unit.status(
            f"reporting; {self.total} verdicts, {self.sent} replies since start"
        )

    async def flush(self) -> None:
        """Add every queued reply to the outbox, then mark it sent."""
        async with self._flushing:
            while True:
                pending = await self.store.run(ledger.queued_replies)
                if not pending:
                    return
                await self.outbox.add_many([reply.to_fields() for reply in pending])
                await self.store.run(
                    ledger.mark_sent, [reply.reply for reply in pending], utc_now()
                )
                for reply in pending:
                    self.replies.labels(reply.kind).inc()
                    log.info(
                        "reply id=%s kind=%s group=%s",
                        reply.reply,
                        reply.kind,
                        reply.group,
                    )
                self.sent += len(pending)

    async def _release_loop(self) -> None:
        unit = self.unit
        last_purge = time.monotonic()
        while not unit.stopping.is_set():
            unit.notifier.beat("release")
            try:
                now = utc_now()
                for step in (ledger.release_deferred, ledger.decide_overdue):
                    self._count(await self.store.run(step, self.settings, now))
                if time.monotonic() - last_purge > PURGE_EVERY:
                    days = unit.config.retention.scans_days
                    deleted = await self.store.run(ledger.purge, days, now)
                    log.info("purged rows=%d older_than_days=%d", deleted, days)
                    last_purge = time.monotonic()
                await self.flush()
                self.deferred.set(await self.store.run(ledger.deferred_count))
            except RETRYABLE as exc:
                log.warning("release-retry error=%r", str(exc))
            with trio.move_on_after(RELEASE_EVERY):
                await self._wake.wait()
            self._wake = trio.Event()

    def _count(self, report: Report) -> None:
        for level, n in report.verdicts.items():
            self.verdicts.labels(level).inc(n)
        for reason, n in report.suppressed.items():
            self.suppressed.labels(reason).inc(n)
        self.deferrals.inc(report.deferred)
        if report.released:
            log.info("released replies=%d", report.released)
        if report.replayed:
            log.info("replayed verdicts=%d", report.replayed)


async def main(unit: Unit) -> None:
    """The reporter's main, for ``run_unit("reporter", config, main)``."""
    await ReporterUnit(unit).run()
