"""Token buckets for the outbox: one per group and one for the whole account.

Bursts of bot messages get WhatsApp accounts banned (FIELD-NOTES), so the
bridge sends at most ``bridge.group_rate_per_minute`` replies a minute to a
group (default 4) and ``bridge.global_rate_per_minute`` in all (default 20),
with small bursts: two replies at once in a group, four across groups.

The buckets live in memory and are rebuilt at start from the ``outbox_sent``
ledger, which records when every reply went out. That survives a restart
(and a Redis restart, which would empty buckets kept there) without a Redis
round trip per reply; the ledger is written for every send anyway.

Times are wall-clock seconds (``time.time()``) because the ledger's are; a
clock stepping backwards only makes a bucket refill later.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Final

GROUP_BURST: Final = 2.0
GLOBAL_BURST: Final = 4.0
GLOBAL: Final = ""  # the key of the account-wide bucket


@dataclass(frozen=True, slots=True)
class Bucket:
    """A token bucket: ``capacity`` tokens, refilled at ``rate`` per second.

    A reply may go when a whole token is there, and takes it.
    """

    capacity: float
    rate: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, per_minute: float, burst: float, now: float) -> Bucket:
        # A rate below one a minute still lets one reply through at a time.
        capacity = max(1.0, min(burst, per_minute))
        return cls(capacity, per_minute / 60.0, capacity, now)

    def at(self, now: float) -> Bucket:
        """The bucket refilled up to ``now``."""
        elapsed = max(0.0, now - self.updated)
        tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        return replace(self, tokens=tokens, updated=max(now, self.updated))

    def wait(self, now: float) -> float:
        """Seconds from ``now`` until a token is there (0 if one is)."""
        tokens = self.at(now).tokens
        if tokens >= 1.0:
            return 0.0
        if self.rate <= 0:
            return float("inf")
        return (1.0 - tokens) / self.rate

    def take(self, now: float) -> Bucket | None:
        """The bucket after one reply at ``now``; None if there is no token."""
        current = self.at(now)
        if current.tokens < 1.0:
            return None
        return replace(current, tokens=current.tokens - 1.0)

    def spend(self, now: float) -> Bucket:
        """The bucket after a reply that went out at ``now`` whatever it held
        (a send recorded in the ledger); it cannot go below empty."""
        current = self.at(now)
        return replace(current, tokens=max(0.0, current.tokens - 1.0))


class RateLimiter:
    """A bucket per group plus one for the account.

    Args:
        group_per_minute: ``bridge.group_rate_per_minute``.
        global_per_minute: ``bridge.global_rate_per_minute``.
    """

    def __init__(self, group_per_minute: float, global_per_minute: float) -> None:
        self.group_per_minute = group_per_minute
        self.global_per_minute = global_per_minute
        self.buckets: dict[str, Bucket] = {}

    def _bucket(self, key: str, now: float) -> Bucket:
        bucket = self.buckets.get(key)
        if bucket is None:
            if key == GLOBAL:
                bucket = Bucket.full(self.global_per_minute, GLOBAL_BURST, now)
            else:
                bucket = Bucket.full(self.group_per_minute, GROUP_BURST, now)
        return bucket

    def group_wait(self, group: str, now: float) -> float:
        return self._bucket(group, now).wait(now)

    def global_wait(self, now: float) -> float:
        return self._bucket(GLOBAL, now).wait(now)

    def wait(self, group: str, now: float) -> float:
        """Seconds until a reply to ``group`` may go."""
        return max(self.group_wait(group, now), self.global_wait(now))

    def take(self, group: str, now: float) -> bool:
        """Take a token from both buckets if both have one."""
        group_bucket = self._bucket(group, now).take(now)
        global_bucket = self._bucket(GLOBAL, now).take(now)
        if group_bucket is None or global_bucket is None:
            return False
        self.buckets[group] = group_bucket
        self.buckets[GLOBAL] = global_bucket
        return True

    def spend(self, group: str, now: float) -> None:
        """Count a reply sent at ``now`` (whether or not a token was there)."""
        self.buckets[group] = self._bucket(group, now).spend(now)
        self.buckets[GLOBAL] = self._bucket(GLOBAL, now).spend(now)

    def replay(self, sends: Iterable[tuple[str, float]]) -> None:
        """Rebuild the buckets from past sends ``(group, time)`` in time order."""
        for group, moment in sorted(sends, key=lambda send: send[1]):
            self.spend(group, moment)

    def forget_idle(self, now: float) -> None:
        """Drop group buckets that are full again (they equal a new one)."""
        for key in [k for k, b in self.buckets.items() if k != GLOBAL]:
            bucket = self.buckets[key].at(now)
            if bucket.tokens >= bucket.capacity:
                del self.buckets[key]
