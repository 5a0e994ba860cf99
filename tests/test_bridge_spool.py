"""The spool: nothing the bridge produces is lost while Redis refuses it.

A real redis-server is stopped and started again under the test, and filled
up at ``maxmemory``; the spool is a real SQLite file.
"""

from __future__ import annotations

import json
from pathlib import Path

import redis
import trio
from prometheus_client import CollectorRegistry

from wabscan import queue
from wabscan.bridge.metrics import BridgeMetrics
from wabscan.bridge.spool import MARKER, Spool, _marker
from wabscan.serial import SerialDatabase

from .conftest import RedisServer


def _job(n: int) -> tuple[str, dict[str, str]]:
    return (queue.SCAN, {"job": f"g@g.us/m{n}/0", "url": f"http://e{n}.com/"})


def _stream_jobs(url: str) -> list[str]:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return [fields["job"] for _, fields in client.xrange(queue.SCAN)]
    finally:
        client.close()


def _spool(tmp_path: Path, url: str) -> tuple[Spool, SerialDatabase]:
    shared = SerialDatabase.open(tmp_path / "wabscan.sqlite3")
    spool = Spool(
        shared, queue.connect(url, consumer=True), BridgeMetrics(CollectorRegistry())
    )
    return spool, shared


async def _drain(spool: Spool, timeout: float = 20.0) -> None:
    stopping = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(spool.replay_loop, stopping)
        with trio.fail_after(timeout):
            while spool.depth:
                await trio.sleep(0.02)
        stopping.set()


def test_redis_down_spools_in_order_and_replays_once(
    private_redis: RedisServer, tmp_path: Path
) -> None:
    async def scenario() -> None:
        spool, shared = _spool(tmp_path, private_redis.url)
        await spool.start()
        assert await spool.put([_job(0)]) is True

        private_redis.stop()
        for n in range(1, 41):
            assert await spool.put([_job(n)]) is False
        assert spool.depth == 40

        private_redis.start()
        # Redis is back, but the spool is not empty: new entries queue
        # behind the spooled ones so that order holds.
        assert await spool.put([_job(41), _job(42)]) is False
        await _drain(spool)
        assert spool.depth == 0
        assert await spool.put([_job(43)]) is True
        shared.close()

    trio.run(scenario)
    # The server restarted without persistence, so job 0 went with it; every
    # spooled job arrived once, in order.
    assert _stream_jobs(private_redis.url) == [f"g@g.us/m{n}/0" for n in range(1, 44)]


def test_out_of_memory_spools_instead_of_dropping(
    private_redis: RedisServer, tmp_path: Path
) -> None:
    admin = redis.Redis.from_url(private_redis.url)

    async def scenario() -> None:
        spool, shared = _spool(tmp_path, private_redis.url)
        await spool.start()
        admin.config_set("maxmemory", 1)  # every write is now refused (OOM)
        for n in range(10):
            assert await spool.put([_job(n)]) is False
        assert spool.depth == 10
        with trio.move_on_after(0.5):
            await _drain(spool)  # keeps failing while Redis is full
        assert spool.depth == 10

        admin.config_set("maxmemory", "64mb")
        await _drain(spool)
        shared.close()

    trio.run(scenario)
    assert _stream_jobs(private_redis.url) == [f"g@g.us/m{n}/0" for n in range(10)]
    admin.close()


def test_rows_added_before_a_crash_are_not_added_again(
    private_redis: RedisServer, tmp_path: Path
) -> None:
    # A crash between the transaction that added a batch (and set the
    # marker) and the deletion of its rows: the next start sees the marker.
    async def scenario() -> None:
        spool, shared = _spool(tmp_path, private_redis.url)
        await spool.start()
        private_redis.stop()
        await spool.put([_job(n) for n in range(5)])
        private_redis.start()
        rows = await shared.run(
            lambda db: db.execute("SELECT seq, fields FROM bridge_spool").fetchall()
        )
        client = redis.Redis.from_url(private_redis.url, decode_responses=True)
        pipe = client.pipeline(transaction=True)
        for _, fields in rows:
            pipe.xadd(queue.SCAN, json.loads(fields))
        pipe.set(MARKER, _marker(rows[-1][0], json.loads(rows[-1][1])))
        pipe.execute()
        client.close()

        again, shared2 = _spool(tmp_path, private_redis.url)
        await again.start()
        assert again.depth == 0
        # A marker that names no row here (a database restored from a
        # backup) deletes nothing.
        private_redis.stop()
        await again.put([_job(n) for n in range(5, 8)])
        private_redis.start()
        client = redis.Redis.from_url(private_redis.url)
        client.set(MARKER, "999:0123456789abcdef")
        client.close()
        await _drain(again)
        shared.close()
        shared2.close()

    trio.run(scenario)
    # The restart lost jobs 0-4 (no persistence in tests); 5-7 were replayed.
    assert _stream_jobs(private_redis.url) == [f"g@g.us/m{n}/0" for n in range(5, 8)]
