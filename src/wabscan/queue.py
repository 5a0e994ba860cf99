"""Redis streams between the units: ``scan``, ``verdict``, ``outbox``.

Every stream is read through a consumer group and acknowledged only once the
work is durable, so a unit killed at any moment loses nothing: on restart it
first re-reads its own pending entries (same consumer name), and every
consumer periodically claims entries left idle by any other.

redis-py is used synchronously in worker threads (FIELD-NOTES: the asyncio
client does not run under trio; a sync call in ``to_thread`` with
``abandon_on_cancel`` cancels in under 1 ms). Consumer connections do not
retry: a retried, abandoned ``XREADGROUP`` can move entries into the pending
list behind our back (they are then reclaimed, not lost, but later).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import redis
import trio
from redis.backoff import NoBackoff
from redis.retry import Retry

if TYPE_CHECKING:
    from prometheus_client import Counter

    from wabscan.service import Unit

log = logging.getLogger(__name__)

SCAN = "wabscan:scan"
VERDICT = "wabscan:verdict"
OUTBOX = "wabscan:outbox"

# An entry is deleted once every consumer group of its stream has
# acknowledged it (see ``trim_acknowledged``), so a stream holds only the
# work in flight. MAXLEN ~ is a last resort against a group that stopped
# for good; a unit that is merely down keeps its backlog, up to maxmemory.
DEFAULT_MAXLEN = 100_000
BATCH = 100  # FIELD-NOTES: batches of 100 give 12,000-28,000 msg/s
BLOCK_MS = 1000
CLAIM_IDLE_MS = 30_000

T = TypeVar("T")

# What a producer or consumer may meet when Redis is down, restarting, or
# full (with nothing left to evict, writes fail with an OutOfMemoryError, a
# ResponseError).
UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, redis.ResponseError)


def connect(url: str, *, consumer: bool = False) -> redis.Redis:
    """A client for the appliance's Redis (``unix:///run/...`` or ``redis://``)."""
    kwargs: dict[str, Any] = {"decode_responses": True, "socket_connect_timeout": 2}
    if consumer:
        kwargs["retry"] = Retry(NoBackoff(), 0)
        kwargs["retry_on_timeout"] = False
    return redis.Redis.from_url(url, **kwargs)


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking Redis call in a worker thread, cancellable."""
    return await trio.to_thread.run_sync(
        partial(fn, *args, **kwargs), abandon_on_cancel=True
    )


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    fields: dict[str, str]


class Producer:
    """Adds entries to one stream, pipelined, trimmed with ``MAXLEN ~``."""

    def __init__(
        self, client: redis.Redis, stream: str, maxlen: int = DEFAULT_MAXLEN
    ) -> None:
        self.client = client
        self.stream = stream
        self.maxlen = maxlen

    def add_many_sync(self, entries: Sequence[dict[str, str]]) -> list[str]:
        """Add all entries in one round trip; raises one of ``UNAVAILABLE``."""
        pipe = self.client.pipeline(transaction=False)
        for fields in entries:
            pipe.xadd(self.stream, dict(fields), maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
        ids: list[str] = pipe.execute()
        return ids

    async def add_many(self, entries: Sequence[dict[str, str]]) -> list[str]:
        if not entries:
            return []
        return await call(self.add_many_sync, entries)


class Consumer:
    """Reads one stream as a named consumer of a group.

    The name should be stable across restarts of the same unit, so that on
    start :meth:`read` returns what the previous run held but had not
    acknowledged, before any new entry.
    """

    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        group: str,
        name: str,
        *,
        batch: int = BATCH,
        block_ms: int = BLOCK_MS,
        claim_idle_ms: int = CLAIM_IDLE_MS,
    ) -> None:
        self.client = client
        self.stream = stream
        self.group = group
        self.name = name
        self.batch = batch
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self._backlog = True  # our own pending entries come first

    def ensure_group_sync(self) -> None:
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def ensure_group(self) -> None:
        await call(self.ensure_group_sync)

    def read_sync(self) -> list[Entry]:
        if self._backlog:
            entries = self._xreadgroup("0", block=None)
            if entries:
                return entries
            self._backlog = False
        return self._xreadgroup(">", block=self.block_ms)

    def rewind(self) -> None:
        """Re-read our own pending entries next, e.g. after a batch failed."""
        self._backlog = True

    async def read(self) -> list[Entry]:
        """The next batch: own pending entries first, then new ones (blocks up
        to ``block_ms``; an empty list means nothing arrived)."""
        return await call(self.read_sync)

    def _xreadgroup(self, start: str, block: int | None) -> list[Entry]:
        reply: Any = self.client.xreadgroup(
            self.group, self.name, {self.stream: start}, count=self.batch, block=block
        )
        entries: list[Entry] = []
        for _stream, items in reply or []:
            for entry_id, fields in items:
                # A pending entry trimmed away by MAXLEN comes back as None.
                if fields is not None:
                    entries.append(Entry(entry_id, fields))
                else:
                    self.client.xack(self.stream, self.group, entry_id)
        return entries

    def claim_sync(self) -> list[Entry]:
        """Take over entries that another consumer left idle too long."""
        reply: Any = self.client.xautoclaim(
            self.stream,
            self.group,
            self.name,
            min_idle_time=self.claim_idle_ms,
            start_id="0-0",
            count=self.batch,
        )
        claimed = reply[1] if reply else []
        return [Entry(i, f) for i, f in claimed if f is not None]

    async def claim(self) -> list[Entry]:
        return await call(self.claim_sync)

    def ack_sync(self, ids: Sequence[str]) -> None:
        if ids:
            self.client.xack(self.stream, self.group, *ids)
            trim_acknowledged(self.client, self.stream)

    async def ack(self, ids: Sequence[str]) -> None:
        """Acknowledge entries, then delete what every group has done with.

        Both are allowed at ``maxmemory``, so draining a stream frees the
        memory producers are waiting for."""
        if ids:
            await call(self.ack_sync, ids)

    def pending_sync(self) -> int:
        info = self.client.xpending(self.stream, self.group)
        return int(info.get("pending", 0)) if isinstance(info, dict) else 0


def _stream_id(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def trim_acknowledged(client: redis.Redis, stream: str) -> int:
    """Delete the entries that every consumer group of ``stream`` has
    acknowledged; returns how many went.

    For each group the first entry still needed is its oldest pending one
    or, with none pending, the one after its last delivered; everything
    older than the earliest of those is done with (``XTRIM MINID``). A
    stream without a group is left alone. The groups are read, then the
    stream trimmed: between the two a group can only move forward, so what
    was done with stays done with. Redis 8.2's ``XACKDEL`` does this in one
    command; Debian's 7.0 does not have it.
    """
    try:
        groups: Any = client.xinfo_groups(stream)
    except redis.ResponseError:  # no such stream
        return 0
    if not groups:
        return 0
    pipe = client.pipeline(transaction=False)
    for info in groups:
        pipe.xpending(stream, info["name"])
    floor: tuple[int, int] | None = None
    for info, pending in zip(groups, pipe.execute(), strict=True):
        if int(pending["pending"]):
            needed = _stream_id(pending["min"])
        else:
            ms, seq = _stream_id(info["last-delivered-id"])
            needed = (ms, seq + 1)
        floor = needed if floor is None else min(floor, needed)
    if floor is None or floor <= (0, 1):
        return 0
    return int(client.xtrim(stream, minid=f"{floor[0]}-{floor[1]}", approximate=False))


CLAIM_EVERY = 15.0
RETRY_DELAYS = (0.5, 1, 2, 5, 10)


async def consume(
    unit: Unit,
    consumer: Consumer,
    handle: Callable[[list[Entry]], Awaitable[None]],
    *,
    loop: str,
    retryable: tuple[type[BaseException], ...] = UNAVAILABLE,
    failures: Counter | None = None,
) -> None:
    """A unit's main loop over one stream, until the unit is stopping.

    Beats the watchdog each round, claims entries other consumers left idle
    every ``CLAIM_EVERY`` seconds (FIELD-NOTES: an abandoned XREADGROUP can
    leave entries pending), hands each batch to ``handle``, and on a
    retryable error backs off and re-reads its own pending entries: a batch
    is acknowledged only by ``handle``, once its work is durable.
    """
    last_claim = 0.0
    failed = 0
    while not unit.stopping.is_set():
        unit.notifier.beat(loop)
        try:
            if time.monotonic() - last_claim > CLAIM_EVERY:
                claimed = await consumer.claim()
                last_claim = time.monotonic()
                if claimed:
                    log.warning(
                        "claimed stream=%s entries=%d", consumer.stream, len(claimed)
                    )
                    await handle(claimed)
            batch = await consumer.read()
            if batch:
                await handle(batch)
            failed = 0
            unit.health.clear("batches")
        except retryable as exc:
            if failures is not None:
                failures.inc()
            delay = RETRY_DELAYS[min(failed, len(RETRY_DELAYS) - 1)]
            failed += 1
            unit.health.problem("batches", f"a batch failed: {exc}")
            unit.status(f"retrying ({exc.__class__.__name__})")
            log.warning("batch-retry error=%r in=%ss", str(exc), delay)
            consumer.rewind()
            await trio.sleep(delay)


class Observer:
    """Sees every entry of some streams go by, for the soak test and the
    benchmarks: a consumer group of its own that acknowledges at once, so
    the units' trimming keeps each entry until it has been seen. Call
    :meth:`close` when done, or its group holds entries for ever."""

    def __init__(
        self, client: redis.Redis, streams: Sequence[str], group: str = "observer"
    ) -> None:
        self.client = client
        self.streams = tuple(streams)
        self.group = group
        for stream in self.streams:
            try:
                client.xgroup_create(stream, group, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def read(self, count: int = 2000) -> list[tuple[str, Entry]]:
        """Everything new since the last call (up to ``count`` a stream)."""
        seen: list[tuple[str, Entry]] = []
        while True:
            reply: Any = self.client.xreadgroup(
                self.group, "observer", dict.fromkeys(self.streams, ">"), count=count
            )
            if not reply:
                return seen
            for stream, items in reply:
                ids = [entry_id for entry_id, _fields in items]
                seen.extend((stream, Entry(i, f)) for i, f in items if f is not None)
                self.client.xack(stream, self.group, *ids)
                trim_acknowledged(self.client, stream)

    def close(self) -> None:
        for stream in self.streams:
            with contextlib.suppress(redis.RedisError):
                self.client.xgroup_destroy(stream, self.group)


def depth_sync(client: redis.Redis, stream: str, group: str) -> dict[str, int]:
    """Queue depth for metrics: entries not yet delivered, and delivered but
    not acknowledged."""
    try:
        groups = client.xinfo_groups(stream)
    except redis.ResponseError:
        return {"lag": 0, "pending": 0}
    for info in groups:
        if info.get("name") == group:
            return {"lag": int(info.get("lag") or 0), "pending": int(info["pending"])}
    return {"lag": 0, "pending": 0}
