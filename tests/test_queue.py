"""Streams between the units: acknowledged entries are deleted, so a stream
holds only work in flight, and a Redis that the streams filled recovers
once the consumers drain them. A real redis-server throughout."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
import trio

from tests.conftest import RedisServer
from wabscan import queue

STREAM = "wabscan:test"


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """The session's server, emptied, decoding replies as the units do."""
    client = queue.connect(redis_server.url)
    client.flushall()
    try:
        yield client
    finally:
        client.close()


def _consumer(client: redis.Redis, group: str, name: str = "c1") -> queue.Consumer:
    consumer = queue.Consumer(client, STREAM, group, name, block_ms=10)
    consumer.ensure_group_sync()
    return consumer


def _add(client: redis.Redis, count: int, size: int = 10) -> list[str]:
    producer = queue.Producer(client, STREAM)
    return producer.add_many_sync(
        [{"job": f"j{n}", "pad": "x" * size} for n in range(count)]
    )


def _left(client: redis.Redis) -> list[str]:
    return [fields["job"] for _id, fields in client.xrange(STREAM)]


def test_acknowledged_entries_are_deleted_and_the_rest_kept(
    client: redis.Redis,
) -> None:
    consumer = _consumer(client, "scanner")
    _add(client, 10)
    batch = consumer.read_sync()
    assert [e.fields["job"] for e in batch] == [f"j{n}" for n in range(10)]

    # Acknowledge out of order: only what precedes the oldest pending entry
    # can go, the rest waits.
    consumer.ack_sync([batch[0].id, batch[1].id, batch[5].id])
    assert _left(client) == [f"j{n}" for n in range(2, 10)]

    consumer.ack_sync([e.id for e in batch[2:]])
    assert _left(client) == []


def test_entries_not_yet_delivered_survive_the_trim(client: redis.Redis) -> None:
    consumer = queue.Consumer(client, STREAM, "scanner", "c1", batch=3)
    consumer.ensure_group_sync()
    _add(client, 7)
    first = consumer.read_sync()
    consumer.ack_sync([e.id for e in first])
    assert _left(client) == [f"j{n}" for n in range(3, 7)]


def test_an_entry_waits_for_every_group(client: redis.Redis) -> None:
    fast = _consumer(client, "fast")
    slow = _consumer(client, "slow")
    _add(client, 5)
    fast.ack_sync([e.id for e in fast.read_sync()])
    assert len(_left(client)) == 5  # "slow" has not read them

    batch = slow.read_sync()
    slow.ack_sync([e.id for e in batch[:3]])
    assert _left(client) == ["j3", "j4"]


def test_a_stream_without_groups_is_left_alone(client: redis.Redis) -> None:
    _add(client, 4)
    assert queue.trim_acknowledged(client, STREAM) == 0
    assert queue.trim_acknowledged(client, "wabscan:absent") == 0
    assert len(_left(client)) == 4


def test_a_redelivered_entry_that_was_deleted_is_skipped(
    client: redis.Redis,
) -> None:
    # c1 holds three entries when c2 claims, handles and acknowledges them
    # (they are deleted); c1, re-reading its pending list, must skip them.
    c1 = _consumer(client, "scanner", "c1")
    _add(client, 3)
    held = c1.read_sync()
    c2 = queue.Consumer(client, STREAM, "scanner", "c2", block_ms=10, claim_idle_ms=0)
    claimed = c2.claim_sync()
    assert {e.id for e in claimed} == {e.id for e in held}
    c2.ack_sync([e.id for e in claimed])
    assert _left(client) == []
    c1.rewind()
    assert c1.read_sync() == []


def test_the_observer_sees_everything_before_it_is_deleted(
    client: redis.Redis,
) -> None:
    consumer = _consumer(client, "scanner")
    observer = queue.Observer(client, [STREAM], "watch")
    _add(client, 6)
    consumer.ack_sync([e.id for e in consumer.read_sync()])
    assert len(_left(client)) == 6  # the observer has not looked yet
    seen = observer.read()
    assert [e.fields["job"] for _s, e in seen] == [f"j{n}" for n in range(6)]
    assert _left(client) == []
    observer.close()
    assert [g["name"] for g in client.xinfo_groups(STREAM)] == ["scanner"]


def test_redis_filled_by_a_stream_accepts_writes_once_it_is_drained(
    private_redis: RedisServer,
) -> None:
    """The way an appliance really reaches maxmemory: a consumer falls
    behind and the stream grows. Draining it must make room again, since
    XACK and the trim are allowed at maxmemory while XADD is not."""
    client = redis.Redis.from_url(private_redis.url, decode_responses=True)
    consumer = _consumer(client, "scanner")
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used + 256 * 1024)
    added = 0
    try:
        while True:
            added += len(_add(client, 50, size=500))
            assert added < 100_000, "Redis never refused a write"
    except redis.exceptions.OutOfMemoryError:
        pass
    assert added > 100

    async def drain() -> None:
        while batch := await consumer.read():
            await consumer.ack([e.id for e in batch])

    trio.run(drain)
    assert client.xlen(STREAM) == 0
    assert len(_add(client, 50, size=500)) == 50
    client.close()


def test_cached_verdicts_give_way_to_the_streams(redis_server: RedisServer) -> None:
    """A Redis full of cached verdicts (they have TTLs) still takes stream
    entries: volatile-lru evicts cache keys, never a stream."""
    client = queue.connect(redis_server.url)
    client.flushall()
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used + 512 * 1024)
    try:
        for n in range(4000):  # well over 512 KB of cached verdicts
            client.set(f"wabscan:verdict:{n}", "v" * 200, ex=3600)
        assert client.info("stats")["evicted_keys"] > 0
        ids = _add(client, 500, size=200)
        assert len(ids) == 500 and client.xlen(STREAM) == 500
    finally:
        client.config_set("maxmemory", "64mb")
        client.flushall()
        client.close()
