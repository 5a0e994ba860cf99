from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Protocol

import pytest
import redis

from wabscan.cache import RETRY_AFTER_SECONDS, VerdictCache, cache_client
from wabscan.config import CacheSettings
from wabscan.verdict import Level, Signal, Verdict


class RedisServer(Protocol):
    """What conftest's private_redis fixture gives (not imported: tests may or
    may not be a package)."""

    @property
    def url(self) -> str: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


TTLS = CacheSettings(ttl_benign=600, ttl_suspicious=1800, ttl_malicious=7200)


def verdict(canonical: str, level: Level = Level.MALICIOUS) -> Verdict:
    return Verdict(
        url=canonical,
        canonical=canonical,
        level=level,
        score=0.9,
        reasons=("Listed in a phishing feed.",),
        signals=(Signal("feed.phishing", "Listed", {"source": "made-up"}),),
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def cache(redis_client: redis.Redis) -> VerdictCache:
    return VerdictCache(redis_client, TTLS, model_version="m1")


def test_put_then_get(cache: VerdictCache) -> None:
    v = verdict("https://evil.example/login")
    assert cache.get(v.canonical) is None
    cache.put(v)
    assert cache.get(v.canonical) == v


def test_key_is_prefix_and_hash_not_the_url(
    cache: VerdictCache, redis_client: redis.Redis
) -> None:
    v = verdict("https://evil.example/" + "x" * 3000)
    cache.put(v)
    keys = redis_client.keys("*")
    assert keys == [cache.key(v.canonical).encode()]
    assert keys[0].startswith(b"wabscan:verdict:")
    assert len(keys[0]) < 64


@pytest.mark.parametrize(
    ("level", "ttl"),
    [(Level.BENIGN, 600), (Level.SUSPICIOUS, 1800), (Level.MALICIOUS, 7200)],
)
def test_ttl_by_level(
    cache: VerdictCache, redis_client: redis.Redis, level: Level, ttl: int
) -> None:
    v = verdict(f"https://{level.value}.example/", level)
    cache.put(v)
    assert ttl - 5 <= redis_client.ttl(cache.key(v.canonical)) <= ttl


def test_zero_ttl_disables_caching_for_that_level(redis_client: redis.Redis) -> None:
    cache = VerdictCache(redis_client, CacheSettings(ttl_benign=0), model_version="m1")
    cache.put(verdict("https://fine.example/", Level.BENIGN))
    assert redis_client.dbsize() == 0


def test_other_model_version_is_a_miss(redis_client: redis.Redis) -> None:
    v = verdict("https://evil.example/")
    VerdictCache(redis_client, TTLS, model_version="m1").put(v)
    assert VerdictCache(redis_client, TTLS, model_version="m2").get(v.canonical) is None
    assert VerdictCache(redis_client, TTLS, model_version="m1").get(v.canonical) == v


def test_get_many_is_one_round_trip(
    cache: VerdictCache, redis_client: redis.Redis
) -> None:
    a, b = verdict("https://a.example/"), verdict("https://b.example/", Level.BENIGN)
    cache.put(a)
    cache.put(b)
    redis_client.config_resetstat()

    hits = cache.get_many([a.canonical, "https://miss.example/", b.canonical])

    assert hits == {a.canonical: a, b.canonical: b}
    stats = redis_client.info("commandstats")
    assert stats["cmdstat_mget"]["calls"] == 1
    assert "cmdstat_get" not in stats


def test_undecodable_value_is_a_miss(
    cache: VerdictCache, redis_client: redis.Redis
) -> None:
    canonical = "https://evil.example/"
    redis_client.set(cache.key(canonical), b"\xff not json")
    assert cache.get(canonical) is None
    redis_client.set(cache.key(canonical), json.dumps({"model_version": "m1"}))
    assert cache.get(canonical) is None


def test_invalidate(cache: VerdictCache) -> None:
    v = verdict("https://evil.example/")
    cache.put(v)
    cache.invalidate(v.canonical)
    assert cache.get(v.canonical) is None
    cache.invalidate(v.canonical)  # twice is harmless


def test_clear_deletes_only_its_prefix(redis_client: redis.Redis) -> None:
    cache = VerdictCache(redis_client, TTLS, "m1", prefix="w[1]:verdict:")
    for i in range(1200):
        cache.put(verdict(f"https://e{i}.example/"))
    redis_client.set("w1:verdict:x", "a key the glob would match unescaped")
    redis_client.xadd("wabscan:scan", {"url": "https://e1.example/"})

    assert cache.clear() == 1200

    assert sorted(redis_client.keys("*")) == [b"w1:verdict:x", b"wabscan:scan"]


def test_redis_down_degrades_to_misses_and_warns_once(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    cache = VerdictCache(cache_client(private_redis.url), TTLS, "m1", clock=clock)
    v = verdict("https://evil.example/")
    cache.put(v)
    assert cache.get(v.canonical) == v

    private_redis.stop()
    caplog.set_level(logging.INFO, logger="wabscan.cache")
    started = time.perf_counter()
    assert cache.get(v.canonical) is None
    cache.put(v)
    assert cache.get_many([v.canonical]) == {}
    cache.invalidate(v.canonical)
    assert cache.clear() == 0
    clock.now += RETRY_AFTER_SECONDS + 1
    assert cache.get(v.canonical) is None  # tries again, fails again
    elapsed = time.perf_counter() - started

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].getMessage().startswith("cache unavailable op=get")
    assert not cache.available
    # No retries and no waiting: an outage must not slow scanning down.
    assert elapsed < 1.0

    private_redis.start()
    clock.now += RETRY_AFTER_SECONDS + 1
    assert cache.available
    cache.put(v)
    assert cache.get(v.canonical) == v
    assert any(r.getMessage().startswith("cache available") for r in caplog.records)


def test_full_redis_is_survived(redis_client: redis.Redis) -> None:
    # Nothing evictable left: a full server refuses writes; the cache must shrug.
    cache = VerdictCache(redis_client, TTLS, "m1")
    redis_client.config_set("maxmemory", "1")
    try:
        cache.put(verdict("https://evil.example/"))
        assert cache.get("https://evil.example/") is None
    finally:
        redis_client.config_set("maxmemory", "64mb")


def test_missing_redis_server_fails_with_the_fix(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    server_class = type(redis_server)  # conftest's class, whatever its module
    with pytest.raises(pytest.fail.Exception, match=r"\./scripts/bootstrap"):
        server_class(tmp_path).start()  # type: ignore[call-arg]
