"""The verdict cache in Redis: what may be lost, kept to skip a re-scan.

A cached verdict is a shortcut, never the record (that is SQLite), so every
failure here degrades to a miss: with Redis down the scanner keeps scanning,
only slower. Keys are ``<prefix><hash of the canonical URL>`` so that their
length does not depend on the URL's; the value remembers the canonical URL
and the model version, and a verdict from another model version is a miss.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from wabscan.config import CacheSettings
from wabscan.verdict import Level, Verdict

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "wabscan:verdict:"

# After a failure the cache is not asked again for this long, so that while
# Redis is down a scan pays for one failed connection every few seconds, not
# one per scan.
RETRY_AFTER_SECONDS = 5.0
# A GET on the local unix socket answers in well under a millisecond; past
# this the server is in trouble and a scan should not wait for it.
SOCKET_TIMEOUT_SECONDS = 0.5


def cache_client(url: str) -> redis.Redis:
    """A Redis client suited to the cache: no retries, short timeouts.

    redis-py 8's default client retries a failed connection 10 times with
    backoff: measured here, one GET against a missing socket took 3.7-4.2 s
    instead of 0.5 ms. A cache miss is cheaper than that wait.

    Args:
        url: e.g. ``unix:///run/wabscan-redis/redis.sock``.
    """
    return redis.Redis.from_url(
        url,
        retry=Retry(NoBackoff(), 0),
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
    )


class VerdictCache:
    """Cached verdicts by canonical URL, with a time to live by level.

    Args:
        client: a redis client, best made by :func:`cache_client` (without
            retries and with a short timeout, so that an outage costs a scan
            milliseconds, not seconds).
        ttls: seconds to keep a verdict of each level; 0 disables caching
            for that level.
        model_version: the scoring version; a cached verdict from another
            version is treated as absent.
        prefix: the key prefix; :meth:`clear` deletes only keys under it.
        clock: monotonic seconds, replaced in tests.
    """

    def __init__(
        self,
        client: redis.Redis,
        ttls: CacheSettings,
        model_version: str,
        prefix: str = DEFAULT_PREFIX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.ttls = ttls
        self.model_version = model_version
        self.prefix = prefix
        self._clock = clock
        self._down_since: float | None = None
        self._retry_at = 0.0

    def key(self, canonical: str) -> str:
        """The Redis key of a canonical URL."""
        digest = hashlib.blake2b(canonical.encode("utf-8"), digest_size=16)
        return self.prefix + digest.hexdigest()

    def ttl_for(self, level: Level) -> int:
        return {
            Level.BENIGN: self.ttls.ttl_benign,
            Level.SUSPICIOUS: self.ttls.ttl_suspicious,
            Level.MALICIOUS: self.ttls.ttl_malicious,
        }[level]

    @property
    def available(self) -> bool:
        """False while the cache is pausing after a Redis failure."""
        return self._down_since is None or self._clock() >= self._retry_at

    def get(self, canonical: str) -> Verdict | None:
        """The cached verdict, or None if absent, stale or Redis is unavailable."""
        return self.get_many([canonical]).get(canonical)

    def get_many(self, canonicals: Iterable[str]) -> dict[str, Verdict]:
        """Cached verdicts for several URLs in one round trip.

        Returns:
            Only the hits, by canonical URL; misses are absent.
        """
        wanted = list(dict.fromkeys(canonicals))
        if not wanted or not self.available:
            return {}
        try:
            values = self.client.mget([self.key(c) for c in wanted])
        except redis.RedisError as exc:
            self._failed("get", exc)
            return {}
        self._succeeded()
        hits: dict[str, Verdict] = {}
        for canonical, raw in zip(wanted, values, strict=True):
            verdict = self._decode(canonical, raw)
            if verdict is not None:
                hits[canonical] = verdict
        return hits

    def put(self, verdict: Verdict) -> None:
        """Cache a verdict for the TTL of its level; a no-op if Redis is down."""
        self.put_many([verdict])

    def put_many(self, verdicts: Iterable[Verdict]) -> None:
        """Cache several verdicts in one round trip (a scanner batch)."""
        if not self.available:
            return
        pipe = self.client.pipeline(transaction=False)
        queued = 0
        for verdict in verdicts:
            ttl = self.ttl_for(verdict.level)
            if ttl <= 0:
                continue
            value = json.dumps(
                {
                    "canonical": verdict.canonical,
                    "model_version": self.model_version,
                    "verdict": verdict.to_dict(),
                },
                ensure_ascii=False,
                separators=(",", ":"),
            )
            pipe.set(self.key(verdict.canonical), value, ex=ttl)
            queued += 1
        if not queued:
            return
        try:
            pipe.execute()
        except redis.RedisError as exc:
            # Includes OutOfMemoryError: with no cached verdict left to
            # evict (volatile-lru), a full server refuses the write; the
            # verdict is already durable in SQLite.
            self._failed("put", exc)
            return
        self._succeeded()

    def invalidate(self, canonical: str) -> None:
        """Forget one URL's verdict (after an override or a rescan request)."""
        if not self.available:
            return
        try:
            self.client.delete(self.key(canonical))
        except redis.RedisError as exc:
            self._failed("invalidate", exc)
            return
        self._succeeded()

    def clear(self) -> int:
        """Delete every key under the prefix, and nothing else.

        Returns:
            The number of keys deleted (0 if Redis is unavailable).
        """
        if not self.available:
            return 0
        deleted = 0
        try:
            batch: list[Any] = []
            for key in self.client.scan_iter(match=_glob_escape(self.prefix) + "*"):
                batch.append(key)
                if len(batch) >= 500:
                    deleted += int(self.client.delete(*batch))
                    batch.clear()
            if batch:
                deleted += int(self.client.delete(*batch))
        except redis.RedisError as exc:
            self._failed("clear", exc)
            return deleted
        self._succeeded()
        return deleted

    def _decode(self, canonical: str, raw: Any) -> Verdict | None:
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            if (
                data["model_version"] != self.model_version
                or data["canonical"] != canonical
            ):
                return None
            return Verdict.from_dict(data["verdict"])
        except (ValueError, KeyError, TypeError) as exc:
            # Written by another version of this module: treat as absent and
            # let the next put() replace it.
            log.debug("cache undecodable key=%s error=%s", self.key(canonical), exc)
            return None

    def _failed(self, operation: str, exc: Exception) -> None:
        now = self._clock()
        if self._down_since is None:
            # Once per outage, not once per scan: the journal should show
            # when the cache went away and when it came back.
            log.warning(
                "cache unavailable op=%s error=%s: %s; scanning continues "
                "without the cache",
                operation,
                type(exc).__name__,
                exc,
            )
            self._down_since = now
        self._retry_at = now + RETRY_AFTER_SECONDS

    def _succeeded(self) -> None:
        if self._down_since is not None:
            log.info(
                "cache available again after=%.1fs", self._clock() - self._down_since
            )
            self._down_since = None


def _glob_escape(text: str) -> str:
    # SCAN MATCH takes a glob pattern: a prefix with * ? [ ] or \ in it would
    # otherwise match (and clear() delete) keys outside it.
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
