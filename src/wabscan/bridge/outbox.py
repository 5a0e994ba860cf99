"""The outbox path: replies from the ``outbox`` stream to WhatsApp, at most once.

The sender reads the stream as consumer ``bridge`` of group ``bridge`` and
keeps what it read in memory, a queue per group, until the rate limits let
each reply go (``ratelimit``). For each reply, in order:

1. the ledger is checked: a reply already ``sent`` (or ``abandoned``) is
   acknowledged and dropped;
2. a small random delay (``bridge.reply_jitter_seconds``) passes, so that
   the bot does not answer with machine timing;
3. links are defanged again and the text varied if it would repeat the
   group's previous reply (``wording``);
4. the reply is claimed in the ledger (its own commit), sent, marked sent,
   and only then acknowledged in Redis. Steps 4's send and mark are shielded
   from cancellation: a SIGTERM lets the send in hand finish.

Whatever is held but not sent when the unit stops stays pending in Redis and
is read again first at the next start. ``ledger`` explains what happens to a
reply claimed but not marked when the process dies in between.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Final

import trio

from wabscan import queue
from wabscan.bridge import ledger
from wabscan.bridge.metrics import BridgeMetrics
from wabscan.bridge.ratelimit import RateLimiter
from wabscan.bridge.session import Session
from wabscan.bridge.transport import SendFailed, Transport, message_id_for
from wabscan.bridge.wording import defang_links, digest, vary
from wabscan.config import BridgeSettings
from wabscan.jobs import OutboxMessage
from wabscan.serial import SerialDatabase
from wabscan.storage import utc_now

log = logging.getLogger(__name__)

GROUP: Final = "bridge"
CONSUMER: Final = "bridge"
HOLD_MAX: Final = 500  # replies held in memory, waiting for their turn
CLAIM_EVERY: Final = 15.0
SEND_TIMEOUT: Final = 10.0  # below TimeoutStopSec: the send in hand is shielded
RETRY_DELAYS: Final = (0.5, 1.0, 2.0, 5.0, 10.0)
SEND_ATTEMPTS: Final = 5  # a reply WhatsApp refuses this often is dropped
TICK: Final = 1.0  # the longest the loop sleeps between watchdog beats


@dataclass
class _Held:
    entry_id: str
    message: OutboxMessage
    attempts: int = 0
    limited: bool = False  # counted once in the rate-limited metric
    not_before: float = 0.0


@dataclass
class _Queues:
    """Held replies: a FIFO per group, and the set of entry ids held."""

    groups: dict[str, deque[_Held]] = field(default_factory=dict)
    ids: set[str] = field(default_factory=set)

    def add(self, entry_id: str, message: OutboxMessage) -> bool:
        if entry_id in self.ids:
            return False
        self.ids.add(entry_id)
        self.groups.setdefault(message.group, deque()).append(_Held(entry_id, message))
        return True

    def remove(self, held: _Held) -> None:
        queue_ = self.groups.get(held.message.group)
        if queue_ and queue_[0] is held:
            queue_.popleft()
            if not queue_:
                del self.groups[held.message.group]
        self.ids.discard(held.entry_id)

    def __len__(self) -> int:
        return len(self.ids)


def next_reply(
    heads: list[_Held], limiter: RateLimiter, now: float
) -> tuple[_Held | None, float]:
    """The reply to send now, oldest first among those whose group has a token;
    otherwise None and how long to wait for one."""
    global_wait = limiter.global_wait(now)
    best: tuple[_Held | None, float] = (None, float("inf"))
    for held in sorted(heads, key=lambda h: _stream_order(h.entry_id)):
        wait = max(limiter.group_wait(held.message.group, now), held.not_before - now)
        if wait <= 0 and global_wait <= 0:
            return held, 0.0
        best = (None, min(best[1], max(wait, global_wait)))
    return best


def _stream_order(entry_id: str) -> tuple[int, int]:
    millis, _, seq = entry_id.partition("-")
    try:
        return int(millis), int(seq or 0)
    except ValueError:
        return (0, 0)


class OutboxSender:
    """Sends the outbox through a transport.

    Args:
        settings: ``config.bridge`` (rates, jitter).
        shared: the bridge's database (the ledger).
        consumer: the ``outbox`` stream as consumer ``bridge`` of ``bridge``.
        transport: where replies go.
        session: the session; nothing is sent while it is not connected.
        metrics: the bridge's metrics.
        rng: the jitter's random source (seeded in tests).
    """

    def __init__(
        self,
        settings: BridgeSettings,
        shared: SerialDatabase,
        consumer: queue.Consumer,
        transport: Transport,
        session: Session,
        metrics: BridgeMetrics,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.shared = shared
        self.consumer = consumer
        self.transport = transport
        self.session = session
        self.metrics = metrics
        self.rng = rng or random.SystemRandom()
        self.limiter = RateLimiter(
            settings.group_rate_per_minute, settings.global_rate_per_minute
        )
        self.held = _Queues()
        self.sent = 0
        self._digests: dict[str, str] = {}

    async def run(self, stopping: trio.Event, beat: Callable[[], None]) -> None:
        """Send until ``stopping`` is set; the reply in hand is finished."""
        await self._start(stopping, beat)
        last_claim = 0.0
        failures = 0
        while not stopping.is_set():
            beat()
            if not self.session.healthy:
                # Leave everything pending in Redis while WhatsApp is away.
                await _sleep_unless(stopping, TICK)
                continue
            try:
                if time.monotonic() - last_claim > CLAIM_EVERY:
                    self._hold(await self.consumer.claim())
                    last_claim = time.monotonic()
                if len(self.held) < HOLD_MAX:
                    # Block on the stream only when there is nothing to send.
                    self.consumer.block_ms = 1 if len(self.held) else queue.BLOCK_MS
                    self._hold(await self.consumer.read())
                failures = 0
            except queue.UNAVAILABLE as exc:
                delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
                failures += 1
                log.warning(
                    "outbox-read-retry error=%s in=%ss", exc.__class__.__name__, delay
                )
                self.consumer.rewind()
                await _sleep_unless(stopping, delay)
                continue

            heads = [q[0] for q in self.held.groups.values() if q]
            held, wait = next_reply(heads, self.limiter, time.time())
            if held is None:
                if heads:
                    self._count_limited(heads)
                    await _sleep_unless(stopping, min(wait, TICK))
                continue
            await self._deliver(held, stopping)

    async def _start(self, stopping: trio.Event, beat: Callable[[], None]) -> None:
        delay = 0.2
        while not stopping.is_set():
            beat()
            try:
                await self.consumer.ensure_group()
                break
            except queue.UNAVAILABLE as exc:
                log.warning("outbox-waiting-for-redis error=%s", exc.__class__.__name__)
                await _sleep_unless(stopping, delay)
                delay = min(delay * 2, 5.0)
        since = utc_now() - timedelta(minutes=10)
        self.limiter.replay(await self.shared.run(ledger.sends_since, since))

    def _hold(self, entries: list[queue.Entry]) -> None:
        for entry in entries:
            message = OutboxMessage.from_fields(entry.fields)
            if self.held.add(entry.id, message) and not _sendable(message):
                # Nothing could send it; _deliver acknowledges it unsent.
                self.metrics.replies_skipped.labels("malformed").inc()
                log.error("outbox-malformed entry=%s", entry.id)

    def _count_limited(self, heads: list[_Held]) -> None:
        now = time.time()
        for held in heads:
            if held.limited or held.not_before > now:
                continue
            held.limited = True
            scope = (
                "group"
                if self.limiter.group_wait(held.message.group, now) > 0
                else "global"
            )
            self.metrics.rate_limited.labels(scope).inc()

    async def _deliver(self, held: _Held, stopping: trio.Event) -> None:
        message = held.message
        if not _sendable(message):
            await self._done(held)
            return

        found = await self.shared.run(ledger.entry, message.reply)
        if found is not None and found.state != ledger.SENDING:
            self.metrics.replies_skipped.labels("already-sent").inc()
            log.info("outbox-skip reply=%s state=%s", message.reply, found.state)
            await self._done(held)
            return
        if found is not None and not self.transport.custom_ids:
            await self.shared.run(ledger.mark_abandoned, message.reply, utc_now())
            self.metrics.replies_skipped.labels("in-doubt").inc()
            log.warning(
                "outbox-in-doubt reply=%s group=%s action=not-resent",
                message.reply,
                message.group,
            )
            await self._done(held)
            return

        if found is None:
            # The delay comes before the claim: a stop during it leaves the
            # reply untouched and pending.
            jitter = self.rng.uniform(0, self.settings.reply_jitter_seconds)
            if await _sleep_unless(stopping, jitter):
                return
            text = await self._text(message)
            wa_id = message_id_for(message.reply) if self.transport.custom_ids else ""
            await self.shared.run(
                ledger.claim,
                message.reply,
                message.group,
                wa_id,
                digest(text),
                utc_now(),
            )
        else:
            # A resend after a crash, with the id chosen the first time: the
            # receiving side drops it if the first send got through.
            text = await self._text(message)
            wa_id = found.wa_message_id
            log.warning("outbox-resend reply=%s id=%s", message.reply, wa_id)

        with trio.CancelScope(shield=True):
            sent = await self._send(held, text, wa_id)
        if sent:
            await self._done(held)

    async def _send(self, held: _Held, text: str, wa_id: str) -> bool:
        message = held.message
        try:
            with trio.fail_after(SEND_TIMEOUT):
                sent_id = await self.transport.send(
                    message.group, text, quote=message.quote, message_id=wa_id
                )
        except (SendFailed, trio.TooSlowError) as exc:
            return await self._failed(held, exc)
        now = utc_now()
        await self.shared.run(ledger.mark_sent, message.reply, sent_id or wa_id, now)
        self.limiter.spend(message.group, now.timestamp())
        self._digests[message.group] = digest(text)
        self.sent += 1
        self.metrics.replies.labels(message.kind or "reply").inc()
        log.info(
            "reply-sent reply=%s group=%s kind=%s quoted=%s",
            message.reply,
            message.group,
            message.kind,
            bool(message.quote),
        )
        return True

    async def _failed(self, held: _Held, exc: Exception) -> bool:
        message = held.message
        if isinstance(exc, trio.TooSlowError):
            # No answer: it may have gone out. Treated as in doubt.
            await self.shared.run(ledger.mark_abandoned, message.reply, utc_now())
            self.metrics.replies_skipped.labels("in-doubt").inc()
            log.error("reply-timeout reply=%s group=%s", message.reply, message.group)
            await self._done(held)
            return False
        assert isinstance(exc, SendFailed)
        held.attempts += 1
        if exc.permanent or held.attempts >= SEND_ATTEMPTS:
            await self.shared.run(ledger.mark_abandoned, message.reply, utc_now())
            self.metrics.replies_skipped.labels("refused").inc()
            log.error(
                "reply-dropped reply=%s group=%s reason=%r attempts=%d",
                message.reply,
                message.group,
                exc.reason,
                held.attempts,
            )
            await self._done(held)
            return False
        # WhatsApp said no: it was not sent, so it may be tried again.
        await self.shared.run(ledger.release, message.reply)
        delay = RETRY_DELAYS[min(held.attempts - 1, len(RETRY_DELAYS) - 1)]
        held.not_before = time.time() + delay
        log.warning(
            "reply-retry reply=%s group=%s reason=%r in=%ss",
            message.reply,
            message.group,
            exc.reason,
            delay,
        )
        return False

    async def _text(self, message: OutboxMessage) -> str:
        previous = self._digests.get(message.group)
        if previous is None:
            previous = await self.shared.run(ledger.last_digest, message.group)
        return vary(defang_links(message.text), message.reply, previous)

    async def _done(self, held: _Held) -> None:
        self.held.remove(held)
        try:
            await self.consumer.ack([held.entry_id])
        except queue.UNAVAILABLE as exc:
            # Left pending: read again later, and the ledger skips it then.
            log.warning(
                "outbox-ack-failed entry=%s error=%s",
                held.entry_id,
                exc.__class__.__name__,
            )


def _sendable(message: OutboxMessage) -> bool:
    return bool(message.reply and message.group and message.text)


async def _sleep_unless(stopping: trio.Event, seconds: float) -> bool:
    """Sleep, waking early when ``stopping`` is set; True if it was."""
    if seconds > 0:
        with trio.move_on_after(seconds):
            await stopping.wait()
    return stopping.is_set()
