"""Stream entries on their way to Redis, kept in SQLite while Redis refuses them.

The bridge is where a link enters the system, so it is the one place that
may not lose one: WhatsApp delivers a message once. Every entry the bridge
produces (scan jobs, and the replies to admin commands) goes through
:meth:`Spool.put`, which returns only once the entries are durable, in
Redis or in the ``bridge_spool`` table.

- While the spool is empty, entries go straight to Redis in one
  ``MULTI``/``EXEC``: all or none, since at ``maxmemory`` Redis refuses
  the queued writes and ``EXEC`` aborts (FIELD-NOTES: ``XADD`` fails with
  an out-of-memory error while reads still work).
- When Redis refuses (down, restarting, out of memory), the entries are
  appended to the spool, and so is everything after them until the spool
  is empty again, so that order is kept. A connection lost during ``EXEC``
  leaves it unknown whether Redis applied it; the entries are spooled and
  may then arrive twice.
- :meth:`Spool.replay_loop` adds spooled entries to Redis in order, a batch
  at a time. Each batch is one transaction that also sets a marker, the
  highest ``seq`` added with a digest of that row; the rows are deleted
  after. A crash between the two leaves rows that the marker says were
  added: they are deleted before the next replay instead of being added
  twice. Only when Redis itself lost the marker (restarted without
  persistence within that window) is a batch added twice.

Scan jobs are idempotent on their ``job`` id downstream, so an entry added
twice costs a second look, never a second reply.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from typing import Final

import redis
import trio
from sqlite_utils import Database

from wabscan import queue
from wabscan.bridge.metrics import BridgeMetrics
from wabscan.serial import SerialDatabase
from wabscan.storage import format_time, utc_now

log = logging.getLogger(__name__)

MARKER: Final = "wabscan:bridge:spool-replayed"
REPLAY_BATCH: Final = 100  # FIELD-NOTES: batches of 100 give 12,000+ msg/s
RETRY_DELAYS: Final = (0.2, 0.5, 1.0, 2.0, 5.0)

Entry = tuple[str, dict[str, str]]  # (stream, fields)


class Spool:
    """The durable hand-off from the bridge to Redis.

    Args:
        shared: the bridge's database (``bridge_spool`` table).
        client: a Redis client without retries (``queue.connect(url,
            consumer=True)``): a refused call should spool at once rather
            than block the caller through redis-py's retry back-off.
        metrics: where spooled and replayed entries are counted.
        maxlen: approximate ``MAXLEN`` of every stream.
    """

    def __init__(
        self,
        shared: SerialDatabase,
        client: redis.Redis,
        metrics: BridgeMetrics,
        maxlen: int = queue.DEFAULT_MAXLEN,
    ) -> None:
        self.shared = shared
        self.client = client
        self.metrics = metrics
        self.maxlen = maxlen
        self.depth = 0
        self.redis_ok = True
        self._lock = trio.Lock()
        self._wake = trio.Event()

    async def start(self) -> None:
        """Forget rows a previous run added but did not delete; count the rest."""
        try:
            marker = await queue.call(self.client.get, MARKER)
        except queue.UNAVAILABLE:
            marker = None
        if marker:
            await self.shared.run(_forget_added, str(marker))
        self.depth = await self.shared.run(_count)
        self.metrics.spool_depth.set(self.depth)
        if self.depth:
            log.warning("spool-pending entries=%d", self.depth)
            self._wake.set()

    async def put(self, entries: Sequence[Entry]) -> bool:
        """Make ``entries`` durable, in order; True if they went to Redis,
        False if they were spooled."""
        if not entries:
            return True
        async with self._lock:
            if self.depth == 0:
                try:
                    await queue.call(self._add, entries, None)
                except queue.UNAVAILABLE as exc:
                    self._refused(exc)
                else:
                    self.redis_ok = True
                    return True
            await self.shared.run(_append, entries)
            self.depth += len(entries)
            self.metrics.spooled.inc(len(entries))
            self.metrics.spool_depth.set(self.depth)
            self._wake.set()
            return False

    async def replay_once(self) -> int:
        """Add the oldest spooled batch to Redis; the number added.

        Raises:
            One of ``queue.UNAVAILABLE`` when Redis still refuses.
        """
        async with self._lock:
            # The marker again: Redis may have been down when start() looked.
            marker = await queue.call(self.client.get, MARKER)
            if marker:
                await self.shared.run(_forget_added, str(marker))
            rows = await self.shared.run(_oldest, REPLAY_BATCH)
            if not rows:
                self.depth = 0
                self.metrics.spool_depth.set(0)
                return 0
            last, _, fields = rows[-1]
            await queue.call(
                self._add, [(s, f) for _, s, f in rows], _marker(last, fields)
            )
            await self.shared.run(_delete_through, last)
            self.depth = max(0, self.depth - len(rows))
            self.redis_ok = True
            self.metrics.replayed.inc(len(rows))
            self.metrics.spool_depth.set(self.depth)
            return len(rows)

    async def replay_loop(
        self, stopping: trio.Event, beat: Callable[[], None] = lambda: None
    ) -> None:
        """Drain the spool whenever it has entries, until ``stopping``."""
        failures = 0
        while not stopping.is_set():
            beat()
            if self.depth == 0:
                with trio.move_on_after(1.0):
                    await self._wake.wait()
                self._wake = trio.Event()
                continue
            try:
                added = await self.replay_once()
            except queue.UNAVAILABLE as exc:
                self._refused(exc)
                delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
                failures += 1
                await trio.sleep(delay)
                continue
            if failures:
                log.info("spool-replaying entries=%d", self.depth + added)
            failures = 0
            if self.depth == 0:
                log.info("spool-drained")

    def _refused(self, exc: Exception) -> None:
        if self.redis_ok:
            log.warning("redis-refused action=spool error=%s", exc.__class__.__name__)
        self.redis_ok = False

    def _add(self, entries: Sequence[Entry], marker: str | None) -> None:
        pipe = self.client.pipeline(transaction=True)
        for stream, fields in entries:
            pipe.xadd(stream, dict(fields), maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
        if marker is not None:
            pipe.set(MARKER, marker)
        pipe.execute()


def _append(db: Database, entries: Sequence[Entry]) -> None:
    now = format_time(utc_now())
    with db.conn:
        db.conn.executemany(
            "INSERT INTO bridge_spool (stream, fields, spooled_at) VALUES (?, ?, ?)",
            [
                (stream, json.dumps(fields, ensure_ascii=False), now)
                for stream, fields in entries
            ],
        )


def _oldest(db: Database, limit: int) -> list[tuple[int, str, dict[str, str]]]:
    rows = db.execute(
        "SELECT seq, stream, fields FROM bridge_spool ORDER BY seq LIMIT ?", (limit,)
    ).fetchall()
    return [(int(seq), stream, json.loads(fields)) for seq, stream, fields in rows]


def _marker(seq: int, fields: dict[str, str]) -> str:
    # The row's content goes into the marker with its number: a database
    # restored from a backup numbers new rows from an older sequence, and a
    # bare number would then name rows that were never added.
    return f"{seq}:{_digest(fields)}"


def _digest(fields: dict[str, str]) -> str:
    text = json.dumps(fields, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _forget_added(db: Database, marker: str) -> None:
    """Delete the rows a marker says were added, if it names a row here."""
    seq_text, _, digest = marker.partition(":")
    try:
        seq = int(seq_text)
    except ValueError:
        return
    row = db.execute("SELECT fields FROM bridge_spool WHERE seq = ?", (seq,)).fetchone()
    if row is not None and _digest(json.loads(row[0])) == digest:
        _delete_through(db, seq)


def _delete_through(db: Database, seq: int) -> None:
    db.execute("DELETE FROM bridge_spool WHERE seq <= ?", (seq,))


def _count(db: Database) -> int:
    row = db.execute("SELECT count(*) FROM bridge_spool").fetchone()
    return int(row[0]) if row else 0
